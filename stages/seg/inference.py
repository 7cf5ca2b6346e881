"""Prediction: whole image, test-time augmentation, sliding window, and size-grouped batching."""

from __future__ import annotations

import logging
import time
from typing import Iterator, Sequence

import torch
import torch.nn.functional as F
from torch.utils.data import DataLoader, Dataset

from . import speed
from .cli import DEFAULT_TTA_SCALES, TTA_GEOMETRIES
from .metrics import confusion_matrix
from .models import ALIGN_CORNERS
from .transforms import normalize

log = logging.getLogger("stpp")


def scaled_size(h: int, w: int, scale: float, geometry: str = "rounded") -> tuple[int, int]:
    """The input size of one TTA scale: at 0.75, 97 x 131 becomes 73 x 98 rounded, 72 x 98 as
    the reference code truncates."""
    if geometry == "reference":
        return max(1, int(h * scale)), max(1, int(w * scale))
    return max(1, round(h * scale)), max(1, round(w * scale))


@torch.inference_mode()
def tta_probabilities(
    model: torch.nn.Module,
    images: torch.Tensor,
    scales: Sequence[float] = DEFAULT_TTA_SCALES,
    flip: bool = True,
    resize_logits: bool = False,
    geometry: str = "rounded",
) -> torch.Tensor:
    """Sum of softmax maps over scales (x flip), each resized back to the input size.

    ``images`` are normalised floats (N, 3, H, W). The input is resized bilinearly for each
    scale; a flipped pass is flipped back before it is added (docs/method.md, stage 2): the
    paper's softmax at the scaled size, resized back. ``resize_logits`` instead takes the
    model's class scores at its output resolution (``SegModel.logits``) straight to (H, W) and
    takes the softmax there: one resize a pass instead of two, the same at scale 1, not exactly
    the paper's elsewhere. ``geometry`` is how the sizes are computed and the resizes aligned
    (``TTA_GEOMETRIES``).
    """
    if geometry not in TTA_GEOMETRIES:
        raise ValueError(f"TTA geometry is one of {TTA_GEOMETRIES}, got {geometry!r}")
    corners = geometry == "reference"
    h, w = images.shape[-2:]
    total = None
    for scale in scales:
        size = scaled_size(h, w, scale, geometry)
        x = images if size == (h, w) else F.interpolate(images, size, mode="bilinear", align_corners=corners)
        for flipped in (False, True) if flip else (False,):
            xi = x.flip(-1) if flipped else x
            if resize_logits:
                probs = F.interpolate(model.logits(xi), (h, w), mode="bilinear", align_corners=ALIGN_CORNERS).softmax(1)
            else:
                probs = model(xi).softmax(1)
            if flipped:
                probs = probs.flip(-1)
            if probs.shape[-2:] != (h, w):
                probs = F.interpolate(probs, (h, w), mode="bilinear", align_corners=corners)
            total = probs if total is None else total + probs
    return total


@torch.inference_mode()
def sliding_window_logits(model: torch.nn.Module, images: torch.Tensor, window: int, stride: int) -> torch.Tensor:
    """Average logits of ``window`` x ``window`` tiles at ``stride``; small images are padded."""
    if not 0 < stride <= window:
        raise ValueError(f"sliding-window stride must be in [1, window={window}], got {stride}: larger leaves gaps")
    n, _, h, w = images.shape
    ph, pw = max(window - h, 0), max(window - w, 0)
    x = F.pad(images, (0, pw, 0, ph))  # zero = the mean colour after normalisation
    H, W = x.shape[-2:]
    tops = list(range(0, H - window + 1, stride)) or [0]
    lefts = list(range(0, W - window + 1, stride)) or [0]
    if tops[-1] + window < H:
        tops.append(H - window)
    if lefts[-1] + window < W:
        lefts.append(W - window)
    out, count = None, torch.zeros((1, 1, H, W), device=images.device)
    for t in tops:
        for left in lefts:
            logits = model(x[..., t : t + window, left : left + window])
            if out is None:
                out = torch.zeros(
                    (n, logits.shape[1], H, W),
                    device=images.device,  # float32 sums under autocast too
                    dtype=torch.promote_types(logits.dtype, torch.float32),
                )
            out[..., t : t + window, left : left + window] += logits
            count[..., t : t + window, left : left + window] += 1
    return (out / count)[..., :h, :w]


def predict(
    model: torch.nn.Module,
    images_uint8: torch.Tensor,
    scales: Sequence[float] | None = None,
    flip: bool = False,
    window: int | None = None,
    stride: int | None = None,
    resize_logits: bool = False,
    amp_dtype: torch.dtype | None = None,
    geometry: str = "rounded",
    confidence: bool = False,
) -> torch.Tensor | tuple[torch.Tensor, torch.Tensor]:
    """Hard masks (N, H, W) uint8 for uint8 images: plain, TTA (``scales``) or sliding window.
    ``amp_dtype``: autocast (bf16 / fp16 on CUDA, ``seg.speed.amp_dtype``); None is float32.
    With ``confidence``, also each pixel's confidence (N, H, W) uint8: the winning class's
    probability (with TTA its mean over the passes) x 255, rounded (:func:`confidence_uint8`)."""
    x = normalize(images_uint8)
    with (
        torch.inference_mode(),
        torch.autocast(x.device.type, dtype=amp_dtype or torch.float32, enabled=amp_dtype is not None),
    ):
        if window:
            scores = sliding_window_logits(model, x, window, stride or max(1, window * 2 // 3))
        elif scales is not None:
            scores = tta_probabilities(model, x, scales, flip, resize_logits, geometry)
        else:
            scores = model(x)
    masks = scores.argmax(1).to(torch.uint8)
    if not confidence:
        return masks
    if scales is not None and not window:  # a sum of softmax maps: the mean over the passes
        probs = scores.float() / (len(scales) * (2 if flip else 1))
    else:
        probs = scores.float().softmax(1)
    return masks, confidence_uint8(probs.amax(1))


def confidence_uint8(probability: torch.Tensor) -> torch.Tensor:
    """A probability in [0, 1] as uint8 0..255 (rounded): how mask stores keep a pixel's
    confidence. A threshold t compares as ``stored >= round(255 t)`` (:func:`confident`)."""
    return (probability.clamp(0, 1) * 255).round().to(torch.uint8)


def confident(stored, threshold: float):
    """Which pixels of a stored uint8 confidence reach ``threshold`` (stpp.pixel_threshold)."""
    return stored >= round(255 * threshold)


def batches_by_size(
    dataset: Dataset,
    batch_size: int,
    num_workers: int = 0,
    device: torch.device | str = "cpu",
    what: str = "images",
    prefetch_factor: int = 2,
) -> Iterator[tuple[list[str], torch.Tensor, list]]:
    """Yield ``(ids, uint8 images on device, extras)``, grouping consecutive images of one size.

    Images stream from a DataLoader (decoding in ``num_workers`` processes, ``prefetch_factor``
    images ahead each, while the model computes); only one batch is held at a time. On CUDA a
    batch is copied from pinned memory without blocking. ``extras`` collects any further fields
    of each item (ground-truth masks for evaluation). Logs progress about every 10% of the list.
    """
    device = torch.device(device)
    loader = DataLoader(
        dataset,
        batch_size=None,
        shuffle=False,
        num_workers=num_workers,
        prefetch_factor=prefetch_factor if num_workers else None,
    )
    cores = speed.shared_cores(device)  # threads that follow the cores other processes leave
    total, done, start = len(dataset), 0, time.time()
    every = max(1, total // 10)
    for group in _same_size_groups(loader, batch_size):
        cores.adapt()
        ids = [item[0] for item in group]
        images = torch.stack([item[1] for item in group])
        images = images.pin_memory().to(device, non_blocking=True) if device.type == "cuda" else images.to(device)
        extras = [item[2] if len(item) == 3 else tuple(item[2:]) for item in group]
        before, done = done, done + len(group)
        if done // every != before // every or done == total:
            log.info("%d/%d %s (%.2f images/s)", done, total, what, done / max(time.time() - start, 1e-9))
        yield ids, images, extras


def _same_size_groups(items: Iterator[tuple], batch_size: int) -> Iterator[list[tuple]]:
    """Consecutive items whose image (second field) has one shape, at most ``batch_size`` each."""
    group: list[tuple] = []
    for item in items:
        if group and (item[1].shape != group[0][1].shape or len(group) == batch_size):
            yield group
            group = []
        group.append(item)
    if group:
        yield group


def accumulate_confusion(
    model: torch.nn.Module,
    dataset: Dataset,
    num_classes: int,
    batch_size: int = 1,
    num_workers: int = 0,
    device: torch.device | str = "cpu",
    window: int | None = None,
    stride: int | None = None,
    amp_dtype: torch.dtype | None = None,
    prefetch_factor: int = 2,
    per_image: dict[str, torch.Tensor] | None = None,
) -> torch.Tensor:
    """One confusion matrix over a whole evaluation set of ``(id, image, mask)`` items; with
    ``per_image`` (a dict), each image's own matrix is also stored there under its id (what a
    paired bootstrap over images resamples)."""
    cm = torch.zeros((num_classes, num_classes), dtype=torch.int64)
    for ids, images, masks in batches_by_size(dataset, batch_size, num_workers, device, "evaluated", prefetch_factor):
        pred = predict(model, images, window=window, stride=stride, amp_dtype=amp_dtype).cpu()
        if per_image is None:
            cm += confusion_matrix(pred, torch.stack(masks), num_classes)
            continue
        for image_id, p, mask in zip(ids, pred, masks, strict=True):
            per_image[image_id] = confusion_matrix(p, mask, num_classes)
            cm += per_image[image_id]
    return cm
