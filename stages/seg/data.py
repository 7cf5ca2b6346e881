"""Image and mask reading, and the training / inference datasets (split lists: ``splits``).

Masks are single-channel PNGs of class indices (grayscale or palette). Every configured ignore
label (CamVid's void is 11) becomes 255 on reading, so the rest of the project knows one ignore
value, :data:`IGNORE_INDEX`. Every read error names the file and the list line it came from.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Sequence

import torch
from torch.utils.data import ConcatDataset, Dataset
from torchvision import tv_tensors

from .images import as_label_map, decode_image, decode_mask, where
from .maskstore import MaskStore
from .splits import DataError, Sample, parse_split_list, read_split_list, repeats, write_split_list  # noqa: F401
from .transforms import StrongAugment, WeakAugment, to_training_pair


def read_image(path: str | os.PathLike, origin: str = "", data: bytes | None = None) -> torch.Tensor:
    """RGB uint8 tensor (3, H, W); see :func:`.images.decode_image`."""
    return torch.from_numpy(decode_image(path, origin, data).copy()).permute(2, 0, 1)


def read_mask(
    path: str | os.PathLike,
    num_classes: int,
    ignore_labels: Sequence[int] = (),
    origin: str = "",
    data: bytes | None = None,
) -> torch.Tensor:
    """uint8 tensor (H, W) of class indices, ignore labels as 255; see :func:`.images.decode_mask`."""
    return torch.from_numpy(decode_mask(path, num_classes, ignore_labels, origin, data))


def check_same_size(image: torch.Tensor, mask: torch.Tensor, sample: Sample, mask_path) -> None:
    if tuple(mask.shape[-2:]) != tuple(image.shape[-2:]):
        h, w = image.shape[-2:]
        raise DataError(
            f"mask {where(mask_path, sample.origin)} is {mask.shape[-1]}x{mask.shape[-2]} but its image "
            f"{sample.image} is {w}x{h}; a mask must have its image's size"
        )


class ImageDataset(Dataset):
    """Inference: ``(id, uint8 image (3,H,W))`` for every sample, in list order."""

    def __init__(self, root: str | os.PathLike, samples: Sequence[Sample]):
        self.root, self.samples = Path(root), list(samples)

    def __len__(self) -> int:
        return len(self.samples)

    def __getitem__(self, i: int):
        s = self.samples[i]
        return s.id, read_image(self.root / s.image, s.origin)


class EvalDataset(ImageDataset):
    """Evaluation: ``(id, image, mask)`` with ground-truth masks read as class indices."""

    def __init__(self, root, samples, num_classes: int, ignore_labels: Sequence[int] = ()):
        super().__init__(root, samples)
        missing = [s.image for s in self.samples if not s.mask]
        if missing:
            raise ValueError(f"evaluation needs a mask for every image; none for {missing[:3]}")
        self.num_classes, self.ignore_labels = num_classes, as_label_map(ignore_labels)

    def __getitem__(self, i: int):
        s = self.samples[i]
        image = read_image(self.root / s.image, s.origin)
        mask = read_mask(self.root / s.mask, self.num_classes, self.ignore_labels, s.origin)
        check_same_size(image, mask, s, self.root / s.mask)
        return s.id, image, mask


class TrainDataset(Dataset):
    """Training pairs: weak augmentation always, then ``strong`` where given (pseudo-labeled
    images; labeled ones under train.strong_augmentation: all or train.labeled_cutout).

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
        self.num_classes, self.ignore_labels = num_classes, as_label_map(ignore_labels)
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
        image = tv_tensors.Image(read_image(self.root / s.image, s.origin))
        if self.store is not None:
            mask = torch.from_numpy(self.store[s.id])
            if mask.shape != image.shape[-2:]:
                raise DataError(
                    f"pseudo-mask of {s.id} in {self.store.path} is {tuple(mask.shape)} but the image "
                    f"is {tuple(image.shape[-2:])}: the image changed after labeling; re-run labeling"
                )
        else:
            mask = read_mask(self.root / s.mask, self.num_classes, self.ignore_labels, s.origin)
            check_same_size(image, mask, s, self.root / s.mask)
        image, mask = self.weak(image, tv_tensors.Mask(mask))
        if self.strong is not None:
            image, mask = self.strong(image, mask)
        return to_training_pair(image, mask)


class SeededSamples(Dataset):
    """A training set whose every sample draws its augmentation from a seed of its own, made of
    the epoch's seed and the sample's index: the same pixels whatever the DataLoader workers, the
    iteration a run resumed from, or the process that loads it. The caller's RNG is left as it was
    (the model's dropout draws from it)."""

    def __init__(self, dataset: Dataset):
        self.dataset, self.epoch_seed = dataset, 0

    def set_epoch_seed(self, seed: int) -> None:
        self.epoch_seed = seed

    def __len__(self) -> int:
        return len(self.dataset)

    def __getitem__(self, i: int):
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed((self.epoch_seed * 1_000_003 + i) % 2**63)
            return self.dataset[i]


def epoch_batches(size: int, batch_size: int, seed: int) -> list[list[int]]:
    """The epoch's batches of dataset indices: a permutation drawn from ``seed``, cut into full
    batches (the last partial one dropped, as ``drop_last``)."""
    order = torch.randperm(size, generator=torch.Generator().manual_seed(seed))
    iterations = size // batch_size
    return order[: iterations * batch_size].view(iterations, batch_size).tolist()


def oversample(samples: Sequence[Sample], target: int) -> list[Sample]:
    """Repeat ``samples`` ceil(target / len) times (the reference code's over-sampling)."""
    return list(samples) * repeats(len(samples), target)


def training_set(
    root,
    labeled: Sequence[Sample],
    pseudo: Sequence[tuple[Sequence[Sample], str]],
    weak: WeakAugment,
    strong: StrongAugment | None,
    num_classes: int,
    ignore_labels: Sequence[int] = (),
    min_labeled: int = 200,
    labeled_strong: StrongAugment | None = None,
) -> Dataset:
    """Labeled + pseudo-labeled training set, one loss, equal weight (docs/method.md).

    With pseudo-labels the labeled list is over-sampled to about the number of pseudo-labeled
    images; without (the teacher) it is repeated up to ``min_labeled`` images per epoch.
    ``strong`` augments the pseudo-labeled images, ``labeled_strong`` the labeled ones (the
    paper's Table 5 and Figure 2 ablations).
    """
    num_pseudo = sum(len(samples) for samples, _ in pseudo)
    parts: list[Dataset] = [
        TrainDataset(
            root,
            oversample(labeled, num_pseudo or min_labeled),
            weak,
            num_classes,
            ignore_labels,
            strong=labeled_strong,
        )
    ]
    for samples, store in pseudo:
        parts.append(TrainDataset(root, samples, weak, num_classes, ignore_labels, store=store, strong=strong))
    return ConcatDataset(parts)
