"""Performance: every stage against a plain PyTorch baseline, the speed switches, the backbones,
labeling memory, and Snakemake at Pascal VOC's scale. Prints the figures; writes them as JSON.

    python benchmarks/performance.py [--parts ratios bf16 switches backbones memory dag] \\
        [--data-root ../shared/data/camvid] [--out benchmarks/performance.json]

Every measurement runs a stage as the workflow runs it (``python -m stages.<name>``, a process of
its own), its command taken from the workflow's own plan of ``config/camvid.yaml`` (DeepLabV3+
on the ImageNet EfficientNet-Lite0, output stride 16, head 128, crops 160, batch 8) with this
script's data, lists and budget; each baseline is a plain script written for the comparison, run
the same way (``benchmarks/baselines.py``: ``plain-train``, ``naive-label``, ``naive-evaluate``).
Wall times include starting Python and loading the model, for stage and baseline alike; peak
memory is the process tree's peak resident set.

- ``ratios``: training images/s of ``stages.train`` (its ``train_log.tsv``, epochs after the
  first) against a plain loop (PIL decoding, the same augmentation, model, optimizer, batch and
  workers) and the share of the epoch spent waiting for data; TTA labeling (10 passes) against
  a naive loop labeling one image at a time and writing PNGs; the stability score's own cost
  against the K predictions it needs (``stages.score``'s log); evaluation against the same
  naive loop without TTA.
- ``bf16``: bf16 autocast on this CPU against float32 for TTA labeling (and against the naive
  loop) and training; with ``--bf16-model`` and ``--bf16-list``, the pixel agreement of a trained
  model's bf16 and float32 pseudo-masks and the mIoU of both.
- ``switches``: each speed switch of ``config speed:`` (and the label batch size, workers,
  TTA's ``resize_logits``) on and off, on this CPU.
- ``backbones``: EfficientNet-Lite0 and ResNet-18 side by side (train and TTA images/s, peak memory).
- ``memory``: labeling's peak memory for N and 4N images (it should not grow with N).
- ``predict``: ``stages.predict`` (rule predict's command) against a naive one-image loop, and
  its peak memory for N and 4N images.
- ``dag``: ``snakemake -n`` and a no-op re-run on lists of Pascal VOC's size (10,582 images,
  1,464 of them labeled; tiny generated images), timed after a real run of the whole workflow on
  them (minutes; a tiny model).

Speed is measured here, never in tests. No GPU was used for any figure this prints.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shlex
import shutil
import subprocess
import sys
import tempfile
import time
from datetime import date
from pathlib import Path

import numpy as np
import yaml
from common import REPO as ROOT
from common import machine, workflow_plan

from stages.workflow import cli_args

CAMVID_CONFIG = ROOT / "config" / "camvid.yaml"


def camvid(
    a, backbone: str = "efficientnet_lite0", workers: int = 1, num_classes: int | None = None, predict_images=None
):
    """(the workflow's plan, the experiment's name) of config/camvid.yaml on ``a``'s data, lists
    and budget: every stage command below is that plan's, as the workflow would run it."""
    config = yaml.safe_load(CAMVID_CONFIG.read_text())
    ((name, e),) = config["experiments"].items()
    e["data"].update(root=a.data_root, labeled=a.labeled, unlabeled=a.unlabeled, val=a.val)
    if num_classes is not None:  # another data set's model (bf16 agreement, tests)
        e["data"].update(num_classes=num_classes, class_names=None, ignore_labels=[])
        e["data"] = {k: v for k, v in e["data"].items() if v is not None}
    e["model"].update(backbone=backbone, pretrained="imagenet" if backbone == "efficientnet_lite0" else None)
    e["train"].update(epochs=a.train_epochs, min_labeled=a.train_images, workers=workers)
    e["stpp"]["checkpoints"] = max(2, min(e["stpp"]["checkpoints"], a.train_epochs))
    e["label"]["batch_size"] = a.label_batch
    e["predict"] = {"images": predict_images}
    config["device"] = "cpu"
    return workflow_plan(config), name


# ---------------------------------------------------------------------------------------------
# running and measuring
# ---------------------------------------------------------------------------------------------
def measured(
    cmd: list[str], log: Path | None = None, cwd: Path | None = None, env: dict | None = None
) -> tuple[float, float]:
    """Run ``cmd``; (wall seconds, peak resident MB of it and its children). Output to ``log``.
    ``env``: variables to set (a value of None removes one) on top of this process's."""
    out = open(log, "w") if log else subprocess.DEVNULL
    t0 = time.perf_counter()
    environment = {**os.environ, "PYTHONPATH": str(ROOT)}
    for key, value in (env or {}).items():
        environment.pop(key, None) if value is None else environment.__setitem__(key, value)
    proc = subprocess.Popen(cmd, stdout=out, stderr=subprocess.STDOUT, cwd=cwd, env=environment)
    _, status, usage = os.wait4(proc.pid, 0)
    seconds = time.perf_counter() - t0
    proc.returncode = os.waitstatus_to_exitcode(status)
    if log:
        out.close()
    if proc.returncode:
        tail = log.read_text()[-2000:] if log else ""
        raise RuntimeError(f"{' '.join(map(str, cmd))} failed ({proc.returncode}):\n{tail}")
    return seconds, usage.ru_maxrss / 1024


def stage(name: str, *args) -> list[str]:
    return [sys.executable, "-m", f"stages.{name}", *map(str, args)]


def baseline(*args) -> list[str]:
    return [sys.executable, str(ROOT / "benchmarks" / "baselines.py"), *map(str, args)]


def first_lines(src: Path, n: int, out: Path) -> Path:
    out.write_text("".join(src.read_text().splitlines(keepends=True)[:n]))
    return out


def model_file(a, work: Path, backbone: str) -> Path:
    """A model.pt as training writes it (ImageNet trunk for Lite0; speed does not depend on weights)."""
    from stages.seg.io import save_model
    from stages.seg.models import build_model

    path = work / f"{backbone}.pt"
    if not path.exists():
        plan, name = camvid(a, backbone)
        settings = plan.step("train_teacher", name).settings
        spec = {key: settings[key] for key in ("arch", "backbone", "num_classes", "output_stride", "head_channels")}
        save_model(path, build_model(pretrained=settings["pretrained"], **spec), spec)
    return path


# ---------------------------------------------------------------------------------------------
# training
# ---------------------------------------------------------------------------------------------
def train_command(a, backbone: str, workers: int) -> list:
    """stages.train as rule train_teacher runs it on the CamVid settings (its step and runtime)."""
    plan, name = camvid(a, backbone, workers)
    step = plan.step("train_teacher", name)
    runtime = plan.train_runtime_args(name, a.threads)
    return stage("train", "--labeled", step.inputs["labeled"], *shlex.split(step.args), *shlex.split(runtime))


# The settings of the training step that the plain loop takes too.
PLAIN_TRAIN = ("data_root", "num_classes", "ignore_labels", "arch", "backbone", "output_stride", "head_channels")
PLAIN_TRAIN += ("pretrained", "crop_size", "batch_size", "lr", "epochs", "min_labeled")


def plain_train_command(a, backbone: str, workers: int, out: Path) -> list:
    """The plain loop (baselines.py plain-train) on the same settings as train_command."""
    plan, name = camvid(a, backbone, workers)
    step = plan.step("train_teacher", name)
    settings = {key: step.settings[key] for key in PLAIN_TRAIN}
    args = cli_args(**settings, labeled=step.inputs["labeled"], workers=workers, threads=a.threads, out=out)
    return baseline("plain-train", *shlex.split(args))


def train_pipeline(a, work: Path, name: str, backbone="efficientnet_lite0", workers=1, *switches) -> dict:
    out = work / name
    _, peak = measured([*train_command(a, backbone, workers), "--out-dir", out, *switches], work / f"{name}.log")
    rows = [line.split("\t") for line in (out / "train_log.tsv").read_text().splitlines()]
    cols = {c: i for i, c in enumerate(rows[0])}
    later = rows[2:]  # epoch 1 warms up (allocator, caches)
    return {
        "images_per_s": float(np.mean([float(r[cols["images_per_s"]]) for r in later])),
        "data_wait_share": float(np.mean([float(r[cols["data_wait_share"]]) for r in later])),
        "peak_mb": peak,
    }


def train_plain(a, work: Path, name: str, backbone="efficientnet_lite0", workers=1) -> dict:
    out = work / f"{name}.json"
    _, peak = measured(plain_train_command(a, backbone, workers, out), work / f"{name}.log")
    result = json.loads(out.read_text())
    return {"images_per_s": float(np.mean(result["images_per_s"][1:])), "peak_mb": peak}


# ---------------------------------------------------------------------------------------------
# labeling, scoring, evaluation
# ---------------------------------------------------------------------------------------------
def label_command(a, model: Path, images: Path, out: Path, threads: int, *options, root=None, num_classes=None):
    """stages.label as rule label_shard runs it on the CamVid settings (the teacher's TTA)."""
    plan, name = camvid(a, num_classes=num_classes)
    step = plan.step("label_shard", name, model="teacher", subset="unlabeled")
    runtime = plan.inference_runtime_args(name, threads)
    return stage(
        "label",
        "--model",
        model,
        "--list",
        images,
        *shlex.split(step.args),
        *shlex.split(runtime),
        "--out",
        out,
        *(["--data-root", root] if root else []),
        *options,
    )


def label_pipeline(a, work: Path, name: str, model: Path, images: Path, *options) -> dict:
    n = len(images.read_text().splitlines())
    seconds, peak = measured(
        label_command(a, model, images, work / f"{name}.h5", a.threads, *options), work / f"{name}.log"
    )
    return {"images_per_s": n / seconds, "seconds": seconds, "peak_mb": peak, "images": n}


def label_sharded(a, work: Path, name: str, model: Path, images: Path, shards: int) -> dict:
    """``label.shards`` jobs at once, one thread each (the workflow on a machine of ``shards`` cores)."""
    n = len(images.read_text().splitlines())
    t0 = time.perf_counter()
    procs = [
        subprocess.Popen(
            label_command(a, model, images, work / f"{name}_{i}.h5", 1, "--shard", i, "--num-shards", shards),
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            env={**os.environ, "PYTHONPATH": str(ROOT)},
        )
        for i in range(shards)
    ]
    if any(proc.wait() for proc in procs):
        raise RuntimeError(f"a labeling shard of {name} failed")
    seconds = time.perf_counter() - t0
    return {"images_per_s": n / seconds, "seconds": seconds, "images": n}


def label_naive(a, work: Path, name: str, model: Path, images: Path) -> dict:
    n = len(images.read_text().splitlines())
    seconds, peak = measured(
        baseline("naive-label", model, images, a.data_root, work / name, a.threads), work / f"{name}.log"
    )
    return {"images_per_s": n / seconds, "seconds": seconds, "peak_mb": peak, "images": n}


def score_overhead(a, work: Path, model: Path, images: Path, num_classes: int | None = None) -> dict:
    """stages.score as rule score_shard runs it, with one model as its 3 checkpoints."""
    plan, name = camvid(a, num_classes=num_classes)
    step = plan.step("score_shard", name)
    log = work / "score.log"
    seconds, peak = measured(
        stage(
            "score",
            "--checkpoints",
            model,
            model,
            model,
            "--list",
            images,
            *shlex.split(step.args),
            *shlex.split(plan.inference_runtime_args(name, a.threads)),
            "--scores",
            work / "scores.tsv",
            "--masks",
            work / "score_masks.h5",
        ),
        log,
    )
    m = re.search(r"predictions took ([\d.]+) s; the scores and the mask store ([\d.]+) s", log.read_text())
    predicting, scoring = float(m.group(1)), float(m.group(2))
    return {
        "predict_seconds": predicting,
        "score_seconds": scoring,
        "overhead": scoring / predicting,
        "wall_seconds": seconds,
        "peak_mb": peak,
    }


def evaluate_pair(a, work: Path, model: Path, images: Path) -> dict:
    """stages.evaluate as rule evaluate runs it, against the naive loop on the same settings."""
    plan, name = camvid(a)
    step = plan.step("evaluate", name, model="teacher")
    n = len(images.read_text().splitlines())
    s_pipe, peak = measured(
        stage(
            "evaluate",
            "--model",
            model,
            "--list",
            images,
            *shlex.split(step.args),
            *shlex.split(plan.runtime_args(a.threads)),
            "--out",
            work / "metrics.json",
        ),
        work / "evaluate.log",
    )
    settings = step.settings
    s_naive, _ = measured(
        baseline(
            "naive-evaluate",
            model,
            images,
            settings["data_root"],
            a.threads,
            settings["num_classes"],
            *(settings["ignore_labels"] or [255]),
            work / "naive_metrics.json",
        ),
        work / "naive_evaluate.log",
    )
    same = abs(
        json.loads((work / "metrics.json").read_text())["miou"]
        - json.loads((work / "naive_metrics.json").read_text())["miou"]
    )
    return {
        "stage_images_per_s": n / s_pipe,
        "naive_images_per_s": n / s_naive,
        "ratio": s_naive / s_pipe,
        "miou_difference": same,
        "images": n,
        "peak_mb": peak,
    }


# ---------------------------------------------------------------------------------------------
# the parts
# ---------------------------------------------------------------------------------------------
def part_ratios(a, work: Path) -> dict:
    model = model_file(a, work, "efficientnet_lite0")
    unl = first_lines(Path(a.data_root) / a.unlabeled, a.label_images, work / "label_images.txt")
    out = {}
    pipe = train_pipeline(a, work, "train_stage")
    plain = train_plain(a, work, "train_plain")
    out["train"] = {"stage": pipe, "plain": plain, "ratio": pipe["images_per_s"] / plain["images_per_s"]}
    print(
        f"train: stages.train {pipe['images_per_s']:.2f} images/s (waiting for data "
        f"{100 * pipe['data_wait_share']:.0f}% of the time), plain loop {plain['images_per_s']:.2f} images/s: "
        f"{out['train']['ratio']:.2f}x",
        flush=True,
    )
    stage_l = label_pipeline(a, work, "label_stage", model, unl)
    naive = label_naive(a, work, "label_naive", model, unl)
    sharded = label_sharded(a, work, "label_sharded", model, unl, a.threads)
    out["label"] = {
        "stage": stage_l,
        "naive": naive,
        "ratio": naive["seconds"] / stage_l["seconds"],
        "sharded": sharded,
        "sharded_ratio": naive["seconds"] / sharded["seconds"],
    }
    print(
        f"TTA labeling ({stage_l['images']} images, 10 passes): stages.label {stage_l['images_per_s']:.2f} images/s,"
        f" naive loop {naive['images_per_s']:.2f} images/s: {out['label']['ratio']:.2f}x; as {a.threads} shards of "
        f"one thread each (label.shards) {sharded['images_per_s']:.2f} images/s: {out['label']['sharded_ratio']:.2f}x",
        flush=True,
    )
    s = score_overhead(a, work, model, first_lines(unl, a.label_images, work / "score_images.txt"))
    out["score"] = s
    print(
        f"stability scoring: the 3 predictions {s['predict_seconds']:.1f} s, the scores and mask store "
        f"{s['score_seconds']:.2f} s more: {100 * s['overhead']:.1f}%",
        flush=True,
    )
    val = first_lines(Path(a.data_root) / a.val, a.eval_images, work / "eval_images.txt")
    e = evaluate_pair(a, work, model, val)
    out["evaluate"] = e
    print(
        f"evaluation ({e['images']} images): stages.evaluate {e['stage_images_per_s']:.2f} images/s, naive loop "
        f"{e['naive_images_per_s']:.2f} images/s: {e['ratio']:.2f}x (mIoU differs by {e['miou_difference']:.1e})",
        flush=True,
    )
    return out


def part_switches(a, work: Path) -> dict:
    model = model_file(a, work, "efficientnet_lite0")
    unl = first_lines(Path(a.data_root) / a.unlabeled, a.label_images, work / "label_images.txt")
    out = {"label": {}, "train": {}}
    variants = {
        f"defaults (channels_last auto = on, fold_batch_norm, batch {a.label_batch})": [],
        "channels_last off": ["--channels-last", "off"],
        "fold_batch_norm off": ["--no-fold-batch-norm"],
        "both off": ["--channels-last", "off", "--no-fold-batch-norm"],
        "batch 1": ["--batch-size", 1],
        "workers 1": ["--workers", 1],
        "resize_logits (not the paper's TTA)": ["--resize-logits"],
    }
    for name, options in variants.items():
        r = label_pipeline(a, work, "label_" + re.sub(r"\W+", "_", name), model, unl, *options)
        out["label"][name] = r
        print(f"TTA labeling, {name}: {r['images_per_s']:.2f} images/s, peak {r['peak_mb']:.0f} MB", flush=True)
    for name, backbone, workers, options in (
        ("Lite0, defaults (channels_last auto = on, workers 1)", "efficientnet_lite0", 1, []),
        ("Lite0, channels_last off", "efficientnet_lite0", 1, ["--channels-last", "off"]),
        ("Lite0, workers 0", "efficientnet_lite0", 0, []),
        ("Lite0, workers 2", "efficientnet_lite0", 2, []),
        ("ResNet-18, defaults (channels_last auto = off)", "resnet18", 1, []),
        ("ResNet-18, channels_last on", "resnet18", 1, ["--channels-last", "on"]),
    ):
        r = train_pipeline(a, work, "train_" + re.sub(r"\W+", "_", name), backbone, workers, *options)
        out["train"][name] = r
        print(
            f"training, {name}: {r['images_per_s']:.2f} images/s, waiting for data "
            f"{100 * r['data_wait_share']:.0f}%, peak {r['peak_mb']:.0f} MB",
            flush=True,
        )
    return out


def part_backbones(a, work: Path) -> dict:
    unl = first_lines(Path(a.data_root) / a.unlabeled, a.label_images, work / "label_images.txt")
    out = {}
    for backbone in ("efficientnet_lite0", "resnet18"):
        t = train_pipeline(a, work, f"backbone_train_{backbone}", backbone)
        lab = label_pipeline(a, work, f"backbone_label_{backbone}", model_file(a, work, backbone), unl)
        out[backbone] = {"train": t, "label": lab}
        print(
            f"{backbone}: training {t['images_per_s']:.2f} images/s (peak {t['peak_mb']:.0f} MB), TTA labeling "
            f"{lab['images_per_s']:.2f} images/s (peak {lab['peak_mb']:.0f} MB)",
            flush=True,
        )
    return out


def part_predict(a, work: Path) -> dict:
    """stages.predict (rule predict's command: masks, colour masks, overlays) against the naive
    one-image loop, and its peak memory for N and 4N images (it should not grow with N)."""
    model = model_file(a, work, "efficientnet_lite0")
    out = {}
    for n in (a.memory_images, 4 * a.memory_images):
        images = first_lines(Path(a.data_root) / a.unlabeled, n, work / f"predict_{n}.txt")
        n = len(images.read_text().splitlines())
        plan, name = camvid(a, predict_images=str(images))
        step = plan.step("predict", name, model="teacher")
        cmd = stage("predict", "--model", model, *shlex.split(step.args), *shlex.split(plan.runtime_args(a.threads)))
        seconds, peak = measured([*cmd, "--out", work / f"predict_{n}"], work / f"predict_{n}.log")
        out[n] = {"images_per_s": n / seconds, "seconds": seconds, "peak_mb": peak}
    n = a.memory_images
    naive_seconds, _ = measured(
        baseline("naive-predict", model, work / f"predict_{n}.txt", a.data_root, work / "predict_naive", a.threads),
        work / "predict_naive.log",
    )
    out["naive_images_per_s"] = n / naive_seconds
    out["ratio"] = naive_seconds / out[n]["seconds"]
    print(
        f"prediction ({n} images; masks, colour masks and overlays): stages.predict {out[n]['images_per_s']:.2f} "
        f"images/s, naive loop (masks only) {out['naive_images_per_s']:.2f} images/s: {out['ratio']:.2f}x; peak "
        f"{out[n]['peak_mb']:.0f} MB for {n} images, {out[4 * n]['peak_mb']:.0f} MB for {4 * n}",
        flush=True,
    )
    return out


def part_memory(a, work: Path) -> dict:
    model = model_file(a, work, "efficientnet_lite0")
    out = {}
    for n in (a.memory_images, 4 * a.memory_images):
        lst = first_lines(Path(a.data_root) / a.unlabeled, n, work / f"memory_{n}.txt")
        n = len(lst.read_text().splitlines())
        r = label_pipeline(a, work, f"memory_{n}", model, lst, "--no-tta")
        out[n] = r
        print(f"labeling {n} images (one pass each): peak {r['peak_mb']:.0f} MB", flush=True)
    return out


# ---------------------------------------------------------------------------------------------
# Snakemake at Pascal's scale
# ---------------------------------------------------------------------------------------------
DAG_CONFIG = """\
experiments:
  pascal_scale:
    data: {{root: {root}, labeled: labeled.txt, unlabeled: unlabeled.txt, val: val.txt, num_classes: 4}}
    model: {{backbone: resnet18, output_stride: 16, head_channels: 8}}
    train: {{epochs: 2, batch_size: 64, crop_size: 8, min_labeled: 64, workers: 0}}
    stpp: {{checkpoints: 2}}
    label: {{scales: [1.0], flip: false, batch_size: 256}}
device: cpu
"""


def stub_data(root: Path, labeled: int, unlabeled: int, val: int, size: int = 8) -> None:
    """Tiny random images and masks, as many as Pascal VOC's lists name."""
    from PIL import Image

    rng = np.random.default_rng(0)
    (root / "img").mkdir(parents=True, exist_ok=True)
    (root / "mask").mkdir(exist_ok=True)
    lists = {"labeled": [], "unlabeled": [], "val": []}
    for i, key in enumerate(["labeled"] * labeled + ["unlabeled"] * unlabeled + ["val"] * val):
        name = f"{i:06d}.png"
        Image.fromarray(rng.integers(0, 256, (size, size, 3), dtype=np.uint8)).save(root / "img" / name)
        Image.fromarray(rng.integers(0, 4, (size, size), dtype=np.uint8)).save(root / "mask" / name)
        lists[key].append(f"img/{name} mask/{name}\n")
    for key, lines in lists.items():
        (root / f"{key}.txt").write_text("".join(lines))


def snakemake(work: Path, *extra) -> list[str]:
    return [
        sys.executable,
        "-m",
        "snakemake",
        "--snakefile",
        ROOT / "Snakefile",
        "--directory",
        work,
        "--configfile",
        work / "config.yaml",
        "--cores",
        "2",
        *extra,
    ]


def part_dag(a, work: Path) -> dict:
    """-n in an empty folder, then a whole run (only what is missing, if ``--workdir`` kept an
    earlier one), -n with everything done, and a run with nothing to do."""
    data, fresh, work = work / "dag_data", work / "dag_fresh", work / "dag"
    if not (data / "val.txt").exists():
        stub_data(data, a.dag_labeled, a.dag_total - a.dag_labeled, a.dag_val)
    for folder in (fresh, work):
        folder.mkdir(exist_ok=True)
        (folder / "config.yaml").write_text(DAG_CONFIG.format(root=data))
    out = {"images": a.dag_total, "labeled": a.dag_labeled, "val": a.dag_val}
    out["dry_run_fresh_s"], _ = measured(snakemake(fresh, "-n", "--quiet"), fresh / "dry_fresh.log")
    out["full_run_s"], out["full_run_peak_mb"] = measured(snakemake(work), work / "run.log")
    out["dry_run_done_s"], _ = measured(snakemake(work, "-n", "--quiet"), work / "dry_done.log")
    out["noop_run_s"], _ = measured(snakemake(work), work / "noop.log")
    if "Nothing to be done" not in (work / "noop.log").read_text():
        raise RuntimeError(f"the re-run was not a no-op: {work / 'noop.log'}")
    print(
        f"Snakemake with {a.dag_total} images ({a.dag_total - a.dag_labeled} unlabeled): -n in an empty folder "
        f"{out['dry_run_fresh_s']:.1f} s, -n with everything done {out['dry_run_done_s']:.1f} s, no-op re-run "
        f"{out['noop_run_s']:.1f} s (the run before it, on 8x8 images: {out['full_run_s'] / 60:.1f} min)",
        flush=True,
    )
    return out


def part_bf16(a, work: Path) -> dict:
    """bf16 autocast on this CPU: TTA labeling and training against float32 (and labeling against
    the naive loop) on the CamVid settings, and, with ``--bf16-model`` (a trained model.pt) and
    ``--bf16-list`` (a list with masks), how often the bf16 pseudo-masks agree with float32 ones
    and the mIoU of both against the list's masks."""
    from stages.seg import speed

    model = model_file(a, work, "efficientnet_lite0")
    unl = first_lines(Path(a.data_root) / a.unlabeled, a.label_images, work / "label_images.txt")
    out = {"native_bf16": speed.native_bf16()}
    fp32 = label_pipeline(a, work, "bf16_label_fp32", model, unl)
    bf16 = label_pipeline(a, work, "bf16_label_bf16", model, unl, "--amp", "bf16")
    naive = label_naive(a, work, "bf16_label_naive", model, unl)
    out["label"] = {"fp32": fp32, "bf16": bf16, "naive": naive, "bf16_over_fp32": fp32["seconds"] / bf16["seconds"]}
    out["label"]["bf16_over_naive"] = naive["seconds"] / bf16["seconds"]
    print(
        f"TTA labeling ({fp32['images']} images, native bf16: {out['native_bf16']}): float32 "
        f"{fp32['images_per_s']:.2f} images/s, bf16 {bf16['images_per_s']:.2f} images/s "
        f"({out['label']['bf16_over_fp32']:.2f}x), naive loop {naive['images_per_s']:.2f} images/s: stages.label "
        f"in bf16 {out['label']['bf16_over_naive']:.2f}x, in float32 {naive['seconds'] / fp32['seconds']:.2f}x",
        flush=True,
    )
    t32 = train_pipeline(a, work, "bf16_train_fp32")
    t16 = train_pipeline(a, work, "bf16_train_bf16", "efficientnet_lite0", 1, "--amp", "bf16")
    out["train"] = {"fp32": t32, "bf16": t16, "bf16_over_fp32": t16["images_per_s"] / t32["images_per_s"]}
    print(
        f"training: float32 {t32['images_per_s']:.2f} images/s (peak {t32['peak_mb']:.0f} MB), bf16 "
        f"{t16['images_per_s']:.2f} images/s (peak {t16['peak_mb']:.0f} MB): {out['train']['bf16_over_fp32']:.2f}x",
        flush=True,
    )
    if a.bf16_model and a.bf16_list:
        out["agreement"] = bf16_agreement(a, work)
    return out


def bf16_agreement(a, work: Path) -> dict:
    """Pseudo-masks of a trained model in float32 and in bf16 (stages.label, the paper's TTA):
    the share of pixels on which they agree, and each one's mIoU against the list's masks."""
    from stages.seg.images import decode_mask
    from stages.seg.maskstore import MaskStore
    from stages.seg.metrics import confusion_matrix, mean_iou
    from stages.seg.splits import read_split_list

    root, c = a.bf16_data_root or a.data_root, a.bf16_num_classes
    samples = read_split_list(a.bf16_list)[: a.bf16_images]
    images = work / "bf16_agreement.txt"
    images.write_text("".join(s.line() + "\n" for s in samples))
    stores, seconds = {}, {}
    for amp in ("none", "bf16"):
        stores[amp] = work / f"bf16_agreement_{amp}.h5"
        cmd = label_command(a, a.bf16_model, images, stores[amp], a.threads, "--amp", amp, root=root, num_classes=c)
        seconds[amp], _ = measured(cmd, work / f"bf16_agreement_{amp}.log")
    fp32, bf16 = MaskStore(stores["none"]), MaskStore(stores["bf16"])
    same = total = 0
    cms = {amp: np.zeros((c, c), np.int64) for amp in ("none", "bf16")}
    for s in samples:
        masks = {"none": fp32[s.id], "bf16": bf16[s.id]}
        same += int((masks["none"] == masks["bf16"]).sum())
        total += masks["none"].size
        truth = decode_mask(Path(root) / s.mask, c, a.bf16_ignore, s.origin)
        for amp, mask in masks.items():
            cms[amp] += confusion_matrix(mask, truth, c).numpy()
    out = {
        "images": len(samples),
        "pixels": total,
        "agreement": same / total,
        "miou_fp32": mean_iou(cms["none"]),
        "miou_bf16": mean_iou(cms["bf16"]),
        "seconds_fp32": seconds["none"],
        "seconds_bf16": seconds["bf16"],
    }
    print(
        f"bf16 against float32 pseudo-masks of {a.bf16_model} on {len(samples)} images of {a.bf16_list}: "
        f"{100 * out['agreement']:.3f}% of {total} pixels agree; mIoU against the masks float32 "
        f"{100 * out['miou_fp32']:.2f}, bf16 {100 * out['miou_bf16']:.2f}; labeling {seconds['none']:.0f} s "
        f"against {seconds['bf16']:.0f} s",
        flush=True,
    )
    return out


# ---------------------------------------------------------------------------------------------
# contention: a job beside one busy process
# ---------------------------------------------------------------------------------------------
# The thread settings compared: (environment, stage options). "before" is what every stage ran
# with before issue 45 (libgomp's default spin, fixed threads); "after" the stages' defaults now
# (speed.adapt_threads: the threads follow the cores other processes leave free).
LIBGOMP_DEFAULT = {"OMP_WAIT_POLICY": None, "GOMP_SPINCOUNT": None}
THREAD_SETTINGS = {
    "before: fixed threads, libgomp's spin": (LIBGOMP_DEFAULT, ["--no-adapt-threads"]),
    "OMP_WAIT_POLICY=PASSIVE": ({"OMP_WAIT_POLICY": "PASSIVE", "GOMP_SPINCOUNT": None}, ["--no-adapt-threads"]),
    "GOMP_SPINCOUNT=1000": ({"OMP_WAIT_POLICY": None, "GOMP_SPINCOUNT": "1000"}, ["--no-adapt-threads"]),
    "--threads 1": (LIBGOMP_DEFAULT, ["--no-adapt-threads", "--threads", "1"]),
    "after: adapt_threads (the default)": (LIBGOMP_DEFAULT, []),
}


def demo_plan(work: Path, epochs: int):
    """(plan, experiment) of the shipped demo config on demo data generated under ``work``."""
    root = work / "demo"
    if not root.exists():
        measured(stage("make_demo", "--out", root), work / "make_demo.log")
    config = yaml.safe_load((ROOT / "config" / "config.yaml").read_text())
    ((name, e),) = config["experiments"].items()
    e["data"]["root"] = str(root)
    e["train"]["epochs"] = epochs
    config["device"] = "cpu"
    return workflow_plan(config), name


def contention_jobs(a, work: Path, threads: int) -> dict[str, tuple[list, Path]]:
    """The demo's teacher training (4 epochs, the last 3 timed; no DataLoader worker) and TTA labeling of 48
    unlabeled images, as the workflow runs them: {job: (command, where its speed is read)}."""
    plan, name = demo_plan(work, 4)
    teacher = plan.step("train_teacher", name)
    out = work / "contention_train"
    train = stage(
        "train", "--labeled", teacher.inputs["labeled"], *shlex.split(teacher.args),
        *shlex.split(plan.train_runtime_args(name, threads)), "--out-dir", out,
    )  # fmt: skip
    model = work / "contention_model.pt"
    if not model.exists():
        measured(train, work / "contention_model.log")
        shutil.copy(out / "model.pt", model)
    images = first_lines(Path(plan.split_list(name, "unlabeled")), 48, work / "contention_images.txt")
    labeling = plan.step("label_shard", name, model="teacher", subset="unlabeled")
    label = stage(
        "label", "--model", model, "--list", images, *shlex.split(labeling.args),
        *shlex.split(plan.runtime_args(threads, 8)), "--out", work / "contention_masks.h5",
    )  # fmt: skip
    return {"train": (train, out / "train_log.tsv"), "label": (label, work / "contention_label.log")}


def job_speed(job: str, cmd: list, where: Path, env: dict) -> float:
    """Images/s of one run: training's epochs after the first (train_log.tsv), labeling's own
    progress line (model loading and start-up left out)."""
    log = where if job == "label" else where.parent.with_suffix(".log")
    if job == "train":
        shutil.rmtree(where.parent, ignore_errors=True)  # a fresh run, not a resumed or finished one
    measured(cmd, log, env=env)
    if job == "train":
        rows = [line.split("\t") for line in where.read_text().splitlines()]
        col = rows[0].index("images_per_s")
        return float(np.mean([float(r[col]) for r in rows[2:]]))
    return float(re.findall(r"\(([\d.]+) images/s\)", log.read_text())[-1])


def part_contention(a, work: Path) -> dict:
    """Each job alone and beside one busy process (``python -c "while True: pass"``), under each
    of THREAD_SETTINGS: images/s, and beside / alone."""
    jobs = contention_jobs(a, work, a.threads)
    out = {}
    for setting, (env, options) in THREAD_SETTINGS.items():
        for job in ("train", "label"):
            cmd, where = jobs[job]
            cmd = [*cmd, *options]  # a later --threads wins over the plan's
            alone = job_speed(job, cmd, where, env)
            busy = subprocess.Popen([sys.executable, "-c", "while True: pass"])
            try:
                beside = job_speed(job, cmd, where, env)
            finally:
                busy.kill()
                busy.wait()
            out[f"{job}, {setting}"] = {"alone": alone, "beside_busy": beside, "kept": beside / alone}
            print(f"{job:5s} {setting:40s} alone {alone:7.2f} images/s, beside a busy process {beside:7.2f} "
                  f"({beside / alone:.2f}x)", flush=True)  # fmt: skip
    return out


PARTS = {
    "contention": part_contention,
    "ratios": part_ratios,
    "bf16": part_bf16,
    "switches": part_switches,
    "backbones": part_backbones,
    "memory": part_memory,
    "predict": part_predict,
    "dag": part_dag,
}


def main(argv=None) -> None:
    argv = sys.argv[1:] if argv is None else argv
    a = parse_args(argv)
    work = Path(a.workdir) if a.workdir else Path(tempfile.mkdtemp(prefix="stpp-performance-"))
    work.mkdir(parents=True, exist_ok=True)
    print(f"{date.today()}, {machine()}, torch threads {a.threads}, data {a.data_root}", flush=True)
    figures = {"date": str(date.today()), "machine": machine(), "threads": a.threads, "data_root": a.data_root}
    try:
        for name in a.parts:
            figures[name] = PARTS[name](a, work)
            if a.out:
                Path(a.out).write_text(json.dumps(figures, indent=1) + "\n")
    finally:
        if not a.workdir:
            shutil.rmtree(work, ignore_errors=True)


def parse_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--parts", nargs="+", choices=list(PARTS), default=list(PARTS))
    p.add_argument("--data-root", default=str(ROOT.parent / "shared" / "data" / "camvid"))
    p.add_argument("--labeled", default="splits/1_8/labeled.txt")
    p.add_argument("--unlabeled", default="splits/1_8/unlabeled.txt")
    p.add_argument("--val", default="val.txt")
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--train-epochs", type=int, default=3, help="epochs per training run; the first is not counted")
    p.add_argument("--train-images", type=int, default=96, help="images per training epoch")
    p.add_argument("--label-images", type=int, default=24)
    p.add_argument("--label-batch", type=int, default=8, help="labeling and scoring batch (config/camvid.yaml's)")
    p.add_argument("--eval-images", type=int, default=48)
    p.add_argument("--memory-images", type=int, default=60)
    p.add_argument("--dag-total", type=int, default=10582)
    p.add_argument("--dag-labeled", type=int, default=1464)
    p.add_argument("--dag-val", type=int, default=1449)
    p.add_argument("--bf16-model", default=None, help="bf16 part: a trained model.pt whose pseudo-masks are compared")
    p.add_argument("--bf16-list", default=None, help="bf16 part: a split list with masks to label")
    p.add_argument("--bf16-data-root", default=None, help="bf16 part: that list's data root (default --data-root)")
    p.add_argument("--bf16-num-classes", type=int, default=11, help="bf16 part: the list's classes (CamVid's 11)")
    p.add_argument(
        "--bf16-ignore", type=int, nargs="*", default=[11], help="bf16 part: its ignored labels (CamVid's void)"
    )
    p.add_argument("--bf16-images", type=int, default=None, help="bf16 part: the list's first N images (default all)")
    p.add_argument("--workdir", default=None, help="scratch (default: a temporary folder, removed)")
    p.add_argument("--out", default=None, help="JSON file for the figures")
    a = p.parse_args(argv)
    a.data_root = str(Path(a.data_root).resolve())
    return a


if __name__ == "__main__":
    main()
