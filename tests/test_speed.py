"""Tests for stages.seg.speed: the switches change speed, never the predictions (beyond rounding).

CUDA-only switches (cudnn_benchmark, mixed precision) are checked to be no-ops on the CPU.
"""

from __future__ import annotations

import copy
import logging
import os
import subprocess
import sys

import pytest
import torch
import torch.nn.functional as F
from helpers import REPO
from torch import nn

from stages.seg import speed
from stages.seg.inference import predict, tta_probabilities
from stages.seg.models import build_model
from stages.seg.transforms import normalize

C = 5
CPU = torch.device("cpu")


def trained_statistics(model: nn.Module) -> nn.Module:
    """Batch norms with running statistics and affine parameters far from their initial values,
    so that folding them is not the identity."""
    g = torch.Generator().manual_seed(0)
    for m in model.modules():
        if isinstance(m, nn.BatchNorm2d):
            m.running_mean.copy_(torch.randn(m.num_features, generator=g) * 0.5)
            m.running_var.copy_(torch.rand(m.num_features, generator=g) + 0.5)
            m.weight.data.copy_(torch.rand(m.num_features, generator=g) + 0.5)
            m.bias.data.copy_(torch.randn(m.num_features, generator=g) * 0.1)
    return model.eval()


def images(n=2, h=37, w=45, seed=0):
    return torch.randint(0, 256, (n, 3, h, w), dtype=torch.uint8, generator=torch.Generator().manual_seed(seed))


@pytest.mark.parametrize(
    "arch,backbone", [("deeplabv3plus", "efficientnet_lite0"), ("deeplabv3plus", "resnet18"), ("pspnet", "resnet18")]
)
def test_folding_batch_norm_removes_every_norm_and_keeps_the_function(arch, backbone):
    torch.manual_seed(0)
    model = trained_statistics(build_model(arch, backbone, C, 16, head_channels=32))
    folded = speed.fold_batch_norm(copy.deepcopy(model))
    assert not [m for m in folded.modules() if isinstance(m, nn.BatchNorm2d)]
    x = normalize(images())
    with torch.inference_mode():
        expected, got = model(x), folded(x)
    assert torch.allclose(got, expected, atol=1e-4, rtol=1e-4)


def test_folding_refuses_a_training_model():
    with pytest.raises(ValueError, match="eval mode"):
        speed.fold_batch_norm(build_model("deeplabv3plus", "resnet18", C).train())


@pytest.mark.parametrize("backbone", ["efficientnet_lite0", "resnet18"])
def test_channels_last_keeps_predictions_and_trains(backbone):
    torch.manual_seed(0)
    model = trained_statistics(build_model("deeplabv3plus", backbone, C, 16, head_channels=32))
    nhwc = copy.deepcopy(model).use_channels_last()
    assert all(p.is_contiguous(memory_format=torch.channels_last) for p in nhwc.parameters() if p.dim() == 4)
    x = images()
    with torch.inference_mode():
        assert torch.allclose(nhwc(normalize(x)), model(normalize(x)), atol=1e-4, rtol=1e-4)
    assert (
        predict(nhwc, x, scales=[0.5, 1.0], flip=True) == predict(model, x, scales=[0.5, 1.0], flip=True)
    ).float().mean() > 0.999
    # One training step's gradients are the same in both formats. In float64: in float32, batch
    # norm in training mode over few pixels amplifies rounding to about 1% in either format.
    # Without dropout: its random mask follows the memory order, so the formats draw other masks.
    x, target = normalize(images(2, 64, 64, 1)).double(), torch.randint(0, C, (2, 64, 64))
    for m in (model, nhwc):
        m.double().train()
        for d in m.modules():
            if isinstance(d, (nn.Dropout, nn.Dropout2d)):
                d.p = 0.0
        F.cross_entropy(m(x), target).backward()
    for (name, a), b in zip(model.named_parameters(), nhwc.parameters(), strict=True):
        assert torch.allclose(a.grad, b.grad, rtol=1e-6, atol=1e-9), name


def test_channels_last_auto_is_on_where_it_was_measured_faster():
    cuda = torch.device("cuda")
    assert speed.channels_last_wanted("auto", cuda, "resnet18", training=True)
    assert speed.channels_last_wanted("auto", CPU, "efficientnet_lite0", training=True)
    assert not speed.channels_last_wanted("auto", CPU, "resnet18", training=True)
    assert speed.channels_last_wanted("auto", CPU, "resnet18", training=False)
    assert not speed.channels_last_wanted("off", cuda, "resnet18", training=False)
    assert speed.channels_last_wanted("on", CPU, "resnet50", training=True)
    with pytest.raises(ValueError, match="channels_last"):
        speed.channels_last_wanted("yes", CPU, "resnet18", training=True)


def test_mixed_precision_on_the_cpu_is_bf16_where_asked_and_auto_only_with_native_bf16(caplog, tmp_path):
    amx, native, avx2 = tmp_path / "amx", tmp_path / "native", tmp_path / "avx2"
    amx.write_text("processor\t: 0\nflags\t\t: fpu sse avx2 avx512f avx512_bf16 amx_bf16 amx_tile\n")
    native.write_text("processor\t: 0\nflags\t\t: fpu sse avx2 avx512f avx512_bf16\n")
    avx2.write_text("processor\t: 0\nflags\t\t: fpu sse avx2\n")
    assert speed.native_bf16(str(native)) and not speed.native_bf16(str(avx2))
    assert speed.bf16_faster(str(amx)) and not speed.bf16_faster(str(native))
    assert not speed.native_bf16(str(tmp_path / "missing"))  # no /proc/cpuinfo: not native
    assert speed.amp_dtype("auto", CPU, str(amx)) is torch.bfloat16
    assert speed.amp_dtype("auto", CPU, str(native)) is None  # AVX512-BF16 alone: measured slower
    assert speed.amp_dtype("auto", CPU, str(avx2)) is None
    assert speed.amp_dtype("auto", torch.device("cuda"), str(amx)) is None  # float32: no GPU measured
    assert speed.amp_dtype("bf16", torch.device("cuda")) is torch.bfloat16
    with caplog.at_level(logging.WARNING, logger="stpp"):
        assert speed.amp_dtype("bf16", CPU, str(native)) is torch.bfloat16
        assert not caplog.text
        assert speed.amp_dtype("bf16", CPU, str(avx2)) is torch.bfloat16
        assert "emulated" in caplog.text
        assert speed.amp_dtype("fp16", CPU, str(native)) is None
        assert "needs CUDA" in caplog.text
    assert speed.amp_dtype("none", CPU, str(native)) is None
    with pytest.raises(ValueError, match="amp must be one of"):
        speed.amp_dtype("bf32", CPU)


def test_cudnn_switch_is_a_no_op_on_the_cpu():
    before = torch.backends.cudnn.benchmark
    speed.configure_backends(CPU, True)
    assert torch.backends.cudnn.benchmark == before


def test_resize_logits_is_the_paper_tta_at_scale_one_and_close_elsewhere():
    torch.manual_seed(0)
    model = trained_statistics(build_model("deeplabv3plus", "resnet18", C, 16, head_channels=32))
    x = normalize(images(1, 48, 64))
    one = tta_probabilities(model, x, [1.0], flip=True)
    assert torch.allclose(tta_probabilities(model, x, [1.0], flip=True, resize_logits=True), one, atol=1e-5)
    paper = tta_probabilities(model, x, [0.5, 1.5], flip=True).argmax(1)
    fast = tta_probabilities(model, x, [0.5, 1.5], flip=True, resize_logits=True).argmax(1)
    assert fast.shape == paper.shape == (1, 48, 64)
    assert (fast == paper).float().mean() > 0.9


def test_torch_threads_never_exceed_the_cores_the_process_may_use():
    """A job asking for more threads than its CPU affinity allows (a SLURM allocation, taskset)
    gets one per core it may use."""
    code = (
        "import os, torch; os.sched_setaffinity(0, {min(os.sched_getaffinity(0))}); "
        "from stages.seg.cli import set_num_threads; set_num_threads(4); print(torch.get_num_threads())"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, cwd=REPO)
    assert out.stdout.strip() == "1"


def test_shared_cores_follow_what_other_processes_leave_free(tmp_path, monkeypatch):
    """speed.adapt_threads: over the cores this process may use, the CPU time other processes
    took since the last check (/proc/stat's busy ticks less this process's) sets the threads:
    one core taken leaves one thread of two, none taken gives both back; never more than asked."""
    ticks = {"busy": 0, "ours": 0}
    clock = {"now": 100.0}
    stat, self_stat = tmp_path / "stat", tmp_path / "self_stat"

    def write():
        per_cpu = ticks["busy"] // 2  # user nice system idle iowait irq softirq steal
        stat.write_text("cpu  0 0 0 0 0 0 0 0\n" + "".join(f"cpu{c} {per_cpu} 0 0 999 5 0 0 0\n" for c in (0, 1)))
        self_stat.write_text(f"1 (py) R {' '.join(['0'] * 10)} {ticks['ours']} 0 0\n")

    write()
    monkeypatch.setattr(speed.SharedCores, "STAT", str(stat))
    monkeypatch.setattr(speed.SharedCores, "SELF_STAT", str(self_stat))
    monkeypatch.setattr(speed.os, "sched_getaffinity", lambda pid: {0, 1})
    monkeypatch.setattr(speed.time, "monotonic", lambda: clock["now"])
    monkeypatch.setattr(speed.time, "sleep", lambda s: clock.__setitem__("now", clock["now"] + s))
    hz = os.sysconf("SC_CLK_TCK")
    previous = torch.get_num_threads()
    try:
        cores = speed.SharedCores(2, every=1.0, probe=0.5)  # idle start: both cores free
        assert cores.threads == 2
        assert cores.adapt() == 2  # within `every` of the last check: not measured again
        clock["now"] += 2
        ticks["busy"] += 2 * hz + 2 * hz  # 2 s: this process 1 core, another process 1 core
        ticks["ours"] += 2 * hz
        write()
        assert cores.adapt() == 1 and torch.get_num_threads() == 1
        clock["now"] += 2
        ticks["busy"] += 2 * hz  # the other process ended: only this one
        ticks["ours"] += 2 * hz
        write()
        assert cores.adapt() == 2 and torch.get_num_threads() == 2
        assert not speed.SharedCores(1).enabled and not speed.SharedCores(2, enabled=False).enabled
    finally:
        torch.set_num_threads(previous)
