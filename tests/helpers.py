"""What the tests share, in one module (not a test module): the repository, the tiny workflow
config and the `snakemake` runner with the readers of its output, the arguments of a tiny training
run, weight comparison, and the benchmark scripts as modules."""

from __future__ import annotations

import importlib.util
import os
import re
import subprocess
import sys
from pathlib import Path
from types import ModuleType

import torch
import yaml

from stages.seg.io import load_model

REPO = Path(__file__).resolve().parents[1]
BENCHMARKS = REPO / "benchmarks"


# -- the workflow ------------------------------------------------------------------------------


def snakemake(*args: str, cwd: Path = REPO, check: bool = True) -> subprocess.CompletedProcess:
    cmd = [sys.executable, "-m", "snakemake", "--snakefile", str(REPO / "Snakefile"), *args]
    proc = subprocess.run(cmd, cwd=cwd, capture_output=True, text=True, timeout=900)
    if check and proc.returncode != 0:
        raise AssertionError(f"{' '.join(cmd)} failed:\n{proc.stdout[-4000:]}\n{proc.stderr[-4000:]}")
    return proc


def planned_rules(proc: subprocess.CompletedProcess) -> set[str]:
    """Rule names of a dry run's job table."""
    text = proc.stdout + proc.stderr
    if "Nothing to be done" in text:
        return set()
    table = text.split("Job stats:")[1].split("\n\n")[0].splitlines()[3:]
    return {line.split()[0] for line in table if line.split() and line.split()[0] != "total"}


def ran_rules(proc: subprocess.CompletedProcess) -> set[str]:
    """Rule names of the jobs a real run started, but the target rule 'all'."""
    text = proc.stdout + proc.stderr
    return {
        line.split()[1].rstrip(":")
        for line in text.splitlines()
        if line.split()[:1] in (["rule"], ["localrule"], ["checkpoint"], ["localcheckpoint"])
    } - {"all"}


def planned_outputs(proc: subprocess.CompletedProcess, rule: str | None = None) -> list[str]:
    """Every output file of a run's jobs, dry or real (of one rule's jobs, with ``rule``)."""
    outputs, current = [], None
    for line in (proc.stdout + proc.stderr).splitlines():
        job = re.match(r"(local)?(rule|checkpoint) (\w+):$", line.strip())
        if job:
            current = job.group(3)
        elif line.strip().startswith("output:") and rule in (None, current):
            outputs += line.split(":", 1)[1].replace(",", " ").split()
    return outputs


# The whole SupOnly / ST / ST++ workflow on a tiny synthetic data set.
TINY = {
    "experiments": {
        "tiny": {
            "data": {
                "root": "resources/demo",
                "labeled": "labeled.txt",
                "unlabeled": "unlabeled.txt",
                "val": "val.txt",
                "num_classes": 4,
                "class_names": ["background", "circle", "square", "triangle"],
            },
            "model": {"arch": "deeplabv3plus", "backbone": "resnet18", "output_stride": 16},
            "train": {"epochs": 3, "batch_size": 2, "lr": 0.02, "crop_size": 32, "min_labeled": 8, "workers": 0},
            "stpp": {"checkpoints": 3, "reliable_ratio": 0.5},
            "label": {"scales": [0.75, 1.0], "flip": True, "batch_size": 8, "shards": 2},
        }
    },
    "methods": ["SupOnly", "ST", "ST++"],
    "rounds": 2,
    "device": "cpu",
    "demo": {"num_labeled": 4, "num_unlabeled": 6, "num_val": 3, "size": 32, "seed": 0},
    "resources": {
        kind: {"threads": 1, "mem_mb": 1000, "runtime": 10, "gpu": 0}
        for kind in ("train", "label", "score", "evaluate", "small")
    },
}


def write_config(workdir: Path, **stpp) -> Path:
    config = yaml.safe_load(yaml.safe_dump(TINY))
    config["experiments"]["tiny"]["stpp"].update(stpp)
    path = workdir / "tiny.yaml"
    path.write_text(yaml.safe_dump(config))
    return path


def touch_demo_images(workdir: Path) -> None:
    """New modification times for every demo image and mask, the bytes kept (a data set copied
    again)."""
    for path in (workdir / "resources" / "demo").rglob("*.png"):
        os.utime(path)


# -- training ----------------------------------------------------------------------------------


def train_args(root: Path, out: Path, *, num_classes: int, crop: int, batch: int = 2, min_labeled: int = 8, **options):
    """stages.train on ``root``'s labeled list into ``out``: ResNet-18 from random init, no
    DataLoader workers, on the CPU; each further ``key=value`` becomes ``--key value``."""
    settings = {
        "labeled": root / "labeled.txt",
        "data_root": root,
        "num_classes": num_classes,
        "out_dir": out,
        "backbone": "resnet18",
        "crop_size": crop,
        "batch_size": batch,
        "workers": 0,
        "min_labeled": min_labeled,
        "device": "cpu",
        **options,
    }
    return [token for key, value in settings.items() for token in (f"--{key.replace('_', '-')}", str(value))]


def assert_same_weights(a: Path, b: Path) -> None:
    sa, sb = load_model(a).state_dict(), load_model(b).state_dict()
    assert sa.keys() == sb.keys()
    different = [k for k in sa if not torch.equal(sa[k], sb[k])]
    assert not different, f"{len(different)} tensors differ, e.g. {different[:3]}"


# -- the benchmark scripts -------------------------------------------------------------------------


def load(name: str) -> ModuleType:
    """``benchmarks/<name>.py``, loaded once per process. Its folder goes on ``sys.path``, as when
    the script runs from it: ``performance.py`` and ``demo.py`` import ``semisup`` beside them."""
    if name in sys.modules:
        return sys.modules[name]
    if str(BENCHMARKS) not in sys.path:
        sys.path.insert(0, str(BENCHMARKS))
    spec = importlib.util.spec_from_file_location(name, BENCHMARKS / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    spec.loader.exec_module(module)
    return module
