"""What the benchmark scripts share: the repository, the machine and the code a figure was
measured on, the workflow's own plan of a config, and the records' files (a record's JSON and
its per-image confusion matrices)."""

from __future__ import annotations

import copy
import os
import platform
import subprocess
import sys
from pathlib import Path

import numpy as np
import torch

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

from stages.seg.files import atomic_path, write_json  # noqa: E402
from stages.workflow import layout  # noqa: E402, F401  (the paths, for the scripts that import this)

RECORDS = REPO / "benchmarks" / "records"


def machine() -> dict:
    """Where the figures were measured; the CPU's vector width matters (the same run took 2.6x
    longer per training step on an AVX2-only CPU than on the earlier sessions' one)."""
    cpu = platform.processor() or platform.machine()
    if os.path.exists("/proc/cpuinfo"):
        with open("/proc/cpuinfo") as f:
            cpu = next((line.split(":", 1)[1].strip() for line in f if line.startswith("model name")), cpu)
    return {
        "cpu": cpu,
        "cores": os.cpu_count(),
        "cpu_capability": torch.backends.cpu.get_cpu_capability(),
        "torch": torch.__version__,
        "device": "cuda" if torch.cuda.is_available() else "cpu",
    }


def code_version() -> str | None:
    """The commit of the code that ran (``-dirty``: with uncommitted changes to tracked files), or
    None outside a git clone. Two commits may draw other augmentations from the same seeds, so a
    table that joins records of several commits says so."""

    def git(*cmd: str) -> str:
        return subprocess.run(["git", "-C", str(REPO), *cmd], capture_output=True, text=True, check=True).stdout.strip()

    try:
        return git("rev-parse", "HEAD") + ("-dirty" if git("status", "--porcelain", "--untracked-files=no") else "")
    except (OSError, subprocess.CalledProcessError):
        return None


def workflow_plan(config: dict):
    """The workflow's own plan (stages.workflow.Plan) of a config, with the schema's defaults
    filled in as the Snakefile fills them; ``config`` itself is left as it is."""
    from snakemake.utils import validate

    from stages.workflow import Plan

    config = copy.deepcopy(config)
    validate(config, str(REPO / "config" / "config.schema.yaml"))
    return Plan(config)


# -- records ----------------------------------------------------------------------------------


def confusion_path(records_dir: Path, name: str) -> Path:
    return records_dir / f"{name}.confusion.npz"


def write_record(records_dir: Path, name: str, record: dict, confusion: dict) -> None:
    write_json(records_dir / f"{name}.json", record)
    if confusion:
        with atomic_path(confusion_path(records_dir, name)) as tmp:
            with open(tmp, "wb") as f:
                np.savez_compressed(f, **{k: np.asarray(v) for k, v in confusion.items()})


def read_confusion(records_dir: Path, name: str) -> dict:
    """A record's per-image confusion matrices ({} for a record made before they were kept)."""
    path = confusion_path(records_dir, name)
    if not path.exists():
        return {}
    with np.load(path) as f:
        return {k: f[k] for k in f.files}
