"""Decoding images and masks in full, with errors that name the file, its list line and the fix.

Masks are single-channel PNGs of class indices (grayscale or palette). On reading, a label map
(:class:`LabelMap`, config ``data.label_map``) turns stored values into classes (0/255 binary
masks: ``{255: 1}``; Cityscapes' label ids into its 19 train ids), and every configured ignore
label (CamVid's void is 11) becomes :data:`IGNORE_INDEX` (255), so the rest of the project knows
one ignore value. numpy and PIL only, so that the data check starts quickly;
``data.read_image`` / ``read_mask`` wrap these as tensors.
"""

from __future__ import annotations

import io
import os
from dataclasses import dataclass
from typing import Sequence

import numpy as np
from PIL import Image

from .splits import DataError

IGNORE_INDEX = 255
MASK_MODES = ("L", "P", "I", "I;16")

# Cityscapes' label ids (labelIds.png) -> its 19 train ids (cityscapesScripts' labels.py); every
# other id (void, license plate, the classes not evaluated) is ignored.
CITYSCAPES_TRAIN_IDS = {7: 0, 8: 1, 11: 2, 12: 3, 13: 4, 17: 5, 19: 6, 20: 7, 21: 8, 22: 9, 23: 10}
CITYSCAPES_TRAIN_IDS |= {24: 11, 25: 12, 26: 13, 27: 14, 28: 15, 31: 16, 32: 17, 33: 18}
BUILT_IN_LABEL_MAPS = {"cityscapes": CITYSCAPES_TRAIN_IDS}


class LabelRangeError(DataError):
    """A mask with values outside [0, C) after its label map: ``labels`` are those values."""

    def __init__(self, message: str, labels: list[int]):
        super().__init__(message)
        self.labels = labels


@dataclass(frozen=True)
class LabelMap:
    """Stored mask values -> classes (IGNORE_INDEX: ignored). ``others_ignored``: a value the
    table does not name is ignored (the built-in tables); otherwise it is kept as it is."""

    table: tuple[tuple[int, int], ...] = ()
    others_ignored: bool = False
    name: str = ""
    ignore: tuple[int, ...] = ()  # data.ignore_labels: stored values that are ignored
    colours: tuple[tuple[int, int, int, int], ...] = ()  # data.mask_colors: (R, G, B, value) of colour masks
    colours_name: str = ""

    @classmethod
    def parse(cls, tokens: Sequence[str] | None) -> LabelMap:
        """From a stage's ``--label-map``: a built-in name (cityscapes), or STORED:CLASS pairs,
        CLASS an index or ``ignore`` (255: 1 for binary masks stored as 0/255)."""
        tokens = list(tokens or [])
        if len(tokens) == 1 and tokens[0] in BUILT_IN_LABEL_MAPS:
            return cls(tuple(sorted(BUILT_IN_LABEL_MAPS[tokens[0]].items())), True, tokens[0])
        table = []
        for token in tokens:
            stored, sep, target = token.partition(":")
            try:
                pair = (int(stored), IGNORE_INDEX if target == "ignore" else int(target))
            except ValueError:
                pair = None
            if not sep or pair is None or not 0 <= pair[0] < 2**16:
                raise ValueError(
                    f"--label-map {token!r}: write STORED:CLASS (e.g. 255:1, or 254:ignore) or one of "
                    f"{', '.join(BUILT_IN_LABEL_MAPS)}"
                )
            table.append(pair)
        return cls(tuple(sorted(table)))

    def from_colours(self, rgb: np.ndarray, where_: str) -> np.ndarray:
        """The stored values of a colour mask (H, W, 3) by data.mask_colors; a colour it does not
        know is an error naming the file, the colour and how many pixels have it."""
        codes = (rgb[..., 0].astype(np.int64) << 16) | (rgb[..., 1].astype(np.int64) << 8) | rgb[..., 2]
        found, inverse, counts = np.unique(codes, return_inverse=True, return_counts=True)
        known = {(r << 16) | (g << 8) | b: value for r, g, b, value in self.colours}
        unknown = [(int(code), int(n)) for code, n in zip(found, counts, strict=True) if int(code) not in known]
        if unknown:
            listed = ", ".join(f"({c >> 16}, {c >> 8 & 255}, {c & 255}) on {n} pixels" for c, n in unknown[:3])
            more = f" and {len(unknown) - 3} more colours" if len(unknown) > 3 else ""
            raise DataError(
                f"mask {where_} has colours that data.mask_colors ({self.colours_name}) gives no class: "
                f"{listed}{more}; fix the palette (a file of one 'R G B' line per class), or the mask"
            )
        return np.array([known[int(code)] for code in found], np.int64)[inverse.reshape(codes.shape)]

    def apply(self, stored: np.ndarray) -> np.ndarray:
        """int64 classes of the stored values, the ignore labels (stored values) mapped to 255."""
        if not (self.table or self.others_ignored or self.ignore):
            return stored
        size = max(int(stored.max(initial=0)), *(k for k, _ in self.table), *self.ignore, 0) + 1
        lut = np.full(size, IGNORE_INDEX, np.int64) if self.others_ignored else np.arange(size, dtype=np.int64)
        for value, target in self.table:
            lut[value] = target
        lut[list(self.ignore)] = IGNORE_INDEX
        return lut[stored]


# The image files the project reads as images (stages.predict's folders, stages.make_lists).
IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp", ".tif", ".tiff")


def colour(mask: np.ndarray, colours: Sequence[tuple[int, int, int]]) -> np.ndarray:
    """(H, W, 3) uint8: each pixel of a class-index mask in its class's colour (a palette)."""
    return np.asarray(colours, dtype=np.uint8)[mask]


def overlay(image: np.ndarray, mask: np.ndarray, colours) -> np.ndarray:
    """The image with the mask's colours over it, half and half; ignored pixels show the image."""
    painted = colour(np.where(mask == IGNORE_INDEX, 0, mask), colours).astype(np.uint16)
    mixed = ((image.astype(np.uint16) + painted) // 2).astype(np.uint8)
    return np.where((mask == IGNORE_INDEX)[..., None], image, mixed)


def where(path, origin: str) -> str:
    """A file and, if known, the list line it came from."""
    return f"{path} ({origin})" if origin else str(path)


def _open(path: str | os.PathLike, what: str, origin: str, data: bytes | None):
    """Open an image file, or its bytes already read, naming the file and list line on failure."""
    try:
        return Image.open(io.BytesIO(data) if data is not None else path)
    except FileNotFoundError:
        raise DataError(f"{what} not found: {where(path, origin)}; check data.root and the split list") from None
    except Exception as err:  # PIL's UnidentifiedImageError, OSError, ...
        raise DataError(
            f"{what} {where(path, origin)} cannot be read: {err}; replace the file or remove its line from the list"
        ) from None


def _decode(img: Image.Image, path, what: str, origin: str, mode: str | None) -> np.ndarray:
    # A full decode: a truncated or corrupt file fails here, not when a header looks fine.
    try:
        with img:
            return np.asarray(img.convert(mode) if mode else img)
    except Exception as err:
        raise DataError(
            f"{what} {where(path, origin)} is truncated or corrupt: {err}; replace the file or "
            "remove its line from the list"
        ) from None


EXIF_ORIENTATION = 0x0112
LOSSY_FORMATS = ("JPEG", "MPO")


def decode_image(path: str | os.PathLike, origin: str = "", data: bytes | None = None) -> np.ndarray:
    """RGB uint8 array (H, W, 3). ``data``: the file's bytes when the caller has read them.

    An EXIF orientation other than 1 is refused: a viewer shows such a photo turned, every
    reader here takes its pixels as stored, and a mask drawn on the turned view would not fit."""
    img = _open(path, "image", origin, data)
    try:
        orientation = img.getexif().get(EXIF_ORIENTATION, 1)
    except Exception:  # an unreadable EXIF block: the pixels are what counts
        orientation = 1
    if orientation not in (1, None):
        img.close()
        raise DataError(
            f"image {where(path, origin)} has EXIF orientation {orientation}: viewers show it turned while "
            "training reads its pixels as stored, so its mask would not line up; save it with the turn applied "
            "(PIL.ImageOps.exif_transpose) and its mask to match"
        )
    return _decode(img, path, "image", origin, "RGB")


def as_label_map(labels: Sequence[int] | LabelMap) -> LabelMap:
    """A LabelMap as it is; ignore labels alone as the LabelMap that ignores them."""
    return labels if isinstance(labels, LabelMap) else LabelMap(ignore=tuple(labels))


def decode_mask(
    path: str | os.PathLike,
    num_classes: int,
    ignore_labels: Sequence[int] | LabelMap = (),
    origin: str = "",
    data: bytes | None = None,
) -> np.ndarray:
    """uint8 array (H, W) of class indices: the stored values through a label map (a
    ``LabelMap`` for ``ignore_labels``: data.label_map with data.ignore_labels), every ignore
    label mapped to 255."""
    labels = as_label_map(ignore_labels)
    img = _open(path, "mask", origin, data)
    if img.format in LOSSY_FORMATS:
        img.close()
        raise DataError(
            f"mask {where(path, origin)} is a {img.format} file: lossy compression changes class indices at every "
            "edge; save masks as PNG"
        )
    if labels.colours and img.mode in ("RGB", "RGBA"):
        stored = labels.from_colours(_decode(img, path, "mask", origin, "RGB"), where(path, origin))
    elif img.mode not in MASK_MODES:
        img.close()
        raise DataError(
            f"mask {where(path, origin)} has mode {img.mode}: masks must be single-channel class-index "
            "PNGs (grayscale or palette); for colour masks set data.mask_colors to their palette "
            "(pascal, camvid, msrc21, or a file of one 'R G B' line per class)"
        )
    else:
        stored = _decode(img, path, "mask", origin, None).astype(np.int64)
    arr = labels.apply(stored)
    bad = (arr >= num_classes) & (arr != IGNORE_INDEX)
    if bad.any():
        found = sorted(np.unique(arr[bad]).tolist())
        mapped = " after data.label_map" if labels.table else ""
        raise LabelRangeError(
            f"mask {where(path, origin)} has labels {found}{mapped} outside [0, {num_classes}): fix "
            "data.num_classes, map them with data.label_map, or add them to data.ignore_labels in the config",
            found,
        )
    return arr.astype(np.uint8)
