"""Split lists, image and mask reading, and the training / inference datasets.

Split list format (the ST++ reference code's): one image per line, ``<image path> <mask path>``,
relative to a data root. An unlabeled line may carry no mask, or a mask used only to audit
pseudo-label quality. An image's *id* is its image path as written in the list: unique,
readable, and stable across lists, so ``reliable_ids.txt`` lines are the unlabeled list's own.

Masks are single-channel PNGs of class indices (grayscale or palette). Every configured ignore
label (CamVid's void is 11) becomes 255 on reading, so the rest of the project knows one ignore
value, :data:`IGNORE_INDEX`.
"""

from __future__ import annotations

import math
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import numpy as np
import torch
from PIL import Image
from torch.utils.data import ConcatDataset, Dataset
from torchvision import tv_tensors

from .io import write_text
from .maskstore import MaskStore
from .transforms import IGNORE_INDEX, StrongAugment, WeakAugment, to_training_pair


@dataclass(frozen=True)
class Sample:
    id: str
    image: str
    mask: str | None = None

    def line(self) -> str:
        return f"{self.image} {self.mask}" if self.mask else self.image


def read_split_list(path: str | os.PathLike, need_masks: bool = False) -> list[Sample]:
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"split list not found: {path}")
    samples, seen = [], set()
    for n, raw in enumerate(path.read_text().splitlines(), start=1):
        fields = raw.split()
        if not fields or raw.lstrip().startswith("#"):
            continue
        if len(fields) > 2:
            raise ValueError(f"{path}:{n}: expected '<image> [<mask>]', got {raw!r}")
        if need_masks and len(fields) < 2:
            raise ValueError(f"{path}:{n}: this list needs a mask path on every line, got {raw!r}")
        if fields[0] in seen:
            raise ValueError(f"{path}:{n}: image {fields[0]} is listed twice")
        seen.add(fields[0])
        samples.append(Sample(fields[0], fields[0], fields[1] if len(fields) > 1 else None))
    if not samples:
        raise ValueError(f"split list {path} is empty")
    return samples


def write_split_list(path: str | os.PathLike, samples: Sequence[Sample]) -> None:
    write_text(path, "".join(s.line() + "\n" for s in samples))


def read_image(path: str | os.PathLike) -> torch.Tensor:
    """RGB uint8 tensor (3, H, W)."""
    try:
        with Image.open(path) as img:
            arr = np.asarray(img.convert("RGB"))
    except FileNotFoundError:
        raise FileNotFoundError(f"image not found: {path} (check data_root and the split list)")
    return torch.from_numpy(arr.copy()).permute(2, 0, 1)


def read_mask(path: str | os.PathLike, num_classes: int, ignore_labels: Sequence[int] = ()) -> torch.Tensor:
    """uint8 tensor (H, W) of class indices, every ignore label mapped to 255."""
    try:
        with Image.open(path) as img:
            if img.mode not in ("L", "P", "I", "I;16"):
                raise ValueError(
                    f"mask {path} has mode {img.mode}: masks must be single-channel class-index "
                    "PNGs (grayscale or palette); convert colour masks to indices first"
                )
            arr = np.asarray(img).astype(np.int64)
    except FileNotFoundError:
        raise FileNotFoundError(f"mask not found: {path} (check data_root and the split list)")
    for label in ignore_labels:
        arr[arr == label] = IGNORE_INDEX
    bad = (arr >= num_classes) & (arr != IGNORE_INDEX)
    if bad.any():
        raise ValueError(
            f"mask {path} has labels {sorted(np.unique(arr[bad]).tolist())} outside [0, {num_classes}): "
            "fix num_classes or add them to ignore_labels in the config"
        )
    return torch.from_numpy(arr.astype(np.uint8))


class ImageDataset(Dataset):
    """Inference: ``(id, uint8 image (3,H,W))`` for every sample, in list order."""

    def __init__(self, root: str | os.PathLike, samples: Sequence[Sample]):
        self.root, self.samples = Path(root), list(samples)

    def __len__(self) -> int:
        return len(self.samples)

    def __getitem__(self, i: int):
        s = self.samples[i]
        return s.id, read_image(self.root / s.image)


class EvalDataset(ImageDataset):
    """Evaluation: ``(id, image, mask)`` with ground-truth masks read as class indices."""

    def __init__(self, root, samples, num_classes: int, ignore_labels: Sequence[int] = ()):
        super().__init__(root, samples)
        missing = [s.image for s in self.samples if not s.mask]
        if missing:
            raise ValueError(f"evaluation needs a mask for every image; none for {missing[:3]}")
        self.num_classes, self.ignore_labels = num_classes, tuple(ignore_labels)

    def __getitem__(self, i: int):
        s = self.samples[i]
        mask = read_mask(self.root / s.mask, self.num_classes, self.ignore_labels)
        return s.id, read_image(self.root / s.image), mask


class TrainDataset(Dataset):
    """Training pairs: weak augmentation always, strong augmentation on pseudo-labels only.

    Labeled samples read their mask from the data root; pseudo-labeled samples read it from an
    HDF5 mask store written by ``stages.label`` (opened lazily, once per DataLoader worker).
    """

    def __init__(
        self,
        root: str | os.PathLike,
        samples: Sequence[Sample],
        weak: WeakAugment,
        num_classes: int,
        ignore_labels: Sequence[int] = (),
        store: str | os.PathLike | None = None,
        strong: StrongAugment | None = None,
    ):
        self.root, self.samples = Path(root), list(samples)
        self.weak, self.strong = weak, strong
        self.num_classes, self.ignore_labels = num_classes, tuple(ignore_labels)
        self.store = MaskStore(store) if store else None
        if self.store is None and any(not s.mask for s in self.samples):
            raise ValueError("labeled training samples need a mask path on every line")
        if self.store is not None:
            missing = self.store.missing([s.id for s in self.samples])
            if missing:
                raise ValueError(f"mask store {store} has no pseudo-mask for {missing[:3]} ({len(missing)} missing)")

    def __len__(self) -> int:
        return len(self.samples)

    def __getitem__(self, i: int):
        s = self.samples[i]
        image = tv_tensors.Image(read_image(self.root / s.image))
        if self.store is not None:
            mask = torch.from_numpy(self.store[s.id])
        else:
            mask = read_mask(self.root / s.mask, self.num_classes, self.ignore_labels)
        if mask.shape != image.shape[-2:]:
            raise ValueError(f"{s.id}: image is {tuple(image.shape[-2:])} but its mask is {tuple(mask.shape)}")
        image, mask = self.weak(image, tv_tensors.Mask(mask))
        if self.strong is not None:
            image, mask = self.strong(image, mask)
        return to_training_pair(image, mask)


def oversample(samples: Sequence[Sample], target: int) -> list[Sample]:
    """Repeat ``samples`` ceil(target / len) times (the reference code's over-sampling)."""
    if target <= len(samples):
        return list(samples)
    return list(samples) * math.ceil(target / len(samples))


def training_set(
    root,
    labeled: Sequence[Sample],
    pseudo: Sequence[tuple[Sequence[Sample], str]],
    weak: WeakAugment,
    strong: StrongAugment | None,
    num_classes: int,
    ignore_labels: Sequence[int] = (),
    min_labeled: int = 200,
) -> Dataset:
    """Labeled + pseudo-labeled training set, one loss, equal weight (docs/method.md).

    With pseudo-labels the labeled list is over-sampled to about the number of pseudo-labeled
    images; without (the teacher) it is repeated up to ``min_labeled`` images per epoch.
    """
    num_pseudo = sum(len(samples) for samples, _ in pseudo)
    parts: list[Dataset] = [
        TrainDataset(root, oversample(labeled, num_pseudo or min_labeled), weak, num_classes, ignore_labels)
    ]
    for samples, store in pseudo:
        parts.append(TrainDataset(root, samples, weak, num_classes, ignore_labels, store=store, strong=strong))
    return ConcatDataset(parts)
