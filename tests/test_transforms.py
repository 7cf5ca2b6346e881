"""Tests for stages.seg.transforms (weak / strong augmentation, Cutout, normalisation)."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as nnf
from torchvision import tv_tensors

from stages.seg.transforms import (
    IGNORE_INDEX,
    IMAGENET_MEAN,
    IMAGENET_STD,
    StrongAugment,
    WeakAugment,
    cutout,
    gaussian_kernel_size,
    normalize,
    random_rescale,
    to_training_pair,
)

H, W = 40, 30


def coord_pair(h: int = H, w: int = W, seed: int = 0):
    """Image whose channels encode (class * 40, row + 1, col + 1); random class mask in 0..5.

    Every pixel of the image therefore names its source position, and padded pixels
    (image 0) are distinguishable from real ones (row + 1 >= 1)."""
    g = torch.Generator().manual_seed(seed)
    mask = torch.randint(0, 6, (h, w), generator=g, dtype=torch.uint8)
    rows = torch.arange(1, h + 1, dtype=torch.uint8).view(h, 1).expand(h, w)
    cols = torch.arange(1, w + 1, dtype=torch.uint8).view(1, w).expand(h, w)
    image = torch.stack([mask * 40, rows, cols])
    return tv_tensors.Image(image), tv_tensors.Mask(mask)


def block_pair(h: int = H, w: int = W, block: int = 10, seed: int = 0):
    """Blocky class map (block x block regions), image = class * 40 in all channels."""
    g = torch.Generator().manual_seed(seed)
    bh, bw = -(-h // block), -(-w // block)
    cls = torch.randint(0, 6, (bh, bw), generator=g, dtype=torch.uint8)
    mask = cls.repeat_interleave(block, 0).repeat_interleave(block, 1)[:h, :w].contiguous()
    image = (mask * 40).unsqueeze(0).expand(3, h, w).contiguous()
    return tv_tensors.Image(image), tv_tensors.Mask(mask)


# ------------------------------------------------------------------------------------------
# weak augmentation
# ------------------------------------------------------------------------------------------
@pytest.mark.parametrize("crop", [16, 30, 45, 64])
def test_weak_exact_alignment_pad_crop_flip(crop):
    """With the rescale switched off (scale 1 of the own long side) pad/crop/flip are exact:
    each output pixel's mask equals the source mask at the position its image pixel names."""
    image, mask = coord_pair()
    aug = WeakAugment(crop_size=crop, base_size=None, scale_range=(1.0, 1.0))
    flips_seen = set()
    for seed in range(25):
        torch.manual_seed(seed)
        out_img, out_mask = aug(image, mask)
        assert out_img.shape == (3, crop, crop) and out_mask.shape == (crop, crop)
        assert out_img.dtype == torch.uint8 and out_mask.dtype == torch.uint8
        assert isinstance(out_img, tv_tensors.Image) and isinstance(out_mask, tv_tensors.Mask)
        rows = out_img[1].long() - 1
        cols = out_img[2].long() - 1
        real = rows >= 0
        pad = ~real
        # padding: image 0 in every channel, mask 255
        assert (out_img[:, pad] == 0).all()
        assert (out_mask[pad] == IGNORE_INDEX).all()
        # real pixels: mask matches the source and the class channel
        assert torch.equal(out_mask[real], mask[rows[real], cols[real]])
        assert torch.equal(out_img[0][real], out_mask[real] * 40)
        # geometry: rows contiguous top-down; columns contiguous, one direction per sample
        if crop <= H:
            assert real.all()
        if real[0].sum() >= 2:
            d = cols[0][real[0]].diff()
            assert (d == d[0]).all() and d[0].abs() == 1
            flips_seen.add(int(d[0]))
        rr = rows[:, 0][real[:, 0]] if real[:, 0].any() else rows[:, -1][real[:, -1]]
        assert (rr.diff() == 1).all()
        # padding only on the bottom/right of the unflipped image
        if pad.any():
            assert crop > min(H, W)
    assert flips_seen == {1, -1}


def test_weak_padding_region_when_image_smaller_than_crop():
    image, mask = coord_pair(10, 8)
    aug = WeakAugment(crop_size=20, scale_range=(1.0, 1.0), flip_p=0.0)
    torch.manual_seed(0)
    out_img, out_mask = aug(image, mask)
    # no room to crop: the image sits top-left, padding right/bottom
    assert torch.equal(out_img[:, :10, :8], image)
    assert torch.equal(out_mask[:10, :8], mask)
    assert (out_img[:, 10:, :] == 0).all() and (out_img[:, :, 8:] == 0).all()
    assert (out_mask[10:, :] == 255).all() and (out_mask[:, 8:] == 255).all()


@pytest.mark.parametrize(
    "base_size,crop,block", [(None, 24, 12), (40, 24, 12), (60, 32, 12), (20, 16, 20), (100, 48, 12)]
)
def test_weak_rescale_alignment_interior(base_size, crop, block):
    """With a real rescale the image is bilinear and the mask nearest: wherever the mask is
    uniform (and not ignored) in a neighbourhood wider than the bilinear transition (radius
    ceil(max upscale), at least 2), the image equals class * 40 (+-2)."""
    image, mask = block_pair(block=block)
    base = max(H, W) if base_size is None else base_size
    r = max(2, math.ceil(2.0 * base / max(H, W)))
    k = 2 * r + 1
    aug = WeakAugment(crop_size=crop, base_size=base_size)
    checked = 0
    for seed in range(20):
        torch.manual_seed(seed)
        out_img, out_mask = aug(image, mask)
        assert out_img.shape == (3, crop, crop) and out_mask.shape == (crop, crop)
        m = out_mask.as_subclass(torch.Tensor).float()[None, None]
        mx = nnf.max_pool2d(m, k, stride=1, padding=r)[0, 0]
        mn = -nnf.max_pool2d(-m, k, stride=1, padding=r)[0, 0]
        # interior of the crop only (pooling pads with -inf, so borders count as uniform)
        inner = torch.zeros_like(mx, dtype=torch.bool)
        inner[r:-r, r:-r] = True
        sel = inner & (mx == mn) & (out_mask != IGNORE_INDEX)
        expected = out_mask[sel].long() * 40
        for ch in range(3):
            diff = (out_img[ch][sel].long() - expected).abs()
            assert diff.numel() == 0 or diff.max() <= 2
        # converse, exact: where the image is uniform at a class value in a 3x3 neighbourhood
        # (the bilinear footprint lies inside one source block), the nearest mask pixel must be
        # that class -- this catches even a one-pixel image/mask misalignment.
        im = out_img[0].as_subclass(torch.Tensor).float()[None, None]
        imx = nnf.max_pool2d(im, 3, stride=1, padding=1)[0, 0]
        imn = -nnf.max_pool2d(-im, 3, stride=1, padding=1)[0, 0]
        inner1 = torch.zeros_like(imx, dtype=torch.bool)
        inner1[1:-1, 1:-1] = True
        flat = inner1 & (imx == imn) & (out_img[0] % 40 == 0) & (out_mask != IGNORE_INDEX)
        assert torch.equal(out_mask[flat].long(), out_img[0][flat].long() // 40)
        # padded pixels are 0 / 255 (class 0 also gives image 0, so check via the mask)
        ign = out_mask == IGNORE_INDEX
        assert (out_img[:, ign] == 0).all()
        checked += int(sel.sum()) + int(flat.sum())
    assert checked > 1000


@pytest.mark.parametrize("base_size,crop", [(None, 24), (40, 32), (20, 16), (100, 48)])
def test_weak_rescale_alignment_binary_exact(base_size, crop):
    """Two classes, image 0 / 250: a bilinear (antialiased) pixel equals 0 or 250 exactly only
    if (almost) all of its kernel weight lies on one class, and the nearest source pixel --
    the one the mask takes -- carries the largest weight, so the mask must be that class.
    Exact pixel-level check of the rescale alignment (catches one-pixel shifts)."""
    g = torch.Generator().manual_seed(1)
    cls = torch.randint(0, 2, (8, 6), generator=g, dtype=torch.uint8)
    mask = cls.repeat_interleave(5, 0).repeat_interleave(5, 1)  # 40 x 30, 5-px blocks
    image = tv_tensors.Image((mask * 250).unsqueeze(0).expand(3, H, W).contiguous())
    mask = tv_tensors.Mask(mask)
    aug = WeakAugment(crop_size=crop, base_size=base_size)
    checked = 0
    for seed in range(20):
        torch.manual_seed(seed)
        out_img, out_mask = aug(image, mask)
        v = out_img[0]
        sel = ((v == 0) | (v == 250)) & (out_mask != IGNORE_INDEX)
        assert torch.equal(out_mask[sel], (v[sel] == 250).to(torch.uint8))
        assert (out_img[:, out_mask == IGNORE_INDEX] == 0).all()
        checked += int(sel.sum())
    assert checked > 20 * crop * crop // 4


@pytest.mark.parametrize("base_size", [None, 50])
def test_random_rescale_long_side_range(base_size):
    image, mask = block_pair()
    base = max(H, W) if base_size is None else base_size
    lo, hi = int(0.5 * base), int(2.0 * base)
    sides = []
    for seed in range(40):
        torch.manual_seed(seed)
        im, m = random_rescale(image, mask, base_size, (0.5, 2.0))
        oh, ow = im.shape[-2:]
        assert tuple(m.shape) == (oh, ow)
        assert lo <= max(oh, ow) <= hi
        assert oh == max(oh, ow)  # portrait stays portrait
        assert abs(ow / oh - W / H) <= 1.0 / oh + 1e-6  # aspect kept up to rounding
        assert set(m.unique().tolist()) <= set(mask.unique().tolist())  # nearest: no new values
        sides.append(max(oh, ow))
    assert min(sides) < base < max(sides)


# ------------------------------------------------------------------------------------------
# Cutout
# ------------------------------------------------------------------------------------------
def test_cutout_box_exact():
    image, mask = coord_pair()
    for seed in range(50):
        torch.manual_seed(seed)
        out_img, out_mask, (top, left, bh, bw) = cutout(image, mask)
        assert bh >= 1 and bw >= 1
        assert 0 <= top and top + bh <= H and 0 <= left and left + bw <= W
        assert bh * bw <= 0.4 * H * W + 1e-6
        box = torch.zeros(H, W, dtype=torch.bool)
        box[top : top + bh, left : left + bw] = True
        assert (out_mask[box] == IGNORE_INDEX).all()
        assert torch.equal(out_mask[~box], mask[~box])
        assert torch.equal(out_img[:, ~box], image[:, ~box])
        assert out_img.dtype == torch.uint8 and out_img.shape == image.shape
        assert isinstance(out_img, tv_tensors.Image) and isinstance(out_mask, tv_tensors.Mask)
        # the inputs are not modified in place
        assert (mask != IGNORE_INDEX).all()
    # inputs untouched after all calls
    assert torch.equal(coord_pair()[0], image)


def test_cutout_noise_and_size_statistics():
    image = tv_tensors.Image(torch.zeros(3, 100, 100, dtype=torch.uint8))
    mask = tv_tensors.Mask(torch.zeros(100, 100, dtype=torch.uint8))
    torch.manual_seed(0)
    fracs, ratios, noise = [], [], []
    for _ in range(200):
        out_img, _, (t, left, bh, bw) = cutout(image, mask, area=(0.02, 0.4), aspect=(0.3, 1 / 0.3))
        fracs.append(bh * bw / 1e4)
        ratios.append(bh / bw)
        noise.append(out_img[:, t : t + bh, left : left + bw].reshape(-1))
    fracs_t, ratios_t = torch.tensor(fracs), torch.tensor(ratios)
    assert fracs_t.min() >= 0.01 and fracs_t.max() <= 0.4
    assert 0.25 <= ratios_t.min() and ratios_t.max() <= 4.0
    noise_t = torch.cat(noise).float()
    assert noise_t.min() == 0 and noise_t.max() == 255
    assert abs(noise_t.mean().item() - 127.5) < 2.0
    # noise is per pixel and channel: channels differ
    out_img, _, (t, left, bh, bw) = cutout(image, mask)
    patch = out_img[:, t : t + bh, left : left + bw]
    assert not torch.equal(patch[0], patch[1])


def test_cutout_degenerate_shape_falls_back_inside():
    # a 2-pixel-high strip: most draws do not fit, the fallback clamps the box
    image = tv_tensors.Image(torch.zeros(3, 2, 60, dtype=torch.uint8))
    mask = tv_tensors.Mask(torch.zeros(2, 60, dtype=torch.uint8))
    for seed in range(20):
        torch.manual_seed(seed)
        _, out_mask, (t, left, bh, bw) = cutout(image, mask, area=(0.3, 0.4), aspect=(3.0, 4.0))
        assert 0 <= t and t + bh <= 2 and 0 <= left and left + bw <= 60
        assert int((out_mask == 255).sum()) == bh * bw


# ------------------------------------------------------------------------------------------
# strong augmentation
# ------------------------------------------------------------------------------------------
def _ignored_is_one_box(mask_before, mask_after):
    changed = mask_after != mask_before
    assert (mask_after[changed] == IGNORE_INDEX).all()
    ign = mask_after == IGNORE_INDEX
    rows = ign.any(1).nonzero().flatten()
    cols = ign.any(0).nonzero().flatten()
    top, bottom, left, right = rows.min(), rows.max() + 1, cols.min(), cols.max() + 1
    assert ign[top:bottom, left:right].all()
    assert int(ign.sum()) == int((bottom - top) * (right - left))
    return int(top), int(left), int(bottom - top), int(right - left)


def test_strong_mask_only_changed_by_cutout_box():
    image, mask = coord_pair()
    aug = StrongAugment()
    n_cut = 0
    n_img_changed = 0
    for seed in range(40):
        torch.manual_seed(seed)
        out_img, out_mask = aug(image, mask)
        assert out_img.shape == image.shape and out_img.dtype == torch.uint8
        assert out_mask.shape == mask.shape and out_mask.dtype == torch.uint8
        assert isinstance(out_img, tv_tensors.Image) and isinstance(out_mask, tv_tensors.Mask)
        if aug.last_cutout_box is None:
            assert torch.equal(out_mask, mask)
        else:
            n_cut += 1
            assert _ignored_is_one_box(mask, out_mask) == aug.last_cutout_box
        n_img_changed += int(not torch.equal(out_img, image))
    assert 5 < n_cut < 35  # p = 0.5
    assert n_img_changed >= 35


def test_strong_without_cutout_keeps_mask_and_each_op_runs():
    image, mask = coord_pair()
    mask_copy = mask.clone()
    # every op forced on except Cutout
    aug = StrongAugment(jitter_p=1.0, grayscale_p=1.0, blur_p=1.0, cutout_p=0.0)
    torch.manual_seed(0)
    out_img, out_mask = aug(image, mask)
    assert torch.equal(out_mask, mask_copy) and torch.equal(mask, mask_copy)
    assert aug.last_cutout_box is None
    # grayscale keeps 3 equal channels
    assert out_img.shape == (3, H, W)
    assert torch.equal(out_img[0], out_img[1]) and torch.equal(out_img[1], out_img[2])
    # all ops off: identity
    ident = StrongAugment(jitter_p=0.0, grayscale_p=0.0, blur_p=0.0, cutout_p=0.0)
    out_img, out_mask = ident(image, mask)
    assert torch.equal(out_img, image) and torch.equal(out_mask, mask)


def test_blur_only_smooths_image():
    image, mask = coord_pair()
    aug = StrongAugment(jitter_p=0.0, grayscale_p=0.0, blur_p=1.0, blur_sigma=(1.5, 2.0), cutout_p=0.0)
    torch.manual_seed(0)
    out_img, out_mask = aug(image, mask)
    assert torch.equal(out_mask, mask)
    # the random class channel gets smoother (lower total variation)
    tv = lambda x: x.float().diff(dim=-1).abs().mean()  # noqa: E731
    assert tv(out_img[0]) < 0.7 * tv(image[0])


def test_gaussian_kernel_size():
    assert gaussian_kernel_size(0.1, 100, 100) == 3
    assert gaussian_kernel_size(1.0, 100, 100) == 7
    assert gaussian_kernel_size(2.0, 100, 100) == 13
    assert gaussian_kernel_size(2.0, 4, 100) == 7  # capped at 2 * min(H, W) - 1
    for s in (0.1, 0.77, 1.3, 2.0):
        assert gaussian_kernel_size(s, 50, 50) % 2 == 1
    # runs on a tiny image with a large sigma
    aug = StrongAugment(jitter_p=0.0, grayscale_p=0.0, blur_p=1.0, blur_sigma=(2.0, 2.0), cutout_p=0.0)
    img = tv_tensors.Image(torch.randint(0, 256, (3, 3, 3), dtype=torch.uint8))
    out, _ = aug(img, tv_tensors.Mask(torch.zeros(3, 3, dtype=torch.uint8)))
    assert out.shape == (3, 3, 3)


# ------------------------------------------------------------------------------------------
# reproducibility
# ------------------------------------------------------------------------------------------
def _pipeline(seed):
    image, mask = coord_pair()
    torch.manual_seed(seed)
    img, m = WeakAugment(crop_size=24, base_size=40)(image, mask)
    img, m = StrongAugment(jitter_p=1.0, cutout_p=1.0)(img, m)
    return to_training_pair(img, m)


def test_seeded_reproducibility():
    for seed in (0, 1, 7):
        a_img, a_mask = _pipeline(seed)
        b_img, b_mask = _pipeline(seed)
        assert torch.equal(a_img, b_img) and torch.equal(a_mask, b_mask)
    c_img, c_mask = _pipeline(0)
    d_img, d_mask = _pipeline(1)
    assert not (torch.equal(c_img, d_img) and torch.equal(c_mask, d_mask))


def test_no_python_or_numpy_rng_used():
    import random

    import numpy as np

    random.seed(0)
    np.random.seed(0)
    r_state, n_state = random.getstate(), np.random.get_state()
    _pipeline(3)
    assert random.getstate() == r_state
    n_after = np.random.get_state()
    assert (n_after[1] == n_state[1]).all() and n_after[2] == n_state[2]


# ------------------------------------------------------------------------------------------
# normalisation
# ------------------------------------------------------------------------------------------
def test_normalize_mean_colour_is_zero():
    mean = torch.tensor([round(m * 255) for m in IMAGENET_MEAN], dtype=torch.uint8)
    img = mean.view(3, 1, 1).expand(3, 8, 6).contiguous()
    out = normalize(img)
    assert out.dtype == torch.float32 and out.shape == (3, 8, 6)
    assert out.abs().max() < 0.01
    # batched input, and tv_tensors input gives a plain tensor
    out_b = normalize(tv_tensors.Image(img).unsqueeze(0).expand(2, 3, 8, 6))
    assert out_b.shape == (2, 3, 8, 6) and out_b.abs().max() < 0.01
    assert type(normalize(tv_tensors.Image(img))) is torch.Tensor


def test_normalize_extremes():
    white = torch.full((3, 2, 2), 255, dtype=torch.uint8)
    black = torch.zeros((3, 2, 2), dtype=torch.uint8)
    for c in range(3):
        assert torch.allclose(normalize(white)[c], torch.tensor((1 - IMAGENET_MEAN[c]) / IMAGENET_STD[c]))
        assert torch.allclose(normalize(black)[c], torch.tensor(-IMAGENET_MEAN[c] / IMAGENET_STD[c]))


def test_to_training_pair_types():
    image, mask = coord_pair()
    img, m = to_training_pair(image, mask)
    assert img.dtype == torch.float32 and img.shape == (3, H, W)
    assert m.dtype == torch.int64 and m.shape == (H, W)
    assert type(img) is torch.Tensor and type(m) is torch.Tensor
    assert torch.equal(m, mask.as_subclass(torch.Tensor).long())


@pytest.mark.parametrize("op", ["colour_jitter", "grayscale", "blur", "cutout"])
def test_each_strong_augmentation_alone(op):
    """train.strong_ops (the paper's Figure 2): with one op named, only that one changes the pair,
    even where the others' probabilities are 1."""
    image, mask = coord_pair()
    aug = StrongAugment(jitter_p=1.0, grayscale_p=1.0, blur_p=1.0, cutout_p=1.0, ops=[op])
    torch.manual_seed(0)
    out_img, out_mask = aug(image, mask)
    assert (aug.last_cutout_box is not None) == (op == "cutout")
    assert torch.equal(out_mask, mask) == (op != "cutout")
    gray = torch.equal(out_img[0], out_img[1]) and torch.equal(out_img[1], out_img[2])
    assert gray == (op == "grayscale")
    assert not torch.equal(out_img, image)


def test_strong_ops_are_checked():
    with pytest.raises(ValueError, match="subset of"):
        StrongAugment(ops=["mixup"])
    with pytest.raises(ValueError, match="subset of"):
        StrongAugment(ops=[])
