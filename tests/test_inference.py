"""Tests for stages.seg.inference: plain / TTA / sliding-window prediction and size-grouped batches."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.data import Dataset

from stages.seg.inference import (
    accumulate_confusion,
    batches_by_size,
    predict,
    sliding_window_logits,
    tta_probabilities,
)
from stages.seg.metrics import confusion_matrix
from stages.seg.models import build_model
from stages.seg.transforms import normalize

C = 3


@pytest.fixture(scope="module")
def model():
    torch.manual_seed(0)
    return build_model("deeplabv3plus", "resnet18", num_classes=C).eval()


def random_images(n: int, h: int, w: int, seed: int = 0) -> torch.Tensor:
    return torch.randint(0, 256, (n, 3, h, w), dtype=torch.uint8, generator=torch.Generator().manual_seed(seed))


class Pointwise(nn.Module):
    """A 1x1 convolution: translation-, flip- and tiling-equivariant. Records its input sizes."""

    def __init__(self):
        super().__init__()
        torch.manual_seed(1)
        self.conv = nn.Conv2d(3, C, 1)
        self.sizes: list[tuple[int, int]] = []

    def forward(self, x):
        self.sizes.append(tuple(x.shape[-2:]))
        return self.conv(x)


class ColumnRamp(nn.Module):
    """Logits (r, -r) with r rising left to right, whatever the input: not flip-equivariant."""

    def forward(self, x):
        n, _, h, w = x.shape
        r = torch.linspace(-2.0, 2.0, w).expand(n, h, w)
        return torch.stack([r, -r], 1)


def test_predict_single_scale_tta_equals_plain_argmax(model):
    images = random_images(2, 32, 32)
    plain = predict(model, images)
    assert plain.dtype == torch.uint8 and plain.shape == (2, 32, 32)
    with torch.no_grad():
        assert torch.equal(plain, model(normalize(images)).argmax(1).to(torch.uint8))
    assert torch.equal(predict(model, images, scales=[1.0], flip=False), plain)


@pytest.mark.parametrize("flip", [False, True])
def test_tta_probabilities_mass_and_size(model, flip):
    scales = (0.5, 1.0, 1.5)
    x = normalize(random_images(1, 37, 29))
    probs = tta_probabilities(model, x, scales, flip)
    assert probs.shape == (1, C, 37, 29)
    passes = len(scales) * (2 if flip else 1)
    torch.testing.assert_close(probs.sum(1), torch.full((1, 37, 29), float(passes)))
    assert (probs >= 0).all()


def test_tta_resizes_the_input_per_scale():
    m = Pointwise()
    x = normalize(random_images(1, 36, 28))
    probs = tta_probabilities(m, x, (0.5, 0.75, 2.0), flip=True)
    # each scale twice (plain and flipped); the input, not the output, is resized
    assert m.sizes == [(18, 14), (18, 14), (27, 21), (27, 21), (72, 56), (72, 56)]
    assert probs.shape == (1, C, 36, 28)


def test_tta_flipped_pass_is_flipped_back():
    x = torch.zeros(1, 3, 5, 8)
    p = ColumnRamp()(x).softmax(1)
    torch.testing.assert_close(tta_probabilities(ColumnRamp(), x, (1.0,), flip=True), p + p.flip(-1))
    # an equivariant model gives the same map on both passes: twice the plain probabilities
    m = Pointwise()
    with torch.no_grad():
        p = m(x).softmax(1)
    torch.testing.assert_close(tta_probabilities(m, x, (1.0,), flip=True), 2 * p)


def test_sliding_window_covering_the_image(model):
    x = normalize(random_images(1, 37, 29))
    with torch.no_grad():
        padded = model(F.pad(x, (0, 48 - 29, 0, 48 - 37)))[..., :37, :29]
        whole = model(x)
    torch.testing.assert_close(sliding_window_logits(model, x, window=48, stride=32), padded)
    square = normalize(random_images(1, 32, 32))
    with torch.no_grad():
        torch.testing.assert_close(sliding_window_logits(model, square, window=32, stride=21), model(square))
    assert whole.shape == padded.shape


def test_sliding_window_tiles_average_to_whole_image():
    m = Pointwise()
    x = normalize(random_images(2, 37, 29))
    out = sliding_window_logits(m, x, window=16, stride=10)
    with torch.no_grad():
        torch.testing.assert_close(out, m.conv(x))
    # rows 0, 10, 20 and 21 (the last tile touches the bottom edge); columns 0, 10 and 13
    assert len(m.sizes) == 4 * 3 and set(m.sizes) == {(16, 16)}


def test_predict_sliding_window(model):
    images = random_images(2, 37, 29)
    out = predict(model, images, window=16, stride=8)
    assert out.shape == (2, 37, 29) and out.dtype == torch.uint8 and int(out.max()) < C


class SizedImages(Dataset):
    """(id, uint8 image[, mask]) items of the given sizes, each image filled with its index."""

    def __init__(self, sizes, with_mask=False):
        self.sizes, self.with_mask = sizes, with_mask

    def __len__(self):
        return len(self.sizes)

    def __getitem__(self, i):
        h, w = self.sizes[i]
        image = torch.full((3, h, w), i, dtype=torch.uint8)
        if self.with_mask:
            return f"img/{i}", image, torch.full((h, w), 10 + i, dtype=torch.uint8)
        return f"img/{i}", image


SIZES = [(8, 8), (8, 8), (8, 8), (6, 8), (8, 8), (8, 8), (8, 8), (8, 6)]


def test_batches_by_size_groups_consecutive_sizes():
    batches = list(batches_by_size(SizedImages(SIZES), batch_size=2))
    assert [ids for ids, _, _ in batches] == [
        ["img/0", "img/1"],
        ["img/2"],
        ["img/3"],
        ["img/4", "img/5"],
        ["img/6"],
        ["img/7"],
    ]
    for ids, images, extras in batches:
        assert images.dtype == torch.uint8 and images.shape[0] == len(ids) <= 2
        for image_id, image in zip(ids, images, strict=True):
            i = int(image_id.split("/")[1])
            assert image.shape == (3, *SIZES[i]) and bool((image == i).all())
        assert extras == [()] * len(ids)


def test_batches_by_size_carries_masks():
    batches = list(batches_by_size(SizedImages(SIZES, with_mask=True), batch_size=3))
    assert [len(ids) for ids, _, _ in batches] == [3, 1, 3, 1]
    for ids, _, masks in batches:
        assert [int(m[0, 0]) - 10 for m in masks] == [int(i.split("/")[1]) for i in ids]


class EvalImages(Dataset):
    """(id, image, mask) with random masks that include 255 (ignored) pixels."""

    def __len__(self):
        return 4

    def __getitem__(self, i):
        g = torch.Generator().manual_seed(i)
        h, w = (12, 10) if i < 3 else (9, 10)
        mask = torch.randint(0, C + 1, (h, w), generator=g, dtype=torch.uint8)
        mask[mask == C] = 255
        return f"{i}", random_images(1, h, w, seed=i)[0], mask


def test_accumulate_confusion_sums_over_the_set():
    m = Pointwise().eval()
    data = EvalImages()
    expected = sum(confusion_matrix(predict(m, data[i][1][None])[0], data[i][2], C) for i in range(len(data)))
    cm = accumulate_confusion(m, data, C, batch_size=2)
    assert torch.equal(cm, expected)
    assert int(cm.sum()) == sum(int((data[i][2] != 255).sum()) for i in range(len(data)))


def test_sliding_window_rejects_a_stride_that_leaves_gaps():
    model = torch.nn.Conv2d(3, 2, 1).eval()
    with pytest.raises(ValueError, match="stride"):
        sliding_window_logits(model, torch.zeros(1, 3, 20, 20), window=8, stride=9)


def reference_tta(net: nn.Module, x: torch.Tensor, scales) -> torch.Tensor:
    """The ST++ reference code's TTA (model/semseg/base.py, forward(tta=True)), rewritten: sizes
    int(h * scale), align_corners=True both ways, softmax at the scaled size, flip pass added."""
    h, w = x.shape[-2:]
    total = 0
    for scale in scales:
        cur = F.interpolate(x, size=(int(h * scale), int(w * scale)), mode="bilinear", align_corners=True)
        out = F.softmax(net(cur), dim=1)
        total = total + F.interpolate(out, (h, w), mode="bilinear", align_corners=True)
        out = F.softmax(net(cur.flip(3)), dim=1).flip(3)
        total = total + F.interpolate(out, (h, w), mode="bilinear", align_corners=True)
    return total


@pytest.mark.parametrize("h,w", [(97, 131), (33, 17), (50, 75)])
def test_reference_tta_geometry_matches_the_reference_arithmetic(h, w):
    """label.tta_geometry: reference truncates the scaled sides and aligns corners both ways, as
    the reference code: on odd sizes its summed maps equal the rewrite above; the default rounds
    (at 0.75, 97 x 131 is 73 x 98 against the reference's 72 x 98) and differs."""
    from stages.seg.inference import scaled_size

    net = Pointwise().eval()
    x = torch.randn(1, 3, h, w, generator=torch.Generator().manual_seed(2))
    scales = (0.5, 0.75, 1.0, 1.5, 2.0)
    expected = reference_tta(net, x, scales)
    ours = tta_probabilities(net, x, scales, flip=True, geometry="reference")
    torch.testing.assert_close(ours, expected, atol=1e-5, rtol=1e-5)
    assert not torch.allclose(tta_probabilities(net, x, scales, flip=True), expected, atol=1e-3)
    assert scaled_size(97, 131, 0.75, "reference") == (72, 98)
    assert scaled_size(97, 131, 0.75) == (73, 98)
    with pytest.raises(ValueError, match="TTA geometry"):
        tta_probabilities(net, x, scales, geometry="nearest")


def test_predict_returns_each_pixels_mean_tta_confidence():
    """The confidence stages.label stores: the winning class's probability averaged over the
    passes, x 255 rounded; one scale without flip: the plain softmax's maximum."""
    net = Pointwise().eval()
    images = random_images(2, 12, 16)
    masks, conf = predict(net, images, scales=[1.0], flip=False, confidence=True)
    probs = net(normalize(images)).softmax(1)
    assert torch.equal(masks, probs.argmax(1).to(torch.uint8))
    assert torch.equal(conf, (probs.amax(1) * 255).round().to(torch.uint8))
    masks2, conf2 = predict(net, images, scales=[0.5, 1.0], flip=True, confidence=True)
    mean = tta_probabilities(net, normalize(images), [0.5, 1.0], True) / 4
    assert torch.equal(conf2, (mean.amax(1) * 255).round().to(torch.uint8))
    assert conf2.min() >= 255 // C  # a winning class has at least 1/C
