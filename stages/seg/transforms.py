"""Training-time augmentation and normalisation for ST / ST++ (docs/method.md, "Training details").

Weak augmentation (every training image, :class:`WeakAugment`), in this order:

1. random rescale: the long side becomes ``randint[lo * base, hi * base]`` (integers, both ends
   inclusive, like the reference code), aspect kept; image bilinear (antialiased), mask nearest;
2. pad right/bottom to at least ``crop_size`` (image 0, mask 255 = ignored);
3. random ``crop_size x crop_size`` crop;
4. horizontal flip with probability ``flip_p``.

Strong augmentation (pseudo-labeled images, after the weak one, :class:`StrongAugment`), in this
order: ColorJitter(0.5, 0.5, 0.5, 0.25) with p 0.8; RandomGrayscale p 0.2 (3 channels kept);
Gaussian blur with sigma ~ U(0.1, 2.0), p 0.5; Cutout with p 0.5 (:func:`cutout`). Any subset of
the four (``STRONG_OPS``) may be on, the paper's Figure 2. Image-only operations never touch the
mask; only Cutout writes 255 into the mask.

Finally :func:`to_training_pair` turns the uint8 pair into a float image normalised with the
ImageNet mean/std and an int64 mask.

Images are ``tv_tensors.Image`` uint8 ``(3, H, W)``, masks ``tv_tensors.Mask`` uint8 ``(H, W)``
(plain tensors are accepted and wrapped). All randomness comes from torch's global RNG (directly
or through ``torchvision.transforms.v2``), so ``torch.manual_seed`` and the DataLoader's
per-worker seeding make every sample reproducible; neither ``random`` nor numpy is used.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
from torchvision import tv_tensors
from torchvision.transforms import v2
from torchvision.transforms.v2 import functional as F

from ..workflow.layout import STRONG_OPS  # train.strong_ops' names, in the order they are applied
from .images import IGNORE_INDEX  # noqa: F401  (the ignore value, with the transforms that keep it)

__all__ = [
    "IGNORE_INDEX",
    "IMAGENET_MEAN",
    "IMAGENET_STD",
    "WeakAugment",
    "StrongAugment",
    "STRONG_OPS",
    "random_rescale",
    "gaussian_kernel_size",
    "cutout",
    "normalize",
    "to_training_pair",
]

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)

# Attempts of the reference rejection loop in :func:`cutout` before falling back to clamping.
_CUTOUT_MAX_TRIES = 100


# --------------------------------------------------------------------------------------------
# helpers
# --------------------------------------------------------------------------------------------
def _as_image(image: torch.Tensor) -> tv_tensors.Image:
    if isinstance(image, tv_tensors.Image):
        return image
    return tv_tensors.Image(image)


def _as_mask(mask: torch.Tensor) -> tv_tensors.Mask:
    if isinstance(mask, tv_tensors.Mask):
        return mask
    return tv_tensors.Mask(mask)


def _check_pair(image: torch.Tensor, mask: torch.Tensor) -> None:
    if image.ndim != 3:
        raise ValueError(f"image must be (C, H, W), got shape {tuple(image.shape)}")
    if mask.ndim != 2:
        raise ValueError(f"mask must be (H, W), got shape {tuple(mask.shape)}")
    if tuple(image.shape[-2:]) != tuple(mask.shape):
        raise ValueError(f"image {tuple(image.shape)} and mask {tuple(mask.shape)} differ in size")


def _uniform(lo: float, hi: float) -> float:
    """One float ~ U(lo, hi) from torch's global RNG."""
    return lo + (hi - lo) * torch.rand(()).item()


def _randint(lo: int, hi_inclusive: int) -> int:
    """One integer ~ U{lo, ..., hi_inclusive} from torch's global RNG."""
    return int(torch.randint(lo, hi_inclusive + 1, ()).item())


def _bernoulli(p: float) -> bool:
    """True with probability p; draws one number from torch's global RNG (always, for p in
    [0, 1], so the RNG stream does not depend on p)."""
    return bool(torch.rand(()).item() < p)


# --------------------------------------------------------------------------------------------
# weak augmentation
# --------------------------------------------------------------------------------------------
def random_rescale(
    image: torch.Tensor,
    mask: torch.Tensor,
    base_size: int | None = None,
    scale_range: Sequence[float] = (0.5, 2.0),
) -> tuple[tv_tensors.Image, tv_tensors.Mask]:
    """Rescale so that the long side becomes ``randint[int(lo * base), int(hi * base)]``.

    ``base`` is ``base_size`` or, when None, the image's own long side. The short side is
    ``int(short * long_new / long + 0.5)`` (at least 1), as in the reference code. The image is
    resized bilinearly with antialiasing, the mask with nearest-exact (pixel-centre nearest,
    the same sampling grid as the bilinear image resize and as PIL's NEAREST).
    """
    image, mask = _as_image(image), _as_mask(mask)
    h, w = image.shape[-2:]
    base = max(h, w) if base_size is None else int(base_size)
    lo, hi = float(scale_range[0]), float(scale_range[1])
    lo_side = max(1, int(base * lo))
    hi_side = max(lo_side, int(base * hi))
    long_side = _randint(lo_side, hi_side)
    if h > w:
        oh, ow = long_side, max(1, int(1.0 * w * long_side / h + 0.5))
    else:
        oh, ow = max(1, int(1.0 * h * long_side / w + 0.5)), long_side
    if (oh, ow) == (h, w):
        return image, mask
    image = F.resize(image, [oh, ow], interpolation=v2.InterpolationMode.BILINEAR, antialias=True)
    mask = F.resize(mask, [oh, ow], interpolation=v2.InterpolationMode.NEAREST_EXACT)
    return image, mask


class WeakAugment:
    """Random rescale -> pad right/bottom to ``crop_size`` -> random square crop -> hflip.

    ``__call__(image uint8 (3, H, W), mask uint8 (H, W)) -> (image uint8 (3, crop, crop),
    mask uint8 (crop, crop))``. Padding fills the image with 0 and the mask with 255.
    """

    def __init__(
        self,
        crop_size: int,
        base_size: int | None = None,
        scale_range: Sequence[float] = (0.5, 2.0),
        flip_p: float = 0.5,
    ) -> None:
        if crop_size < 1:
            raise ValueError(f"crop_size must be positive, got {crop_size}")
        if scale_range[0] <= 0 or scale_range[1] < scale_range[0]:
            raise ValueError(f"bad scale_range {scale_range}")
        self.crop_size = int(crop_size)
        self.base_size = None if base_size is None else int(base_size)
        self.scale_range = (float(scale_range[0]), float(scale_range[1]))
        self.flip_p = float(flip_p)

    def __repr__(self) -> str:
        return (
            f"{type(self).__name__}(crop_size={self.crop_size}, base_size={self.base_size}, "
            f"scale_range={self.scale_range}, flip_p={self.flip_p})"
        )

    def __call__(self, image: torch.Tensor, mask: torch.Tensor) -> tuple[tv_tensors.Image, tv_tensors.Mask]:
        image, mask = _as_image(image), _as_mask(mask)
        _check_pair(image, mask)
        c = self.crop_size

        # 1. random rescale (long side), aspect kept
        image, mask = random_rescale(image, mask, self.base_size, self.scale_range)

        # 2. pad right/bottom to at least crop_size
        h, w = image.shape[-2:]
        pad_h, pad_w = max(c - h, 0), max(c - w, 0)
        if pad_h or pad_w:
            padding = [0, 0, pad_w, pad_h]  # left, top, right, bottom
            image = F.pad(image, padding, fill=0)
            mask = F.pad(mask, padding, fill=IGNORE_INDEX)
            h, w = image.shape[-2:]

        # 3. random crop_size x crop_size crop
        top = _randint(0, h - c)
        left = _randint(0, w - c)
        image = F.crop(image, top, left, c, c)
        mask = F.crop(mask, top, left, c, c)

        # 4. horizontal flip
        if _bernoulli(self.flip_p):
            image = F.horizontal_flip(image)
            mask = F.horizontal_flip(mask)
        return image, mask


# --------------------------------------------------------------------------------------------
# strong augmentation
# --------------------------------------------------------------------------------------------
def gaussian_kernel_size(sigma: float, height: int, width: int) -> int:
    """Odd kernel size ``2 * ceil(3 * sigma) + 1`` (+-3 sigma, which is also about the support
    of PIL's ``ImageFilter.GaussianBlur(radius=sigma)``, three box blurs of std ``sigma``
    together), capped at ``2 * min(H, W) - 1`` so the reflect padding stays valid on tiny
    images."""
    k = 2 * math.ceil(3.0 * float(sigma)) + 1
    cap = 2 * min(int(height), int(width)) - 1
    return max(1, min(k, cap))


def cutout(
    image: torch.Tensor,
    mask: torch.Tensor,
    area: Sequence[float] = (0.02, 0.4),
    aspect: Sequence[float] = (0.3, 1 / 0.3),
) -> tuple[torch.Tensor, torch.Tensor, tuple[int, int, int, int]]:
    """Unconditional Cutout; returns ``(image, mask, (top, left, height, width))``.

    As in the reference code: ``size = U(area) * H * W``, ``ratio = U(aspect)``, box width
    ``int(sqrt(size / ratio))`` and height ``int(sqrt(size * ratio))`` (so height / width is
    ``ratio``), top-left corner uniform over the whole image, and the draw is rejected and
    repeated until the box lies fully inside the image. After ``_CUTOUT_MAX_TRIES`` rejections
    (only possible on degenerate shapes) the last box is clamped to the image size and its
    corner redrawn uniformly among the positions where it fits. Height and width are at least 1.

    The box is filled with uniform random integers 0-255 drawn independently per pixel and
    channel; the mask inside the box is set to 255. Inputs are not modified in place; the
    outputs keep the inputs' (tv_tensor) types.
    """
    if image.ndim != 3:
        raise ValueError(f"image must be (C, H, W), got shape {tuple(image.shape)}")
    img_c, img_h, img_w = image.shape
    if tuple(mask.shape) != (img_h, img_w):
        raise ValueError(f"mask {tuple(mask.shape)} does not match image {tuple(image.shape)}")
    a_lo, a_hi = float(area[0]), float(area[1])
    r_lo, r_hi = float(aspect[0]), float(aspect[1])

    for _ in range(_CUTOUT_MAX_TRIES):
        size = _uniform(a_lo, a_hi) * img_h * img_w
        ratio = _uniform(r_lo, r_hi)
        erase_w = max(1, int(math.sqrt(size / ratio)))
        erase_h = max(1, int(math.sqrt(size * ratio)))
        left = _randint(0, img_w - 1)
        top = _randint(0, img_h - 1)
        if left + erase_w <= img_w and top + erase_h <= img_h:
            break
    else:
        erase_h, erase_w = min(erase_h, img_h), min(erase_w, img_w)
        top = _randint(0, img_h - erase_h)
        left = _randint(0, img_w - erase_w)

    noise = torch.randint(0, 256, (img_c, erase_h, erase_w), dtype=torch.uint8)
    out_image = image.clone()
    out_mask = mask.clone()
    out_image[:, top : top + erase_h, left : left + erase_w] = noise.to(image.dtype)
    out_mask[top : top + erase_h, left : left + erase_w] = IGNORE_INDEX
    if isinstance(image, tv_tensors.TVTensor):
        out_image = tv_tensors.wrap(out_image, like=image)
    if isinstance(mask, tv_tensors.TVTensor):
        out_mask = tv_tensors.wrap(out_mask, like=mask)
    return out_image, out_mask, (top, left, erase_h, erase_w)


class StrongAugment:
    """ColorJitter (p ``jitter_p``) -> RandomGrayscale (p ``grayscale_p``) -> Gaussian blur
    (sigma ~ U(``blur_sigma``), p ``blur_p``, kernel :func:`gaussian_kernel_size`) -> Cutout
    (p ``cutout_p``, :func:`cutout`); of these only the ``ops`` named (a subset of ``STRONG_OPS``)
    are applied, the others skipped without a random draw.

    ``__call__(image uint8 (3, H, W), mask uint8 (H, W)) -> (image, mask)``; the colour and blur
    operations touch only the image, Cutout sets the mask to 255 inside its box. The box of the
    last call is kept in ``self.last_cutout_box`` (None when Cutout was not applied).
    """

    def __init__(
        self,
        jitter: Sequence[float] = (0.5, 0.5, 0.5, 0.25),
        jitter_p: float = 0.8,
        grayscale_p: float = 0.2,
        blur_p: float = 0.5,
        blur_sigma: Sequence[float] = (0.1, 2.0),
        cutout_p: float = 0.5,
        cutout_area: Sequence[float] = (0.02, 0.4),
        cutout_aspect: Sequence[float] = (0.3, 1 / 0.3),
        ops: Sequence[str] = STRONG_OPS,
    ) -> None:
        unknown = set(ops) - set(STRONG_OPS)
        if unknown or not ops:
            raise ValueError(f"strong augmentations are a non-empty subset of {STRONG_OPS}, got {list(ops)}")
        self.ops = tuple(op for op in STRONG_OPS if op in ops)
        brightness, contrast, saturation, hue = (float(x) for x in jitter)
        self.jitter = v2.RandomApply(
            [v2.ColorJitter(brightness=brightness, contrast=contrast, saturation=saturation, hue=hue)],
            p=float(jitter_p),
        )
        self.grayscale = v2.RandomGrayscale(p=float(grayscale_p))
        self.blur_p = float(blur_p)
        self.blur_sigma = (float(blur_sigma[0]), float(blur_sigma[1]))
        self.cutout_p = float(cutout_p)
        self.cutout_area = (float(cutout_area[0]), float(cutout_area[1]))
        self.cutout_aspect = (float(cutout_aspect[0]), float(cutout_aspect[1]))
        self.last_cutout_box: tuple[int, int, int, int] | None = None

    def __repr__(self) -> str:
        return (
            f"{type(self).__name__}(ops={self.ops}, jitter={self.jitter}, grayscale={self.grayscale}, "
            f"blur_p={self.blur_p}, blur_sigma={self.blur_sigma}, cutout_p={self.cutout_p}, "
            f"cutout_area={self.cutout_area}, cutout_aspect={self.cutout_aspect})"
        )

    def blur(self, image: torch.Tensor) -> torch.Tensor:
        """Gaussian blur with sigma ~ U(blur_sigma) (unconditional)."""
        sigma = _uniform(*self.blur_sigma)
        k = gaussian_kernel_size(sigma, image.shape[-2], image.shape[-1])
        return F.gaussian_blur(image, [k, k], [sigma, sigma])

    def __call__(self, image: torch.Tensor, mask: torch.Tensor) -> tuple[tv_tensors.Image, tv_tensors.Mask]:
        image, mask = _as_image(image), _as_mask(mask)
        _check_pair(image, mask)
        self.last_cutout_box = None

        if "colour_jitter" in self.ops:
            image = self.jitter(image)
        if "grayscale" in self.ops:
            image = self.grayscale(image)
        if "blur" in self.ops and _bernoulli(self.blur_p):
            image = self.blur(image)
        if "cutout" in self.ops and _bernoulli(self.cutout_p):
            image, mask, box = cutout(image, mask, self.cutout_area, self.cutout_aspect)
            self.last_cutout_box = box
        return image, mask


# --------------------------------------------------------------------------------------------
# normalisation
# --------------------------------------------------------------------------------------------
def normalize(image: torch.Tensor) -> torch.Tensor:
    """uint8 ``(3, H, W)`` or ``(N, 3, H, W)`` -> float32 in [0, 1] normalised with the
    ImageNet mean/std (a plain ``torch.Tensor``)."""
    if image.ndim not in (3, 4) or image.shape[-3] != 3:
        raise ValueError(f"expected (3, H, W) or (N, 3, H, W), got {tuple(image.shape)}")
    x = image.as_subclass(torch.Tensor)
    if x.dtype == torch.uint8:
        x = x.to(torch.float32) / 255.0
    else:
        x = x.to(torch.float32)
    mean = torch.tensor(IMAGENET_MEAN, dtype=torch.float32, device=x.device).view(3, 1, 1)
    std = torch.tensor(IMAGENET_STD, dtype=torch.float32, device=x.device).view(3, 1, 1)
    return (x - mean) / std


def to_training_pair(image: torch.Tensor, mask: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Last step of every training sample: ``(normalize(image) float32 (3, H, W),
    mask int64 (H, W))`` as plain tensors."""
    return normalize(image), mask.as_subclass(torch.Tensor).long()
