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
  (inference) is bf16 on a CPU with native bf16 (AVX512-BF16 or AMX) and float32 elsewhere.
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


def native_bf16(cpuinfo: str = "/proc/cpuinfo") -> bool:
    """Whether this CPU computes in bf16 natively (AVX512-BF16 or AMX-BF16, Linux's flags).
    Elsewhere bf16 is emulated, slower than float32."""
    try:
        with open(cpuinfo) as f:
            flags = next((line for line in f if line.startswith("flags")), "").split()
    except OSError:
        return False
    return "avx512_bf16" in flags or "amx_bf16" in flags


def amp_dtype(amp: str, device: torch.device, cpuinfo: str = "/proc/cpuinfo") -> torch.dtype | None:
    """The autocast dtype of ``amp`` (none, bf16, fp16, auto) on ``device``; None: float32.

    CUDA: bf16 or fp16 as asked; ``auto`` is float32 there (no GPU was measured). A CPU: bf16
    where asked, and for ``auto`` where the CPU has native bf16 (measured: docs/performance.md);
    fp16 is CUDA only (a warning, and float32), and bf16 on a CPU without native bf16 runs
    emulated (a warning: slower than float32)."""
    if amp not in AMP:
        raise ValueError(f"amp must be one of {', '.join(AMP)}, got {amp!r}")
    if amp == "none":
        return None
    if device.type == "cuda":
        return {"bf16": torch.bfloat16, "fp16": torch.float16}.get(amp)
    native = device.type == "cpu" and native_bf16(cpuinfo)
    if amp == "auto":
        return torch.bfloat16 if native else None
    if amp == "fp16" or device.type != "cpu":
        log.warning("amp %s needs CUDA; running in float32 on %s", amp, device)
        return None
    if not native:
        log.warning("this CPU has no native bf16 (AVX512-BF16, AMX): bf16 runs emulated, slower than float32")
    return torch.bfloat16


def configure_backends(device: torch.device, cudnn_benchmark: bool) -> None:
    if device.type == "cuda":
        torch.backends.cudnn.benchmark = bool(cudnn_benchmark)


def fold_batch_norm(module: nn.Module) -> nn.Module:
    """Fold every eval-mode ``BatchNorm2d`` that directly follows a ``Conv2d`` into it, in place.

    Pairs are found where the models of this project have them: consecutive members of an
    ``nn.Sequential`` (the EfficientNet blocks, the heads, ResNet's downsample) and the
    ``conv<i>`` / ``bn<i>`` attributes of a ResNet stem and blocks. The norm becomes an
    ``Identity``. For inference only: the folded model has no batch statistics to train."""
    if module.training:
        raise ValueError("fold_batch_norm is for a model in eval mode")
    for child in module.children():
        fold_batch_norm(child)
    if isinstance(module, nn.Sequential):
        members = list(module)
        for i in range(len(members) - 1):
            if isinstance(members[i], nn.Conv2d) and isinstance(members[i + 1], nn.BatchNorm2d):
                module[i] = fuse_conv_bn_eval(members[i], members[i + 1])
                module[i + 1] = nn.Identity()
    for i in range(1, 4):
        conv, norm = getattr(module, f"conv{i}", None), getattr(module, f"bn{i}", None)
        if isinstance(conv, nn.Conv2d) and isinstance(norm, nn.BatchNorm2d):
            setattr(module, f"conv{i}", fuse_conv_bn_eval(conv, norm))
            setattr(module, f"bn{i}", nn.Identity())
    return module


def for_inference(model: nn.Module, device: torch.device, args) -> nn.Module:
    """A loaded eval-mode model with the inference switches of ``args`` (``cli.add_speed_args``)."""
    configure_backends(device, args.cudnn_benchmark)
    if args.fold_batch_norm:
        fold_batch_norm(model)
    if channels_last_wanted(args.channels_last, device, "", training=False):
        model.use_channels_last()
    return model
