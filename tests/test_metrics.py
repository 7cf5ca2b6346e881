"""Tests for stages.seg.metrics: confusion matrix, IoU, pixel accuracy, stability score.

Expected numbers are worked out by hand in the comments, not recomputed with the code under test.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from stages.seg import metrics
from stages.seg.metrics import confusion_matrix, iou_per_class, mean_iou, pixel_accuracy, stability_score

# 3 classes, 4x4. Three target pixels are ignored: two 255 and one 3 (== C, outside [0, C)).
TARGET = torch.tensor(
    [
        [0, 0, 1, 1],
        [0, 0, 1, 1],
        [2, 2, 2, 255],
        [2, 2, 255, 3],
    ]
)
PRED = torch.tensor(
    [
        [0, 1, 1, 1],
        [0, 0, 1, 2],
        [2, 2, 0, 1],
        [2, 1, 0, 0],
    ]
)
# rows = target, columns = prediction, counted pixel by pixel over the 13 kept pixels
EXPECTED_CM = [
    [3, 1, 0],  # target 0: (0,0) (1,0) (1,1) -> 0, (0,1) -> 1
    [0, 3, 1],  # target 1: (0,2) (0,3) (1,2) -> 1, (1,3) -> 2
    [1, 1, 3],  # target 2: (2,0) (2,1) (3,0) -> 2, (2,2) -> 0, (3,1) -> 1
]
# IoU_c = TP / (row sum + column sum - TP)
EXPECTED_IOU = [3 / (4 + 4 - 3), 3 / (4 + 5 - 3), 3 / (5 + 4 - 3)]  # 0.6, 0.5, 0.5


def test_confusion_matrix_by_hand():
    cm = confusion_matrix(PRED, TARGET, 3)
    assert cm.dtype == torch.int64 and cm.shape == (3, 3)
    assert cm.tolist() == EXPECTED_CM
    assert int(cm.sum()) == 13  # 16 pixels minus the 255, 255 and 3 targets


def test_confusion_matrix_ignores_targets_outside_range_whatever_the_prediction():
    target = torch.tensor([255, 3, 7, 0])
    pred = torch.tensor([0, 1, 2, 2])
    assert confusion_matrix(pred, target, 3).tolist() == [[0, 0, 1], [0, 0, 0], [0, 0, 0]]
    # uint8 and numpy inputs (as the stages pass them) give the same matrix
    cm_np = confusion_matrix(PRED.numpy().astype(np.uint8), TARGET.numpy().astype(np.uint8), 3)
    assert cm_np.tolist() == EXPECTED_CM


@pytest.mark.parametrize("bad", [3, 9, -1])
def test_confusion_matrix_rejects_predictions_outside_the_classes(bad):
    """A prediction of class >= C used to be counted in the next row's cells (or crash bincount
    past C * C); it means that the model and num_classes disagree, so it is an error."""
    target = torch.tensor([0, 1, 2, 255])
    pred = torch.tensor([0, 1, 2, bad])  # even where the target is ignored
    with pytest.raises(ValueError, match=rf"class {bad}, outside \[0, 3\)"):
        confusion_matrix(pred, target, 3)


def test_iou_mean_iou_pixel_accuracy_by_hand():
    cm = confusion_matrix(PRED, TARGET, 3)
    np.testing.assert_allclose(iou_per_class(cm), EXPECTED_IOU)
    assert mean_iou(cm) == pytest.approx((0.6 + 0.5 + 0.5) / 3)
    assert pixel_accuracy(cm) == pytest.approx(9 / 13)  # trace 3 + 3 + 3 of 13


def test_absent_class_is_nan_and_left_out_of_the_mean():
    # class 2 never appears in target or prediction; class 1 only in the prediction
    cm = np.array([[2, 1, 0], [0, 0, 0], [0, 0, 0]])
    iou = iou_per_class(cm)
    assert iou[0] == pytest.approx(2 / 3) and iou[1] == 0.0 and math.isnan(iou[2])
    assert mean_iou(cm) == pytest.approx((2 / 3 + 0.0) / 2)
    assert math.isnan(mean_iou(np.zeros((3, 3))))
    assert math.isnan(pixel_accuracy(np.zeros((3, 3))))


# Stability score, C = 4, K = 3; M3 is the reference (the final checkpoint).
M3 = torch.tensor([[0, 0, 0, 0], [1, 1, 1, 1]])
# M1 vs M3: class 0 TP 4, union 6 -> 2/3; class 1 TP 2, union 4 -> 1/2; classes 2, 3 absent.
M1 = torch.tensor([[0, 0, 0, 0], [0, 0, 1, 1]])
M1_MIOU = (2 / 3 + 1 / 2) / 2  # 7/12: absent classes left out (counting them 0 would give 7/24)
# M2 vs M3: class 0 TP 2, union 4 -> 1/2; class 1 -> 1; class 2 only in M2 -> 0; class 3 absent.
M2 = torch.tensor([[0, 0, 2, 2], [1, 1, 1, 1]])
M2_MIOU = (1 / 2 + 1 + 0) / 3  # 1/2 (leaving the one-sided class out would give 3/4)


def test_stability_score_identical_masks():
    for k in (2, 3, 5):
        score, ious = stability_score([M3.clone() for _ in range(k)], 4)
        assert ious == [1.0] * (k - 1)
        assert score == pytest.approx(k - 1)


def test_stability_score_by_hand():
    score, ious = stability_score([M1, M2, M3], 4)
    assert ious == pytest.approx([M1_MIOU, M2_MIOU])
    assert score == pytest.approx(7 / 12 + 1 / 2)  # a sum over j < K, not a mean
    # the last mask is the reference: with M1 last the score is mIoU(M2, M1) + mIoU(M3, M1)
    # = (2/6 + 2/4 + 0) / 3 + 7/12, which differs
    other, _ = stability_score([M2, M3, M1], 4)
    assert other == pytest.approx((1 / 3 + 1 / 2) / 3 + 7 / 12)


def test_stability_score_accepts_uint8_numpy_masks():
    score, _ = stability_score([m.numpy().astype(np.uint8) for m in (M1, M2, M3)], 4)
    assert score == pytest.approx(13 / 12)


@pytest.mark.parametrize("masks", [[], [M3]])
def test_stability_score_needs_two_masks(masks):
    with pytest.raises(ValueError, match="at least 2"):
        stability_score(masks, 4)


def test_spearman():
    from stages.seg.metrics import spearman

    assert spearman([1, 2, 3, 4], [10, 20, 30, 45]) == pytest.approx(1.0)
    assert spearman([1, 2, 3, 4], [0.9, 0.5, 0.2, 0.1]) == pytest.approx(-1.0)
    # ties take their average rank: x ranks (0, 1.5, 1.5, 3) against (0, 1, 2, 3)
    assert spearman([1, 2, 2, 3], [1, 2, 3, 4]) == pytest.approx(4.5 / (4.5 * 5) ** 0.5)
    assert math.isnan(spearman([1, 1, 1], [1, 2, 3]))
    assert math.isnan(spearman([1], [2]))
    with pytest.raises(ValueError, match="paired"):
        spearman([1, 2], [1, 2, 3])


def _two_class_images(bad: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Per-image confusion matrices of two models on images of 100 class-0 and 100 class-1
    pixels: model a is perfect; model b calls every class-1 pixel 0 on the ``bad`` images."""
    a = np.tile(np.diag([100, 100]), (len(bad), 1, 1))
    b = a.copy()
    b[bad] = [[100, 0], [100, 0]]
    return a, b


def _diff(n: int, k: int) -> float:
    """mIoU(b) - mIoU(a) when k of the n images drawn are bad: IoU_0 = n / (n + k), IoU_1 = (n - k) / n."""
    return (n / (n + k) + (n - k) / n) / 2 - 1


def test_paired_bootstrap_matches_the_binomial_answer():
    """Half the images bad: a resample of n images holds k ~ Binomial(n, 1/2) bad ones, and the
    difference falls with k, so the interval's ends are the difference at k's 95 % and 5 % quantiles."""
    from math import comb

    n = 40
    a, b = _two_class_images(np.arange(n) % 2 == 1)
    diff, low, high = metrics.paired_bootstrap_interval([(a, b)], level=0.9, resamples=2000, seed=0)
    assert diff == pytest.approx(_diff(n, n // 2))
    cdf = np.cumsum([comb(n, k) / 2**n for k in range(n + 1)])
    k05, k95 = int(np.searchsorted(cdf, 0.05)), int(np.searchsorted(cdf, 0.95))  # 15 and 25
    assert _diff(n, k95 + 1) <= low <= _diff(n, k95 - 1)
    assert _diff(n, k05 + 1) <= high <= _diff(n, k05 - 1)
    # the same models, the same images: no difference and no spread
    assert metrics.paired_bootstrap_interval([(a, a)]) == (0.0, 0.0, 0.0)
    # deterministic for a seed
    assert metrics.paired_bootstrap_interval([(a, b)], seed=3) == metrics.paired_bootstrap_interval([(a, b)], seed=3)


def test_pooled_bootstrap_averages_the_seeds():
    """Two seeds, one with no difference and one always bad: the pooled difference is their mean,
    and seed 2's constant difference leaves seed 1's spread halved."""
    n = 40
    a1, b1 = _two_class_images(np.arange(n) % 2 == 1)
    a2, b2 = _two_class_images(np.ones(n, bool))
    single = metrics.paired_bootstrap_interval([(a1, b1)], seed=0)
    pooled = metrics.paired_bootstrap_interval([(a1, b1), (a2, b2)], seed=0)
    assert pooled[0] == pytest.approx((single[0] + _diff(n, n)) / 2)
    assert pooled[2] - pooled[1] == pytest.approx((single[2] - single[1]) / 2)
    with pytest.raises(ValueError, match="same|both"):
        metrics.paired_bootstrap_interval([(a1, b1[:3])])


def test_t_interval_90():
    mean, low, high = metrics.t_interval_90([1.0, 2.0, 3.0])
    assert mean == 2.0 and high - mean == pytest.approx(2.920 * 1.0 / np.sqrt(3))
    assert np.isnan(metrics.t_interval_90([1.0])[1])
    assert metrics.t_interval_90([0.0] * 12 + [1.0])[2] > 0  # 12 degrees of freedom: from the table's row 12
