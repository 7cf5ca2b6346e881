"""Decoding images and masks in full, with errors that name the file, its list line and the fix.

Masks are single-channel PNGs of class indices (grayscale or palette). Every configured ignore
label (CamVid's void is 11) becomes :data:`IGNORE_INDEX` (255) on reading, so the rest of the
project knows one ignore value. numpy and PIL only, so that the data check starts quickly;
``data.read_image`` / ``read_mask`` wrap these as tensors.
"""

from __future__ import annotations

import io
import os
from typing import Sequence

import numpy as np
from PIL import Image

from .splits import DataError

IGNORE_INDEX = 255
MASK_MODES = ("L", "P", "I", "I;16")


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


def decode_mask(
    path: str | os.PathLike,
    num_classes: int,
    ignore_labels: Sequence[int] = (),
    origin: str = "",
    data: bytes | None = None,
) -> np.ndarray:
    """uint8 array (H, W) of class indices, every ignore label mapped to 255."""
    img = _open(path, "mask", origin, data)
    if img.format in LOSSY_FORMATS:
        img.close()
        raise DataError(
            f"mask {where(path, origin)} is a {img.format} file: lossy compression changes class indices at every "
            "edge; save masks as PNG"
        )
    if img.mode not in MASK_MODES:
        img.close()
        raise DataError(
            f"mask {where(path, origin)} has mode {img.mode}: masks must be single-channel class-index "
            "PNGs (grayscale or palette); convert colour masks to class indices first"
        )
    arr = _decode(img, path, "mask", origin, None).astype(np.int64)
    for label in ignore_labels:
        arr[arr == label] = IGNORE_INDEX
    bad = (arr >= num_classes) & (arr != IGNORE_INDEX)
    if bad.any():
        raise DataError(
            f"mask {where(path, origin)} has labels {sorted(np.unique(arr[bad]).tolist())} outside "
            f"[0, {num_classes}): fix data.num_classes or add them to data.ignore_labels in the config"
        )
    return arr.astype(np.uint8)
