"""Multi-process training as `train.gpus: 2` runs it (torchrun, DistributedDataParallel), on the
CPU with the gloo backend: it trains, a stop signal reaching one process stops both with the
state saved, the re-run resumes to the same weights as an uninterrupted run, and the model
loads and evaluates."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from helpers import assert_same_weights, train_args

from stages.make_demo import CLASS_NAMES, make_demo
from stages.seg.io import load_model

# workflow runs, SLURM, DDP and signals: the slow tier (`pytest -m "not slow"` leaves them out)
pytestmark = pytest.mark.slow

REPO = Path(__file__).resolve().parents[1]
C = len(CLASS_NAMES)


@pytest.fixture(scope="module")
def demo(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("ddp") / "data"
    make_demo(root, num_labeled=4, num_unlabeled=2, num_val=3, size=(32, 32))
    return root


def torchrun(demo: Path, out: Path, script: list[str], *extra: str) -> subprocess.CompletedProcess:
    """2 processes, a global batch of 4 (2 each), 2 iterations per epoch, 3 epochs."""
    cmd = [
        sys.executable,
        "-m",
        "torch.distributed.run",
        "--standalone",
        "--nproc-per-node",
        "2",
        *script,
        *train_args(demo, out, num_classes=C, crop=32, batch=4, output_stride=16, head_channels=16, epochs=3),
        *("--checkpoints", "3", "--threads", "1", "--resume-state", str(out / "resume" / "state.pt")),
        *extra,
    ]
    return subprocess.run(
        cmd, cwd=REPO, capture_output=True, text=True, timeout=600, env={**os.environ, "PYTHONPATH": str(REPO)}
    )


@pytest.fixture(scope="module")
def uninterrupted(demo, tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("ddp_full") / "teacher"
    proc = torchrun(demo, out, ["--module", "stages.train"])
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "and 1 more processes" in proc.stderr and "epoch 3/3 done" in proc.stderr
    return out


def test_two_processes_train_and_the_model_evaluates(demo, uninterrupted, tmp_path):
    for name in ("model.pt", "checkpoints/checkpoint_1.pt", "checkpoints/checkpoint_2.pt"):
        model = load_model(uninterrupted / name)  # saved without DDP's "module." prefix
        assert model(torch.zeros(1, 3, 32, 32)).shape == (1, C, 32, 32)
    out = tmp_path / "metrics.json"
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "stages.evaluate",
            "--model",
            str(uninterrupted / "model.pt"),
            "--list",
            str(demo / "val.txt"),
            "--data-root",
            str(demo),
            "--num-classes",
            str(C),
            "--device",
            "cpu",
            "--out",
            str(out),
        ],
        cwd=REPO,
        capture_output=True,
        text=True,
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert 0 <= json.loads(out.read_text())["miou"] <= 1
    assert len((uninterrupted / "train_log.tsv").read_text().splitlines()) == 4  # one log, rank 0's


def test_a_stop_signal_to_one_process_stops_both_and_the_rerun_resumes_to_the_same_weights(
    demo, uninterrupted, tmp_path
):
    """The fault hook: rank 1 alone sends itself SIGTERM as its third step begins (epoch 2)."""
    hook = tmp_path / "stop_rank_1.py"
    hook.write_text(
        "import os, signal, sys\n"
        "import stages.train as train\n"
        "real, calls = train.train_step, [0]\n"
        "def train_step(*args, **kwargs):\n"
        "    calls[0] += 1\n"
        "    if calls[0] == 3 and os.environ['RANK'] == '1':\n"
        "        os.kill(os.getpid(), signal.SIGTERM)\n"
        "    return real(*args, **kwargs)\n"
        "train.train_step = train_step\n"
        "train.main(sys.argv[1:])\n"
    )
    out = tmp_path / "teacher"
    stopped = torchrun(demo, out, [str(hook)])
    assert stopped.returncode != 0
    assert "stopped by a stop signal: the resume state at epoch 2 iteration 1 is kept in" in stopped.stderr
    state = torch.load(out / "resume" / "state.pt", weights_only=True)
    assert (state["epoch"], state["iteration"], len(state["rng_cpu"])) == (1, 1, 2)
    assert not (out / "model.pt").exists()

    again = torchrun(demo, out, ["--module", "stages.train"])
    assert again.returncode == 0, again.stderr[-3000:]
    assert "at epoch 2/3 iteration 1/2" in again.stderr
    for name in ("model.pt", "checkpoints/checkpoint_1.pt", "checkpoints/checkpoint_2.pt"):
        assert_same_weights(out / name, uninterrupted / name)
    assert not (out / "resume" / "state.pt").exists()


def test_a_batch_that_does_not_split_over_the_processes_names_the_keys(demo, tmp_path):
    """Checked before any process talks to another: run in this process with a world of 3."""
    from stages import train
    from stages.seg.data import DataError
    from stages.seg.distributed import World

    args = train.build_parser().parse_args(train_args(demo, tmp_path, num_classes=C, crop=32, batch=4))
    with pytest.raises(
        DataError,
        match=r"the batch of 4 \(train.batch_size\) does not split over 3 processes "
        r"\(train.gpus\): make it a multiple",
    ):
        train._train(args, World(rank=0, size=3), torch.device("cpu"))


def test_the_workflow_trains_with_train_gpus_2_under_torchrun(tmp_path):
    """The tiny config with train.gpus: 2: the teacher job runs torchrun with 2 processes (gloo
    on CPU), asks for 2 GPUs, and its model is evaluated by the workflow."""
    import yaml
    from helpers import TINY, snakemake

    config = yaml.safe_load(yaml.safe_dump(TINY))
    config["experiments"]["tiny"]["train"].update(gpus=2, batch_size=4)
    config["resources"]["train"]["threads"] = 2
    (tmp_path / "tiny.yaml").write_text(yaml.safe_dump(config))
    args = (
        "--configfile",
        str(tmp_path / "tiny.yaml"),
        "--directory",
        str(tmp_path),
        "results/tiny/teacher/metrics.json",
    )
    plan = snakemake("-n", "-p", *args)
    text = plan.stdout + plan.stderr
    assert "python -m torch.distributed.run --standalone --nproc-per-node 2 --module stages.train" in text
    assert "gpu=2" in text and "--threads 1" in text  # 2 threads shared by 2 processes
    snakemake("--cores", "2", *args)
    log = (tmp_path / "logs" / "tiny" / "teacher" / "train.log").read_text()
    assert "and 1 more processes" in log and "epoch 3/3 done" in log
    assert 0 <= json.loads((tmp_path / "results" / "tiny" / "teacher" / "metrics.json").read_text())["miou"] <= 1
