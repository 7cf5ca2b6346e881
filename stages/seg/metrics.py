"""Confusion matrices, IoU and the ST++ stability score (docs/method.md, stages 3 and 8)."""

from __future__ import annotations

from typing import Sequence

import numpy as np
import torch


def confusion_matrix(
    pred: torch.Tensor | np.ndarray, target: torch.Tensor | np.ndarray, num_classes: int
) -> torch.Tensor:
    """(C, C) int64 matrix, rows = target, columns = prediction.

    Pixels whose target is outside [0, C) (the ignore index 255 among them) are skipped. A
    prediction outside [0, C) is an error: it would land in another cell of the matrix or crash
    ``bincount``, and means that the model and ``num_classes`` disagree. Counted with numpy
    (tensors on the CPU are viewed, not copied): for the masks of one image, torch's int64
    conversions and bincount took 16 times longer.
    """
    pred, target = _flat(pred), _flat(target)
    if pred.size:
        lowest, highest = int(pred.min()), int(pred.max())
        if lowest < 0 or highest >= num_classes:
            raise ValueError(
                f"prediction has class {lowest if lowest < 0 else highest}, "
                f"outside [0, {num_classes}): the model and num_classes disagree"
            )
    keep = (target >= 0) & (target < num_classes)
    idx = target[keep].astype(np.int64) * num_classes + pred[keep]
    return torch.from_numpy(np.bincount(idx, minlength=num_classes**2).reshape(num_classes, num_classes))


def _flat(x: torch.Tensor | np.ndarray) -> np.ndarray:
    if isinstance(x, torch.Tensor):
        x = x.detach().cpu().numpy()
    return np.asarray(x).reshape(-1)


def iou_per_class(cm: torch.Tensor | np.ndarray) -> np.ndarray:
    """IoU_c = TP / (TP + FP + FN); NaN for a class absent from both target and prediction. A
    stack of matrices (..., C, C) gives (..., C)."""
    cm = np.asarray(cm, dtype=np.float64)
    tp = np.diagonal(cm, axis1=-2, axis2=-1)
    union = cm.sum(-2) + cm.sum(-1) - tp
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(union > 0, tp / union, np.nan)


def mean_iou(cm: torch.Tensor | np.ndarray) -> float:
    """NaN-mean of :func:`iou_per_class`: absent classes are left out, one-sided ones count 0."""
    iou = iou_per_class(cm)
    return float(np.nanmean(iou)) if np.isfinite(iou).any() else float("nan")


def pixel_accuracy(cm: torch.Tensor | np.ndarray) -> float:
    cm = np.asarray(cm, dtype=np.float64)
    total = cm.sum()
    return float(np.trace(cm) / total) if total else float("nan")


def stability_score(masks: Sequence[torch.Tensor], num_classes: int) -> tuple[float, list[float]]:
    """ST++ score of one image from the masks of checkpoints 1..K (the last is the reference).

    s = sum over j < K of meanIoU(M_j, M_K). The reference code averages instead; the ranking,
    which is all the split uses, is the same. Returns the score and the K-1 per-checkpoint mIoUs.
    """
    if len(masks) < 2:
        raise ValueError("the stability score needs the masks of at least 2 checkpoints")
    last = masks[-1]
    ious = [mean_iou(confusion_matrix(m, last, num_classes)) for m in masks[:-1]]
    return float(sum(ious)), ious


def spearman(x: Sequence[float], y: Sequence[float]) -> float:
    """Spearman rank correlation: Pearson's r of the ranks, ties given their average rank.

    Used to ask whether the stability score ranks images as their pseudo-mask quality does.
    NaN when either side is constant or there are fewer than 2 pairs.
    """
    x, y = np.asarray(x, dtype=np.float64), np.asarray(y, dtype=np.float64)
    if x.shape != y.shape:
        raise ValueError(f"spearman needs paired values, got {x.shape} and {y.shape}")
    if len(x) < 2:
        return float("nan")

    def ranks(v: np.ndarray) -> np.ndarray:
        _, inverse, counts = np.unique(v, return_inverse=True, return_counts=True)
        ends = np.cumsum(counts)  # the tied values of one group take ranks ends - counts .. ends - 1
        return ((ends - counts + ends - 1) / 2)[inverse]

    rx, ry = ranks(x) - (len(x) - 1) / 2, ranks(y) - (len(y) - 1) / 2
    denom = np.sqrt((rx**2).sum() * (ry**2).sum())
    return float((rx * ry).sum() / denom) if denom > 0 else float("nan")


# Paired comparisons of two models evaluated on the same images (benchmarks/semisup.py).


def miou_of_counts(cms: np.ndarray) -> np.ndarray:
    """mIoU of each of a stack of (C, C) confusion matrices, (..., C, C) -> (...): as
    :func:`mean_iou`, a class absent from target and prediction left out."""
    return np.nanmean(iou_per_class(cms), axis=-1)


def bootstrap_mean_differences(pairs, resamples: int = 2000, seed: int = 0) -> tuple[float, np.ndarray]:
    """(observed, resampled) mean over ``pairs`` of mIoU(b) - mIoU(a), where each pair is two
    models' per-image confusion matrices (N, C, C) on the same N images in the same order.

    Paired bootstrap: each resample draws each pair's images with replacement (pairs are resampled
    independently, e.g. one per split seed, each with its own test images) and recomputes both
    models' mIoU from the drawn images' summed matrices, so that an image that is hard for one
    model and easy for the other counts once, for both."""
    rng = np.random.default_rng(seed)
    observed, resampled = 0.0, np.zeros(resamples)
    for a, b in pairs:
        a, b = np.asarray(a), np.asarray(b)
        if a.shape != b.shape or a.ndim != 3:
            raise ValueError(
                f"two models' per-image confusion matrices must both be (N, C, C), got {a.shape} and {b.shape}"
            )
        n = len(a)
        observed += miou_of_counts(b.sum(0)) - miou_of_counts(a.sum(0))
        weights = rng.multinomial(n, np.full(n, 1 / n), size=resamples).astype(np.float64)  # (R, N) draw counts
        flat_a, flat_b = a.reshape(n, -1).astype(np.float64), b.reshape(n, -1).astype(np.float64)
        shape = (resamples, *a.shape[1:])
        resampled += miou_of_counts((weights @ flat_b).reshape(shape)) - miou_of_counts(
            (weights @ flat_a).reshape(shape)
        )
    return observed / len(pairs), resampled / len(pairs)


def paired_bootstrap_interval(
    pairs, level: float = 0.9, resamples: int = 2000, seed: int = 0
) -> tuple[float, float, float]:
    """(difference, low, high): :func:`bootstrap_mean_differences` and its percentile interval."""
    observed, resampled = bootstrap_mean_differences(pairs, resamples, seed)
    low, high = np.quantile(resampled, [(1 - level) / 2, (1 + level) / 2])
    return float(observed), float(low), float(high)


# One-sided 95 % quantiles of Student's t (the two-sided 90 % interval) by degrees of freedom;
# between rows the lower row's (wider) value is taken.
T_95 = {
    1: 6.314,
    2: 2.920,
    3: 2.353,
    4: 2.132,
    5: 2.015,
    6: 1.943,
    7: 1.895,
    8: 1.860,
    9: 1.833,
    10: 1.812,
    12: 1.782,
    15: 1.753,
    20: 1.725,
    30: 1.697,
}


def t_interval_90(values) -> tuple[float, float, float]:
    """(mean, low, high): the two-sided 90 % t-interval of the mean of ``values`` (e.g. one
    difference per split seed); low and high are NaN for a single value, whose spread is unknown."""
    values = np.asarray(values, dtype=np.float64)
    mean = float(values.mean())
    if len(values) < 2:
        return mean, float("nan"), float("nan")
    df = len(values) - 1
    t = T_95[max(d for d in T_95 if d <= df)]  # between table rows, the wider interval's
    half = t * float(values.std(ddof=1)) / np.sqrt(len(values))
    return mean, mean - half, mean + half
