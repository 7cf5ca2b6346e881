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
- **adapt_threads** (:class:`SharedCores`): on a CPU, a job's torch threads follow the cores
  that other processes leave it, checked every few seconds.
"""

from __future__ import annotations

import logging
import os
import time

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


class SharedCores:
    """Torch's intra-op threads matched to the cores that other processes leave this job.

    OpenMP threads wait for each other at the end of every parallel region, spinning first: a
    2-thread job whose second core another busy process takes waits at each region for a
    thread that is not running, and ran 3-5x slower beside one busy process on 2 cores
    (docs/performance.md, "Sharing the CPU"); with one thread it keeps its one core's speed.
    At the start (``probe`` seconds idle) and then every ``every`` seconds :meth:`adapt`
    measures, over the cores this process may use (its affinity), the CPU time that other
    processes took since the last check (/proc/stat's busy time of those cores less this
    process's own), and sets the threads to the cores left free, rounded, at most ``requested``
    and at least 1. Alone, nothing changes. A change is logged;
    the thread count changes the order of float sums, so set ``speed.adapt_threads: false`` for
    runs that must repeat bit for bit on a shared machine. Linux only (elsewhere: never adapts).
    """

    # where the CPU times are read (a test points them at files of its own)
    STAT, SELF_STAT = "/proc/stat", "/proc/self/stat"

    def __init__(self, requested: int, every: float = 1.0, enabled: bool = True, probe: float = 0.2):
        self.requested, self.every = max(1, requested), every
        self.cpus = sorted(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else []
        self.enabled = enabled and self.requested > 1 and os.path.exists(self.STAT) and bool(self.cpus)
        self.threads = self.requested
        self._last = self._sample() if self.enabled else None
        if self.enabled and probe:
            # a first look while this process is idle, so that the first batches do not run on
            # a core another process holds: ``probe`` seconds once per loop
            time.sleep(probe)
            self.adapt(now=True)

    def _sample(self) -> tuple[float, int, int]:
        """(time, busy ticks of our cores, this process's ticks)."""
        wanted, busy = {f"cpu{c}" for c in self.cpus}, 0
        with open(self.STAT) as f:
            for line in f:
                fields = line.split()
                if fields and fields[0] in wanted:  # user nice system idle iowait irq softirq steal
                    ticks = [int(v) for v in fields[1:9]]
                    busy += sum(ticks) - ticks[3] - ticks[4]
        with open(self.SELF_STAT) as f:
            ours = f.read().rsplit(")", 1)[1].split()
        return time.monotonic(), busy, int(ours[11]) + int(ours[12])  # utime, stime

    def others(self, now: bool = False) -> float | None:
        """Cores other processes kept busy since the last check; None before ``every`` passed
        (unless ``now``)."""
        if not self.enabled or (not now and time.monotonic() - self._last[0] < self.every):
            return None
        sample = self._sample()
        (t0, busy0, ours0), (t1, busy1, ours1) = self._last, sample
        self._last = sample
        hz = os.sysconf("SC_CLK_TCK")
        return max(0.0, ((busy1 - busy0) - (ours1 - ours0)) / hz / (t1 - t0))

    def adapt(self, now: bool = False) -> int:
        """Check (at most every ``every`` seconds, or ``now``) and set torch's threads; returns them."""
        others = self.others(now)
        if others is None:
            return self.threads
        threads = max(1, min(self.requested, int(len(self.cpus) - others + 0.5)))
        if threads != self.threads:
            log.info(
                "%.1f of the %d cores busy with other processes: %d torch threads instead of %d",
                others,
                len(self.cpus),
                threads,
                self.threads,
            )
            torch.set_num_threads(threads)
            self.threads = threads
        return threads


# Whether the stages' loops adapt their threads (:class:`SharedCores`): set from a stage's
# --adapt-threads (config speed.adapt_threads) by cli.run; off where the library is used from
# other code, which owns its threads.
adapt_threads = False


def shared_cores(device: torch.device | str) -> SharedCores:
    """The thread policy of one loop on ``device``: adapting on a CPU where the stage asks for it."""
    on_cpu = torch.device(device).type == "cpu"
    return SharedCores(torch.get_num_threads(), enabled=adapt_threads and on_cpu)
