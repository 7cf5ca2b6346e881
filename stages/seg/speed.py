"""Speed switches of every stage that runs a model (config ``speed:``; ``cli.add_speed_args``).

None changes the method. Each was measured with ``benchmarks/performance.py`` (README,
"Performance"); on a CPU, a switch whose measurement showed a loss there is off by default:

- **channels_last** (NHWC weights and inputs): ``auto`` is on for CUDA (tensor-core kernels
  want it) and, on a CPU, for inference and for EfficientNet-Lite0 training, where it was
  faster; CPU training of a ResNet was slower with it, so ``auto`` leaves that off.
- **fold_batch_norm**: inference folds each batch norm into the convolution before it (one
  multiply-add less per activation; the same function up to float rounding).
- **cudnn_benchmark**: cuDNN times its convolution algorithms for each new input shape and
  keeps the fastest (CUDA only; input shapes repeat: fixed crops, one size per TTA scale).
- **amp**: autocast to bf16 / fp16: ``train.amp`` for training, ``speed.inference_amp`` for
  labeling, scoring and evaluation. fp16 is CUDA only; bf16 also runs on a CPU, and ``auto``
  (inference) is bf16 on a CPU with AMX-BF16 and float32 elsewhere: with AVX512-BF16 alone bf16
  was measured slower than float32 (0.80x labeling, 0.63x training), its masks 99.1 % the same.
- **compile**: ``torch.compile`` of the training model (optional, off by default: it compiles
  for minutes before the first step; inference is not compiled, as every image size and TTA
  scale is a new shape to compile for).
- pinned memory and non-blocking copies on CUDA, and DataLoader ``workers`` with
  ``prefetch_factor`` batches each, are the data side.
"""

from __future__ import annotations

import logging

import torch
from torch import nn
from torch.nn.utils.fusion import fuse_conv_bn_eval

log = logging.getLogger("stpp")

CHANNELS_LAST = ("auto", "on", "off")


def channels_last_wanted(setting: str, device: torch.device, backbone: str, training: bool) -> bool:
    """Whether ``speed.channels_last`` (auto, on, off) means NHWC for this job."""
    if setting not in CHANNELS_LAST:
        raise ValueError(f"channels_last must be one of {', '.join(CHANNELS_LAST)}, got {setting!r}")
    if setting != "auto":
        return setting == "on"
    if device.type == "cuda":
        return True
    return not (training and backbone.startswith("resnet"))


AMP = ("none", "bf16", "fp16", "auto")


def cpu_flags(cpuinfo: str = "/proc/cpuinfo") -> set[str]:
    """This CPU's feature flags (Linux's /proc/cpuinfo); empty where there is none."""
    try:
        with open(cpuinfo) as f:
            return set(next((line for line in f if line.startswith("flags")), "").split()[2:])
    except OSError:
        return set()


def native_bf16(cpuinfo: str = "/proc/cpuinfo") -> bool:
    """Whether this CPU has bf16 instructions (AVX512-BF16 or AMX-BF16). Elsewhere bf16 is
    emulated, slower than float32."""
    return bool(cpu_flags(cpuinfo) & {"avx512_bf16", "amx_bf16"})


def bf16_faster(cpuinfo: str = "/proc/cpuinfo") -> bool:
    """Whether bf16 is expected to beat float32 here: AMX-BF16 tiles. AVX512-BF16 alone was
    measured slower (docs/performance.md: TTA labeling 0.80x, training 0.63x of float32 on a Xeon
    whose flags show avx512_bf16 but not AMX); AMX itself was not measured in this project."""
    return "amx_bf16" in cpu_flags(cpuinfo)


def amp_dtype(amp: str, device: torch.device, cpuinfo: str = "/proc/cpuinfo") -> torch.dtype | None:
    """The autocast dtype of ``amp`` (none, bf16, fp16, auto) on ``device``; None: float32.

    CUDA: bf16 or fp16 as asked; ``auto`` is float32 there (no GPU was measured). A CPU: bf16
    where asked, and for ``auto`` where the CPU has AMX-BF16 (``bf16_faster``); fp16 is CUDA only
    (a warning, and float32), and bf16 on a CPU without bf16 instructions runs emulated (a
    warning: slower than float32)."""
    if amp not in AMP:
        raise ValueError(f"amp must be one of {', '.join(AMP)}, got {amp!r}")
    if amp == "none":
        return None
    if device.type == "cuda":
        return {"bf16": torch.bfloat16, "fp16": torch.float16}.get(amp)
    if amp == "auto":
        return torch.bfloat16 if device.type == "cpu" and bf16_faster(cpuinfo) else None
    if amp == "fp16" or device.type != "cpu":
        log.warning("amp %s needs CUDA; running in float32 on %s", amp, device)
        return None
    if not native_bf16(cpuinfo):
        log.warning("this CPU has no native bf16 (AVX512-BF16, AMX): bf16 runs emulated, slower than float32")
    return torch.bfloat16


def configure_backends(device: torch.device, cudnn_benchmark: bool) -> None:
    if device.type == "cuda":
        torch.backends.cudnn.benchmark = bool(cudnn_benchmark)


def fold_batch_norm(module: nn.Module, attributes: bool = True) -> nn.Module:
    """Fold every eval-mode ``BatchNorm2d`` that directly follows a ``Conv2d`` into it, in place.

    Pairs are found where the models of this project have them: consecutive members of an
    ``nn.Sequential`` (the EfficientNet blocks, the heads, ResNet's downsample) and the
    ``conv<i>`` / ``bn<i>`` attributes of a ResNet stem and blocks (``attributes``: not in a
    custom model, whose names mean what its author meant). The norm becomes an ``Identity``. For
    inference only: the folded model has no batch statistics to train."""
    if module.training:
        raise ValueError("fold_batch_norm is for a model in eval mode")
    for child in module.children():
        fold_batch_norm(child, attributes)
    if isinstance(module, nn.Sequential):
        members = list(module)
        for i in range(len(members) - 1):
            if isinstance(members[i], nn.Conv2d) and isinstance(members[i + 1], nn.BatchNorm2d):
                module[i] = fuse_conv_bn_eval(members[i], members[i + 1])
                module[i + 1] = nn.Identity()
    for i in range(1, 4) if attributes else ():
        conv, norm = getattr(module, f"conv{i}", None), getattr(module, f"bn{i}", None)
        if isinstance(conv, nn.Conv2d) and isinstance(norm, nn.BatchNorm2d):
            setattr(module, f"conv{i}", fuse_conv_bn_eval(conv, norm))
            setattr(module, f"bn{i}", nn.Identity())
    return module


def for_inference(model: nn.Module, device: torch.device, args) -> nn.Module:
    """A loaded eval-mode model with the inference switches of ``args`` (``cli.add_speed_args``)."""
    configure_backends(device, args.cudnn_benchmark)
    if args.fold_batch_norm:
        fold_batch_norm(model, attributes=getattr(model, "arch", "") != "custom")
    if channels_last_wanted(args.channels_last, device, "", training=False):
        model.use_channels_last()
    return model
