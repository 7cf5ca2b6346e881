"""The workflow on a real SLURM: the README's cluster command with profiles/slurm runs the tiny
config to its summary on a one-node SLURM started here (tests/slurm_cluster.py), and a training
job cancelled with scancel mid-run is retried by Snakemake and resumes from its saved state.

Skipped, with the reason, only where SLURM cannot run (not root and not installed, no apt, not
Linux); on the CI machine it installs Debian's packages and runs."""

from __future__ import annotations

import os
import re
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml
from helpers import TINY
from slurm_cluster import Cluster, Unavailable

# workflow runs, SLURM, DDP and signals: the slow tier (`pytest -m "not slow"` leaves them out)
pytestmark = pytest.mark.slow

REPO = Path(__file__).resolve().parents[1]
EPOCHS = 8  # long enough a teacher (about a second per epoch) to be cancelled in the middle


@pytest.fixture(scope="module")
def cluster(tmp_path_factory):
    try:
        with Cluster(tmp_path_factory.mktemp("slurm")) as running:
            yield running
    except Unavailable as err:
        pytest.skip(f"no one-node SLURM here: {err}")


def cluster_command(config: Path, workdir: Path) -> list[str]:
    """The README's cluster command, plus what a cluster without accounting needs (squeue for
    job status) and a short first status check for a test (its small jobs end within 10 s;
    the plugin waits 10 s longer at each check that finds none finished)."""
    return [
        sys.executable,
        "-m",
        "snakemake",
        "--workflow-profile",
        str(REPO / "profiles" / "slurm"),
        "--snakefile",
        str(REPO / "Snakefile"),
        "--configfile",
        str(config),
        "--directory",
        str(workdir),
        "--slurm-status-command",
        "squeue",
        "--slurm-init-seconds-before-status-checks",
        "10",
        "results/tiny/summary.tsv",
    ]


def test_the_workflow_runs_on_slurm_and_a_cancelled_training_job_resumes(cluster, tmp_path):
    config = yaml.safe_load(yaml.safe_dump(TINY))
    config["experiments"]["tiny"]["train"]["epochs"] = EPOCHS
    # SupOnly and ST: every kind of job but ST++'s (scoring, split, relabeling), which the local
    # workflow tests run; each job on this SLURM costs 6-16 s of scheduling, and the suite's time
    # is bounded. Two labeling shards: the profile submits them as one job array.
    config["methods"] = ["SupOnly", "ST"]
    config["experiments"]["tiny"]["label"]["shards"] = 2
    (tmp_path / "tiny.yaml").write_text(yaml.safe_dump(config))
    env = {
        **cluster.env,
        "SBATCH_ACCOUNT": "none",
        "SBATCH_PARTITION": "debug",
        "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}",
    }  # jobs run `python`
    output = tmp_path / "snakemake.out"
    teacher_log = tmp_path / "logs" / "tiny" / "teacher" / "train.log"
    started = time.time()
    with open(output, "w") as out:
        proc = subprocess.Popen(
            cluster_command(tmp_path / "tiny.yaml", tmp_path),
            cwd=REPO,
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    try:
        cancelled = None
        while proc.poll() is None and time.time() - started < 900:
            if cancelled is None and teacher_log.exists() and f"epoch 2/{EPOCHS} done" in teacher_log.read_text():
                teacher = [j for j in cluster.squeue() if "train_teacher" in j["comment"]]
                if teacher:
                    cluster.scancel(teacher[0]["id"])
                    cancelled = teacher[0]["id"]
            time.sleep(0.2)
        if proc.poll() is None:  # Snakemake can wait forever on a job status; never the suite
            os.killpg(proc.pid, 9)
            proc.wait()
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, 9)
    text = output.read_text()
    assert proc.returncode == 0, text[-5000:]
    assert cancelled, f"the teacher's SLURM job was never seen running:\n{text[-3000:]}"

    arrays = re.findall(r"Submitted array job with Snakemake IDs (\S+) and SLURM job ID (\d+)", text)
    assert len(arrays) == 1 and len(arrays[0][0].split(",")) == 2, text[-3000:]  # the two label shards
    shard_logs = tmp_path / "logs" / "tiny" / "teacher" / "label_unlabeled"
    assert all((shard_logs / f"shard_{i}_of_2.log").stat().st_size for i in range(2))  # both tasks ran
    submitted = re.findall(r"has been submitted with SLURM jobid (\d+)", text)
    summary = tmp_path / "results" / "tiny" / "summary.tsv"
    assert summary.exists() and summary.read_text() in text
    # the cancelled job was retried, and the retry resumed the teacher instead of starting afresh
    assert cancelled in submitted and len(submitted) == len(set(submitted))
    log = teacher_log.read_text()
    assert "resuming from" in log and f"epoch {EPOCHS}/{EPOCHS} done" in log, log[-2000:]
    assert "epoch 1/" not in log.split("resuming from")[1]  # no epoch done twice
    print(f"SLURM run: {time.time() - started:.0f} s, {len(submitted)} SLURM jobs (one retry)", file=sys.stderr)
