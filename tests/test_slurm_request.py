"""What SLURM is asked for a training job with `train.gpus: 2`: one task with two GPUs, inside
which torchrun starts the two processes (not two one-GPU tasks: the shape reported for the
executor plugin in snakemake-executor-plugin-slurm #316).

The profile's real submission path runs against an `sbatch` that records its arguments and
answers with a job id (no SLURM needed; tests/test_slurm.py runs a real one); the job step
inside the allocation is the jobstep plugin's own `srun` line for that job."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from types import SimpleNamespace

import pytest
import yaml
from helpers import REPO, TINY, snakemake

# a workflow run: the slow tier (`pytest -m "not slow"` leaves it out)
pytestmark = pytest.mark.slow

RECORDING_SBATCH = """#!/bin/sh
# records the call (arguments, one per line, and the script on stdin) and answers as sbatch --parsable
printf '%s\\n' "$@" > "{out}/sbatch.args"
cat > "{out}/sbatch.stdin"
echo 4242
"""
SILENT = "#!/bin/sh\nexit 0\n"  # squeue, sacct, scontrol, sinfo: nothing to report
ACCOUNTS = "#!/bin/sh\necho acct\n"  # sacctmgr: the user's account, which the plugin checks


def test_a_two_gpu_training_job_is_one_task_with_two_gpus_and_torchrun_inside(tmp_path):
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    (bin_dir / "sbatch").write_text(RECORDING_SBATCH.format(out=tmp_path))
    for name in ("squeue", "sacct", "scontrol", "sinfo", "scancel"):
        (bin_dir / name).write_text(SILENT)
    (bin_dir / "sacctmgr").write_text(ACCOUNTS)
    for script in bin_dir.iterdir():
        script.chmod(0o755)
    config = yaml.safe_load(yaml.safe_dump(TINY))
    config["experiments"]["tiny"]["train"].update(gpus=2, batch_size=4)
    config["resources"]["train"] = {"threads": 8, "mem_mb": 16000, "runtime": 120, "gpu": 1}
    (tmp_path / "config.yaml").write_text(yaml.safe_dump(config))
    # the demo data and its check here, so that the teacher is the one job left to submit
    config_args = ("--configfile", str(tmp_path / "config.yaml"), "--directory", str(tmp_path))
    snakemake("--cores", "2", *config_args, "results/tiny/data_check/manifest.tsv")
    env = {
        **os.environ,
        "PATH": f"{bin_dir}{os.pathsep}{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}",
        "SBATCH_ACCOUNT": "acct",
        "SBATCH_PARTITION": "gpu",
    }
    cmd = [sys.executable, "-m", "snakemake", "--workflow-profile", str(REPO / "profiles" / "slurm")]
    cmd += ["--snakefile", str(REPO / "Snakefile"), "--configfile", str(tmp_path / "config.yaml")]
    cmd += ["--directory", str(tmp_path), "--slurm-status-command", "squeue", "results/tiny/teacher/model.pt"]
    with open(tmp_path / "snakemake.out", "w") as out:
        proc = subprocess.Popen(cmd, cwd=REPO, env=env, stdout=out, stderr=subprocess.STDOUT, start_new_session=True)
    try:
        deadline = time.time() + 120
        while not (tmp_path / "sbatch.args").exists() and proc.poll() is None and time.time() < deadline:
            time.sleep(0.2)
        time.sleep(0.5)  # the recording sbatch finishes writing
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()
    text = (tmp_path / "snakemake.out").read_text()
    assert (tmp_path / "sbatch.args").exists(), text[-4000:]
    args = (tmp_path / "sbatch.args").read_text().splitlines()
    request = " ".join(args)
    assert "--gpus=2" in args, request  # two GPUs for the job, whatever resources.train.gpu says
    # one task (sbatch's default) with the job's 8 CPUs: not one task per GPU
    assert not [a for a in args if a.startswith(("--ntasks", "--gres"))], request
    assert "--cpus-per-task=8" in args, request
    assert "-A acct" in request.replace("'", "") and "-p gpu" in request.replace("'", "")
    assert "--mem" in args and "16000" in args

    # Inside the allocation: the jobstep plugin's srun line for this job is one task (-n1) with the
    # two GPUs and the job's threads, and the rule's command starts the two processes (torchrun)
    from snakemake_executor_plugin_slurm_jobstep import get_cpu_setting, get_gpu_setting

    job = SimpleNamespace(threads=8, resources=SimpleNamespace(gpu=2, get=lambda k, d=None: {"gpu": 2}.get(k, d)))
    assert get_gpu_setting(job).split() == ["--gpus=2"] and get_cpu_setting(job, True) == "--cpus-per-task=8"
    # ... running the teacher's job, whose command starts the two processes under torchrun
    # (tests/test_distributed.py runs that command)
    assert "slurm-jobstep" in request and "train_teacher" in request, request
