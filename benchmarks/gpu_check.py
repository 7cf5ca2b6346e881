"""The first-GPU check: one command that uses a few minutes on a GPU well (issue 45).

    python benchmarks/gpu_check.py [--out benchmarks/gpu.json] [--skip demo ddp] [--quick]

In this order, each part timed and written as soon as it ends (a part that fails is reported and
the next one runs):

1. ``tests``: the test suite's ``cuda`` tests (mixed precision, the grad scaler, channels-last,
   pinned memory), ``pytest -m cuda``.
2. ``train``: training images/s and peak GPU memory of the paper's model (DeepLabV3+ ResNet-50,
   output stride 8, crop 321, batch 16, random init: no weights are downloaded) in fp32, bf16 and
   fp16 (with the grad scaler), each with and without channels-last; the trainer's own
   ``train_step``.
3. ``label``: TTA labeling (5 scales x flip) images/s and peak memory at label batch sizes 1, 4,
   8 and 16 on 500 x 375 images (Pascal's size), the labeling stage's own ``predict``.
4. ``ddp``: with two or more GPUs, a few iterations of 2-process DistributedDataParallel with
   SyncBatchNorm over NCCL, whose losses must match one process at the same global batch.
5. ``demo``: the demo workflow end to end with ``device: cuda`` (``snakemake --cores 8``), its
   summary beside the CPU demo's (``benchmarks/records/demo_cpu_summary.tsv``: the default demo,
   seed 0, 2 cores of an AMD EPYC Zen 4, 2026-12-07, commit b0b5f7b); GPU kernels are not
   bit-reproducible, so the two differ by a little.

Writes ``--out`` (JSON) and, beside it, a markdown table, and says what it could not run (no
CUDA: every part, cleanly, with exit status 0). At most about 8 minutes on one H100
(``--quick`` halves the timed iterations).
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import subprocess
import sys
import tempfile
import time
import traceback
from pathlib import Path

import torch
from common import REPO, code_version, machine

from stages.seg.inference import predict
from stages.seg.models import build_model, param_groups
from stages.train import mixed_precision, train_step

PARTS = ("tests", "train", "label", "ddp", "demo")
CPU_SUMMARY = REPO / "benchmarks" / "records" / "demo_cpu_summary.tsv"


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--out", default=str(REPO / "benchmarks" / "gpu.json"))
    p.add_argument("--skip", nargs="*", default=[], choices=PARTS)
    p.add_argument("--quick", action="store_true", help="half the timed iterations")
    return p.parse_args(argv)


def peak_mb() -> float:
    return torch.cuda.max_memory_allocated() / 2**20


def train_speed(amp: str, channels_last: bool, iterations: int) -> dict:
    """The paper's training step: images/s over ``iterations`` after 3 warm-up steps, peak MB."""
    device = torch.device("cuda")
    torch.manual_seed(0)
    model = build_model("deeplabv3plus", "resnet50", num_classes=21, output_stride=8).to(device).train()
    memory = torch.channels_last if channels_last else torch.contiguous_format
    model = model.to(memory_format=memory)
    optimizer = torch.optim.SGD(param_groups(model, 0.001, 10.0), lr=0.001, momentum=0.9, weight_decay=1e-4)
    dtype, scaler = mixed_precision(amp, device)
    images = torch.randn(16, 3, 321, 321, device=device).to(memory_format=memory)
    masks = torch.randint(0, 21, (16, 321, 321), device=device)
    torch.cuda.reset_peak_memory_stats()
    for _ in range(3):
        loss = train_step(model, optimizer, scaler, images, masks, device, dtype)
    torch.cuda.synchronize()
    start = time.perf_counter()
    for _ in range(iterations):
        loss = train_step(model, optimizer, scaler, images, masks, device, dtype)
    torch.cuda.synchronize()
    seconds = time.perf_counter() - start
    return {"images_per_s": 16 * iterations / seconds, "peak_mb": peak_mb(), "last_loss": loss}


def label_speed(batch_size: int, batches: int) -> dict:
    """TTA labeling of 500 x 375 images, ``batches`` batches after one warm-up batch."""
    device = torch.device("cuda")
    torch.manual_seed(0)
    model = build_model("deeplabv3plus", "resnet50", num_classes=21, output_stride=8).to(device).eval()
    model = model.to(memory_format=torch.channels_last)
    images = torch.randint(0, 256, (batch_size, 3, 375, 500), dtype=torch.uint8, device=device)
    scales = (0.5, 0.75, 1.0, 1.5, 2.0)
    torch.cuda.reset_peak_memory_stats()
    predict(model, images, scales, True)
    torch.cuda.synchronize()
    start = time.perf_counter()
    for _ in range(batches):
        predict(model, images, scales, True)
    torch.cuda.synchronize()
    return {"images_per_s": batch_size * batches / (time.perf_counter() - start), "peak_mb": peak_mb()}


DDP_SCRIPT = r"""
import os, sys, json, torch, torch.distributed as dist
from torch.nn.parallel import DistributedDataParallel
sys.path.insert(0, {repo!r})
from stages.seg.models import build_model
dist.init_process_group("nccl")
rank, world = dist.get_rank(), dist.get_world_size()
torch.cuda.set_device(rank)
torch.manual_seed(0)
model = build_model("deeplabv3plus", "resnet18", num_classes=5, output_stride=16).cuda()
if world > 1:
    model = DistributedDataParallel(torch.nn.SyncBatchNorm.convert_sync_batchnorm(model), device_ids=[rank])
opt = torch.optim.SGD(model.parameters(), lr=0.01)
g = torch.Generator().manual_seed(1)
losses = []
for it in range(4):
    x = torch.randn(8, 3, 64, 64, generator=g).cuda()
    y = torch.randint(0, 5, (8, 64, 64), generator=g).cuda()
    share = slice(rank * 8 // world, (rank + 1) * 8 // world)
    loss = torch.nn.functional.cross_entropy(model(x[share]), y[share])
    opt.zero_grad(); loss.backward(); opt.step()
    mean = loss.detach().clone()
    if world > 1:
        dist.all_reduce(mean); mean /= world
    losses.append(mean.item())
if rank == 0:
    json.dump(losses, open({out!r}, "w"))
dist.destroy_process_group()
"""


def ddp_check() -> dict:
    """4 SGD steps at a global batch of 8: 2 NCCL processes with SyncBatchNorm against 1 process."""
    if torch.cuda.device_count() < 2:
        return {"not_run": f"{torch.cuda.device_count()} GPU: DDP needs two"}
    out = {}
    with tempfile.TemporaryDirectory() as tmp:
        for n in (1, 2):
            script, result = Path(tmp) / f"ddp{n}.py", Path(tmp) / f"losses{n}.json"
            script.write_text(DDP_SCRIPT.format(repo=str(REPO), out=str(result)))
            cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc-per-node={n}", str(script)]
            subprocess.run(cmd, check=True, timeout=300)
            out[f"{n}_process_losses"] = json.loads(result.read_text())
    diffs = [abs(a - b) for a, b in zip(out["1_process_losses"], out["2_process_losses"], strict=True)]
    out["max_loss_difference"] = max(diffs)
    out["matches"] = max(diffs) < 1e-3
    return out


def demo_check() -> dict:
    """The demo workflow on CUDA, its summary beside the CPU demo's."""
    with tempfile.TemporaryDirectory() as tmp:
        start = time.perf_counter()
        cmd = [sys.executable, "-m", "snakemake", "--snakefile", str(REPO / "Snakefile"), "--directory", tmp]
        cmd += ["--cores", "8", "--configfile", str(REPO / "config" / "config.yaml"), "--config", "device=cuda"]
        subprocess.run(cmd, cwd=REPO, check=True, timeout=420, capture_output=True)
        seconds = time.perf_counter() - start
        with open(Path(tmp) / "results" / "demo" / "summary.tsv", newline="") as f:
            gpu = {row["method"]: float(row["miou"]) for row in csv.DictReader(f, delimiter="\t")}
    cpu = {}
    if CPU_SUMMARY.exists():
        with open(CPU_SUMMARY, newline="") as f:
            cpu = {row["method"]: float(row["miou"]) for row in csv.DictReader(f, delimiter="\t")}
    return {"seconds": seconds, "miou_cuda": gpu, "miou_cpu": cpu}


def run_part(name: str, args, result: dict) -> None:
    iterations = 5 if args.quick else 10
    if name == "tests":
        proc = subprocess.run(
            [sys.executable, "-m", "pytest", "-q", "-m", "cuda", "-p", "no:cacheprovider", "-n0"],
            cwd=REPO,
            capture_output=True,
            text=True,
            timeout=300,
        )
        result[name] = {"returncode": proc.returncode, "tail": proc.stdout[-1500:]}
    elif name == "train":
        result[name] = {
            f"{amp}{' channels_last' if cl else ''}": train_speed(amp, cl, iterations)
            for amp in ("none", "bf16", "fp16")
            for cl in (False, True)
        }
    elif name == "label":
        result[name] = {f"batch {b}": label_speed(b, max(2, iterations // 2)) for b in (1, 4, 8, 16)}
    elif name == "ddp":
        result[name] = ddp_check()
    elif name == "demo":
        result[name] = demo_check()


def markdown(result: dict) -> str:
    lines = [f"# GPU check, {result['date']}", "", f"{result['gpu']}; code {result['code']}", ""]
    for key, reason in result.get("not_run", {}).items():
        lines.append(f"- not run: {key}: {reason}")
    if "train" in result:
        lines += ["", "| training (DeepLabV3+ R50 OS8, 321, batch 16) | images/s | peak MB |", "|---|---|---|"]
        lines += [f"| {k} | {v['images_per_s']:.1f} | {v['peak_mb']:.0f} |" for k, v in result["train"].items()]
    if "label" in result:
        lines += ["", "| TTA labeling (500 x 375, 10 passes) | images/s | peak MB |", "|---|---|---|"]
        lines += [f"| {k} | {v['images_per_s']:.2f} | {v['peak_mb']:.0f} |" for k, v in result["label"].items()]
    for key in ("tests", "ddp", "demo"):
        if key in result:
            lines += ["", f"{key}: `{json.dumps(result[key])[:600]}`"]
    return "\n".join(lines) + "\n"


def main(argv=None) -> None:
    args = parse_args(argv)
    result = {"date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()), "machine": machine(), "code": code_version()}
    result["gpu"] = torch.cuda.get_device_name(0) if torch.cuda.is_available() else "no CUDA device"
    result["not_run"] = {name: "skipped (--skip)" for name in args.skip}
    out = Path(args.out)
    for name in PARTS:
        if name in args.skip:
            continue
        if not torch.cuda.is_available():
            result["not_run"][name] = "no CUDA device on this machine"
            continue
        start = time.perf_counter()
        try:
            run_part(name, args, result)
        except Exception as err:  # one part's failure is a finding; the next part still runs
            result["not_run"][name] = f"failed: {err!r}"
            result.setdefault("errors", {})[name] = traceback.format_exc()[-2000:]
        result.setdefault("seconds", {})[name] = time.perf_counter() - start
        out.write_text(json.dumps(result, indent=1))  # what has run so far survives a kill
        print(f"{name}: {result['seconds'][name]:.0f} s", flush=True)
    out.write_text(json.dumps(result, indent=1))
    out.with_suffix(".md").write_text(markdown(result))
    print(markdown(result))
    print(f"wrote {out} and {out.with_suffix('.md')}")


if __name__ == "__main__":
    os.environ.setdefault("PYTHONUNBUFFERED", "1")
    main()
