"""kill -9 of each stage kind at a random moment, then a re-run: valid outputs, no leftovers, and
nothing of the killed job consumed. And the training job killed in its last window, between
publishing the checkpoints and writing model.pt, which used to leave a resume that could never
finish."""

from __future__ import annotations

import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from helpers import assert_same_weights, train_args

from stages.make_demo import CLASS_NAMES, make_demo
from stages.seg import training_files
from stages.seg.io import load_model
from stages.seg.maskstore import MaskStore

# workflow runs, SLURM, DDP and signals: the slow tier (`pytest -m "not slow"` leaves them out)
pytestmark = pytest.mark.slow

REPO = Path(__file__).resolve().parents[1]
C = len(CLASS_NAMES)
SIZE = 32
# Logged once a stage has read its inputs and started the work a kill should interrupt.
STARTED = {"train": "training set:", "label": "labeling", "score": "scoring", "evaluate": "evaluating"}


@pytest.fixture(scope="module")
def demo(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("faults") / "data"
    make_demo(root, num_labeled=4, num_unlabeled=12, num_val=6, size=(SIZE, SIZE))
    return root


def train_cmd(demo: Path, out: Path, epochs: int = 3, checkpoints: int = 3) -> list[str]:
    return [
        "stages.train",
        *train_args(demo, out, num_classes=C, crop=SIZE, output_stride=16, head_channels=16, epochs=epochs),
        *("--checkpoints", str(checkpoints), "--threads", "1", "--resume-state", str(out / "resume" / "state.pt")),
    ]


def run(cmd: list[str]) -> subprocess.CompletedProcess:
    proc = subprocess.run([sys.executable, "-m", *cmd], cwd=REPO, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return proc


def kill_at_random_moment(cmd: list[str], started: str, log: Path, rng: random.Random, span: float) -> float:
    """Start ``cmd``, wait until its log says ``started``, SIGKILL it ``0..span`` s later (or let
    it finish first). Returns the delay used, for the assertion messages."""
    with open(log, "w") as out:
        proc = subprocess.Popen([sys.executable, "-m", *cmd], cwd=REPO, stdout=out, stderr=subprocess.STDOUT)
    deadline = time.time() + 120
    while started not in log.read_text() and proc.poll() is None and time.time() < deadline:
        time.sleep(0.05)
    delay = rng.uniform(0, span)
    time.sleep(delay)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    return delay


def temporaries(folder: Path) -> list[Path]:
    return [p for p in folder.rglob("*") if ".tmp-" in p.name]


def snakemake_cleanup(*outputs: Path) -> None:
    """What Snakemake does with a failed job's declared outputs: delete them."""
    for path in outputs:
        if path.is_dir():
            for child in sorted(path.rglob("*"), reverse=True):
                child.unlink() if child.is_file() else child.rmdir()
            path.rmdir()
        elif path.exists():
            path.unlink()


@pytest.fixture(scope="module")
def teacher(demo, tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("teacher")
    run(train_cmd(demo, out, epochs=2, checkpoints=2))
    return out


def test_training_killed_at_a_random_moment_resumes_or_restarts(demo, tmp_path):
    rng = random.Random()
    out = tmp_path / "teacher"
    delay = kill_at_random_moment(train_cmd(demo, out), STARTED["train"], tmp_path / "killed.log", rng, 8)
    snakemake_cleanup(out / "model.pt", out / "checkpoints", out / "train_log.tsv")
    proc = run(train_cmd(demo, out))
    # Killed after the last epoch's resume state was written, the re-run trains nothing and only
    # publishes; otherwise it trains (from a resume or from scratch) through the last epoch.
    finished = "epoch 3/3 done" in proc.stderr or "after epoch 3/3" in proc.stderr
    assert finished, f"killed after {delay:.2f} s:\n{proc.stderr[-2000:]}"
    for path in (out / "checkpoints" / "checkpoint_1.pt", out / "checkpoints" / "checkpoint_2.pt", out / "model.pt"):
        assert load_model(path)(torch.zeros(1, 3, SIZE, SIZE)).shape == (1, C, SIZE, SIZE)
    assert temporaries(out) == [], f"killed after {delay:.2f} s"
    assert not (out / "resume" / "state.pt").exists()


def test_training_killed_between_publishing_checkpoints_and_writing_the_model(demo, tmp_path):
    """The fault hook lives here: a wrapper that SIGKILLs its own process when model.pt is about
    to be written, after the checkpoints were published."""
    out = tmp_path / "teacher"
    hook = tmp_path / "kill_before_model.py"
    hook.write_text(
        "import os, signal, sys\n"
        "import stages.seg.training_files as files\n"
        "import stages.train as train\n"
        "real = files.save_model\n"
        "def save_model(path, *args, **kwargs):\n"
        "    if str(path).endswith('model.pt'):\n"
        "        os.kill(os.getpid(), signal.SIGKILL)\n"
        "    real(path, *args, **kwargs)\n"
        "files.save_model = save_model\n"
        "train.main(sys.argv[1:])\n"
    )
    cmd = train_cmd(demo, out)
    proc = subprocess.run(
        [sys.executable, str(hook), *cmd[1:]],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=600,
        env={**os.environ, "PYTHONPATH": str(REPO)},
    )
    assert proc.returncode == -signal.SIGKILL
    assert (out / "checkpoints" / "checkpoint_1.pt").exists() and not (out / "model.pt").exists()
    snakemake_cleanup(out / "model.pt", out / "checkpoints", out / "train_log.tsv")
    again = run(cmd)
    assert "resuming from" in again.stderr and "after epoch 3/3" in again.stderr  # no epoch repeated
    for j in (1, 2):
        assert load_model(out / "checkpoints" / f"checkpoint_{j}.pt")
    assert load_model(out / "model.pt") and temporaries(out) == []


def signal_itself(tmp_path: Path, sig: signal.Signals, at_step: int) -> Path:
    """The fault hook: a wrapper of stages.train that sends ``sig`` to its own process when
    training step ``at_step`` (1-based, over the whole run) begins."""
    hook = tmp_path / f"signal_at_{at_step}.py"
    hook.write_text(
        "import os, sys\n"
        "import stages.train as train\n"
        "real, calls = train.train_step, [0]\n"
        "def train_step(*args, **kwargs):\n"
        "    calls[0] += 1\n"
        f"    if calls[0] == {at_step}:\n"
        f"        os.kill(os.getpid(), {int(sig)})\n"
        "    return real(*args, **kwargs)\n"
        "train.train_step = train_step\n"
        "train.main(sys.argv[1:])\n"
    )
    return hook


def run_hook(hook: Path, cmd: list[str]) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, str(hook), *cmd[1:]],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=600,
        env={**os.environ, "PYTHONPATH": str(REPO)},
    )


@pytest.fixture(scope="module")
def uninterrupted(demo, tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("uninterrupted") / "teacher"
    run(train_cmd(demo, out))  # no DataLoader worker
    return out


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGUSR1])
def test_a_stop_signal_mid_epoch_saves_at_once_and_the_retry_ends_with_the_same_weights(
    demo, uninterrupted, tmp_path, sig
):
    """Preemption (SIGTERM) or SLURM's time-limit warning (SIGUSR1) in epoch 2 of 3 (4 iterations
    each): the state after iteration 2 is saved, the job exits 75, the re-run continues from there.
    With a DataLoader worker here and none in the uninterrupted run: the same weights either way."""
    out = tmp_path / "teacher"
    cmd = train_cmd(demo, out) + ["--workers", "1"]
    stopped = run_hook(signal_itself(tmp_path, sig, at_step=6), cmd)  # arrives during epoch 2's step 2
    assert stopped.returncode == 75, stopped.stderr[-3000:]
    assert f"stopped by {sig.name}: the resume state at epoch 2 iteration 2 is kept in" in stopped.stderr
    state = torch.load(out / "resume" / "state.pt", weights_only=True)
    assert (state["epoch"], state["iteration"]) == (1, 2)
    snakemake_cleanup(out / "model.pt", out / "checkpoints", out / "train_log.tsv")
    again = run(cmd)
    assert "at epoch 2/3 iteration 2/4" in again.stderr and "epoch 1/3 done" not in again.stderr
    for name in ("model.pt", "checkpoints/checkpoint_1.pt", "checkpoints/checkpoint_2.pt"):
        assert_same_weights(out / name, uninterrupted / name)
    assert not (out / "resume" / "state.pt").exists() and temporaries(out) == []


def test_a_kill_9_loses_at_most_the_iterations_since_the_last_timed_save(demo, uninterrupted, tmp_path):
    """``--save-every-minutes`` tiny: the state is written after every iteration, so a kill -9 in
    epoch 2's iteration 3 loses that iteration alone; the re-run ends with the same weights."""
    out = tmp_path / "teacher"
    cmd = train_cmd(demo, out) + ["--save-every-minutes", "1e-6"]
    killed = run_hook(signal_itself(tmp_path, signal.SIGKILL, at_step=7), cmd)
    assert killed.returncode == -signal.SIGKILL
    assert "wrote the resume state at epoch 2 iteration 2" in killed.stderr
    state = torch.load(out / "resume" / "state.pt", weights_only=True)
    assert (state["epoch"], state["iteration"]) == (1, 2)
    snakemake_cleanup(out / "model.pt", out / "checkpoints", out / "train_log.tsv")
    again = run(cmd)
    assert "at epoch 2/3 iteration 2/4" in again.stderr
    assert_same_weights(out / "model.pt", uninterrupted / "model.pt")


def test_a_stop_signal_without_a_resume_state_says_a_rerun_starts_afresh(demo, tmp_path):
    out = tmp_path / "teacher"
    cmd = [c for c in train_cmd(demo, out)]
    at = cmd.index("--resume-state")
    del cmd[at : at + 2]
    stopped = run_hook(signal_itself(tmp_path, signal.SIGTERM, at_step=2), cmd)
    assert stopped.returncode == 75
    assert "stopped by SIGTERM; without --resume-state a re-run starts afresh" in stopped.stderr


def test_a_resume_state_without_its_staged_checkpoints_starts_afresh(demo, tmp_path):
    """Whatever removed them, a resume that cannot finish is not kept: never a permanent failure."""
    out = tmp_path / "teacher"
    kill_at_random_moment(train_cmd(demo, out), "epoch 2/3 done", tmp_path / "killed.log", random.Random(0), 0)
    assert (out / "resume" / "state.pt").exists()
    (out / "resume" / "checkpoint_1.pt").unlink()
    proc = run(train_cmd(demo, out))
    assert "the files it needs are gone" in proc.stderr and "starting afresh" in proc.stderr
    assert "epoch 1/3 done" in proc.stderr and load_model(out / "checkpoints" / "checkpoint_1.pt")


@pytest.mark.parametrize("stage", ["label", "score", "evaluate"])
def test_inference_stage_killed_at_a_random_moment_reruns_cleanly(demo, teacher, tmp_path, stage):
    rng = random.Random()
    common = ["--data-root", str(demo), "--device", "cpu", "--threads", "1", "--batch-size", "1"]
    if stage == "label":
        outputs = [tmp_path / "pseudo_masks.h5"]
        cmd = [
            "stages.label",
            "--model",
            str(teacher / "model.pt"),
            "--list",
            str(demo / "unlabeled.txt"),
            "--out",
            str(outputs[0]),
            "--scales",
            "0.75",
            "1.0",
            *common,
        ]
    elif stage == "score":
        outputs = [tmp_path / "stability_scores.tsv", tmp_path / "checkpoint_masks.h5"]
        cmd = [
            "stages.score",
            "--checkpoints",
            str(teacher / "checkpoints" / "checkpoint_1.pt"),
            str(teacher / "model.pt"),
            "--list",
            str(demo / "unlabeled.txt"),
            "--num-classes",
            str(C),
            "--scores",
            str(outputs[0]),
            "--masks",
            str(outputs[1]),
            *common,
        ]
    else:
        outputs = [tmp_path / "metrics.json"]
        cmd = [
            "stages.evaluate",
            "--model",
            str(teacher / "model.pt"),
            "--list",
            str(demo / "val.txt"),
            "--num-classes",
            str(C),
            "--out",
            str(outputs[0]),
            *common,
        ]
    delay = kill_at_random_moment(cmd, STARTED[stage], tmp_path / "killed.log", rng, 1.5)
    # An output either is complete or does not exist: nothing half-written under its name.
    for path in outputs:
        if path.exists() and path.suffix == ".h5":
            assert len(list(MaskStore(path).ids())) == 12, f"killed after {delay:.2f} s"
    snakemake_cleanup(*outputs)
    run(cmd)
    assert temporaries(tmp_path) == [], f"killed after {delay:.2f} s"
    if stage == "label":
        store = MaskStore(outputs[0])
        assert len(list(store.ids())) == 12 and all(store[i].shape == (SIZE, SIZE) for i in store.ids())
    elif stage == "score":
        assert len(outputs[0].read_text().splitlines()) == 13 and len(list(MaskStore(outputs[1]).ids())) == 12
    else:
        assert 0 <= __import__("json").loads(outputs[0].read_text())["miou"] <= 1


def test_nan_loss_stops_training_and_keeps_the_last_good_resume_state(demo, tmp_path, monkeypatch, capsys):
    """Fault hook in the test: the loss turns NaN in the third epoch."""
    import stages.train as train

    real = train.train_step
    calls = {"n": 0}

    def step(*args, **kwargs):
        calls["n"] += 1
        loss = real(*args, **kwargs)
        return float("nan") if calls["n"] > 8 else loss  # 4 iterations per epoch

    monkeypatch.setattr(train, "train_step", step)
    out = tmp_path / "teacher"
    with pytest.raises(SystemExit) as exit_:
        train.main(train_cmd(demo, out)[1:])
    assert exit_.value.code == 1
    log = capsys.readouterr().err
    assert "training diverged: the loss is nan at epoch 3 iteration 1" in log
    assert "train.lr" in log and f"after epoch 2 is kept in {out / 'resume' / 'state.pt'}" in log
    assert torch.load(out / "resume" / "state.pt", weights_only=True)["epoch"] == 2
    assert not (out / "model.pt").exists()


def test_out_of_gpu_memory_names_batch_size_and_crop(demo, tmp_path, monkeypatch):
    """Fault hook in the test: the step raises the error a GPU would."""
    import stages.train as train

    def step(*args, **kwargs):
        raise torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB")

    monkeypatch.setattr(train, "train_step", step)
    with pytest.raises(
        MemoryError,
        match=r"out of GPU memory with batch size 2, crop 32: lower the batch size "
        r"\(train.batch_size",
    ):
        train.main(train_cmd(demo, tmp_path / "teacher")[1:])


def test_stale_temporaries_are_removed_but_a_live_writers_are_kept(tmp_path):
    import socket

    from stages.seg.files import remove_stale_temporaries

    host = socket.gethostname()
    output = tmp_path / "model.pt"
    dead = tmp_path / f".model.pt.tmp-{host}-{2**22 + 12345}"  # above pid_max: never alive
    elsewhere = tmp_path / ".model.pt.tmp-othernode-77"  # a node Snakemake no longer runs this job on
    live = tmp_path / f".model.pt.tmp-{host}-{os.getppid()}"
    other_output = tmp_path / f".best.pt.tmp-{host}-{2**22 + 1}"
    for path in (dead, elsewhere, live, other_output):
        path.write_bytes(b"partial")
    remove_stale_temporaries(output)
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted([live.name, other_output.name])


def test_the_resume_fingerprint_covers_the_data_digests(demo, tmp_path):
    import stages.train as train

    digest = tmp_path / "labeled.digest"
    digest.write_text("a" * 64 + "\n")
    args = train.build_parser().parse_args(train_cmd(demo, tmp_path / "out")[1:] + ["--data-digests", str(digest)])
    before = training_files.fingerprint(args)
    digest.write_text("b" * 64 + "\n")  # an image of the list changed
    assert training_files.fingerprint(args) != before
