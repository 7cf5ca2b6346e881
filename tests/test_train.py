"""Tests for stages.train: resume, checkpoint epochs, learning rates, validation."""

from __future__ import annotations

import csv
import logging
import math
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F
from helpers import assert_same_weights, train_args

from stages import train
from stages.make_demo import make_demo
from stages.seg.io import load_model, resolve_device
from stages.train import checkpoint_epochs, poly_lr

EPOCHS = 3
ITERS = 2  # 4 labeled images (--min-labeled 4) / batch 2


@pytest.fixture(scope="module")
def demo(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("train") / "data"
    make_demo(root, num_labeled=4, num_unlabeled=1, num_val=2, size=(32, 32))
    return root


@pytest.fixture
def stpp_log():
    """Messages of the 'stpp' logger (a handler of its own: the stages reset the root logger's)."""
    records: list[str] = []
    handler = logging.Handler(logging.INFO)
    handler.emit = lambda record: records.append(record.getMessage())
    logger = logging.getLogger("stpp")
    logger.addHandler(handler)
    yield records
    logger.removeHandler(handler)


def run_train(demo: Path, out: Path, *extra: str) -> Path:
    train.main([*train_args(demo, out, num_classes=4, crop=32, min_labeled=4, epochs=EPOCHS, seed=3), *extra])
    return out


def read_log(out: Path) -> list[dict]:
    with open(out / "train_log.tsv", newline="") as f:
        return list(csv.DictReader(f, delimiter="\t"))


class Interrupted(Exception):
    pass


def interrupt_after_epoch(monkeypatch, epochs_done: int) -> None:
    """Make training die in epoch ``epochs_done + 1``, before its log and resume state are written."""
    write_log = train._write_log

    def crashing(path, rows):
        if len(rows) > epochs_done:
            raise Interrupted(f"killed in epoch {len(rows)}")
        write_log(path, rows)

    monkeypatch.setattr(train, "_write_log", crashing)


@pytest.fixture(scope="module")
def uninterrupted(demo, tmp_path_factory) -> Path:
    return run_train(demo, tmp_path_factory.mktemp("full"), "--checkpoints", "3")


def test_resume_equals_uninterrupted_run(demo, uninterrupted, tmp_path, monkeypatch, stpp_log):
    out, state = tmp_path / "out", tmp_path / "resume" / "state.pt"
    with monkeypatch.context() as m:
        interrupt_after_epoch(m, 1)
        with pytest.raises(Interrupted):
            run_train(demo, out, "--checkpoints", "3", "--resume-state", str(state))
    assert torch.load(state, weights_only=True)["epoch"] == 1
    assert not (out / "model.pt").exists()

    run_train(demo, out, "--checkpoints", "3", "--resume-state", str(state))
    assert any(msg.startswith("resuming from") and "after epoch 1/3" in msg for msg in stpp_log)
    assert not state.exists()  # removed once training finished
    assert_same_weights(out / "model.pt", uninterrupted / "model.pt")
    for j in (1, 2):  # checkpoint 1 was made before the interruption, 2 after it
        assert_same_weights(out / f"checkpoints/checkpoint_{j}.pt", uninterrupted / f"checkpoints/checkpoint_{j}.pt")
    resumed, full = read_log(out), read_log(uninterrupted)
    assert [r["epoch"] for r in resumed] == ["1", "2", "3"]
    for column in ("loss", "iterations", "lr"):
        assert [r[column] for r in resumed] == [r[column] for r in full]


def test_resume_state_of_other_settings_is_ignored(demo, tmp_path, monkeypatch, stpp_log):
    state = tmp_path / "state.pt"
    with monkeypatch.context() as m:
        interrupt_after_epoch(m, 1)
        with pytest.raises(Interrupted):
            run_train(demo, tmp_path / "first", "--resume-state", str(state))
    assert state.exists()

    other = ("--lr", "0.004", "--epochs", "1")  # later arguments win over run_train's
    run_train(demo, tmp_path / "other", *other, "--resume-state", str(state))
    assert any(msg.startswith(f"ignoring {state}") for msg in stpp_log)
    assert not any(msg.startswith("resuming") for msg in stpp_log)
    assert not state.exists()
    assert_same_weights(tmp_path / "other" / "model.pt", run_train(demo, tmp_path / "fresh", *other) / "model.pt")


@pytest.mark.parametrize(
    "epochs,k,expected",
    [
        (10, 3, {3: 1, 6: 2, 10: 3}),
        (3, 3, {1: 1, 2: 2, 3: 3}),
        (80, 3, {26: 1, 53: 2, 80: 3}),
        (5, 1, {5: 1}),
        (7, 2, {3: 1, 7: 2}),
    ],
)
def test_checkpoint_epochs(epochs, k, expected):
    assert checkpoint_epochs(epochs, k) == expected


@pytest.mark.parametrize("epochs,k", [(2, 3), (5, 0)])
def test_checkpoint_epochs_rejects_bad_k(epochs, k):
    with pytest.raises(ValueError, match="--checkpoints"):
        checkpoint_epochs(epochs, k)


def test_poly_lr():
    assert poly_lr(0.01, 0, 100, 0.9) == 0.01
    assert poly_lr(0.01, 50, 100, 0.9) == pytest.approx(0.01 * 0.5**0.9)  # 0.005359
    assert poly_lr(0.01, 90, 100, 0.9) == pytest.approx(0.01 * 0.1**0.9)  # 0.001259
    assert poly_lr(0.01, 100, 100, 0.9) == 0.0
    assert poly_lr(0.01, 50, 100, 1.0) == pytest.approx(0.005)


def test_learning_rates_and_validation(demo, tmp_path, monkeypatch):
    calls: list[tuple[float, int, int]] = []

    def recording_poly_lr(base_lr, iteration, total, power):
        calls.append((base_lr, iteration, total))
        return poly_lr(base_lr, iteration, total, power)

    monkeypatch.setattr(train, "poly_lr", recording_poly_lr)
    out = run_train(demo, tmp_path / "out", "--lr", "0.016", "--val", str(demo / "val.txt"), "--eval-every", "2")

    # backbone lr = 0.016 x batch 2 / 16 = 0.002, head 10x; both decayed every iteration
    total = EPOCHS * ITERS
    backbone, head = 0.002, 0.02
    assert [c[0] for c in calls] == pytest.approx([backbone, head] * total)
    assert [c[1] for c in calls] == [i for i in range(total) for _ in range(2)]
    assert {c[2] for c in calls} == {total}
    rows = read_log(out)
    assert [float(r["lr"]) for r in rows] == pytest.approx(
        [poly_lr(backbone, (e + 1) * ITERS - 1, total, 0.9) for e in range(EPOCHS)], rel=1e-5
    )

    # validation after epoch 2 (--eval-every 2) and after the last epoch
    assert rows[0]["val_miou"] == ""
    scores = [float(r["val_miou"]) for r in rows[1:]]
    assert all(0.0 <= s <= 1.0 for s in scores)
    best = torch.load(out / "best.pt", weights_only=True)
    assert best["val_miou"] == pytest.approx(max(scores))
    assert best["epoch"] == 2 + scores.index(max(scores))
    load_model(out / "best.pt")
    assert not (out / "checkpoints" / "best.pt").exists()


def test_pretrained_lite0_trains_and_resumes(demo, tmp_path, monkeypatch, stpp_log):
    """The packaged ImageNet Lite0 trunk with a narrow head: trains, resumes exactly, reloads."""
    lite0 = (
        "--backbone",
        "efficientnet_lite0",
        "--pretrained",
        "imagenet",
        "--output-stride",
        "16",
        "--head-channels",
        "16",
        "--checkpoints",
        "2",
    )
    full = run_train(demo, tmp_path / "full", *lite0)
    out, state = tmp_path / "out", tmp_path / "resume" / "state.pt"
    with monkeypatch.context() as m:
        interrupt_after_epoch(m, 2)
        with pytest.raises(Interrupted):
            run_train(demo, out, *lite0, "--resume-state", str(state))
    run_train(demo, out, *lite0, "--resume-state", str(state))
    assert any("after epoch 2/3" in msg for msg in stpp_log)
    assert_same_weights(out / "model.pt", full / "model.pt")
    ckpt = torch.load(out / "model.pt", weights_only=True)
    assert (ckpt["backbone"], ckpt["head_channels"], ckpt["output_stride"]) == ("efficientnet_lite0", 16, 16)
    model = load_model(out / "model.pt")
    assert model.head.classifier.in_channels == 16
    losses = [float(r["loss"]) for r in read_log(out)]
    assert all(math.isfinite(x) for x in losses)


def test_checkpoint_without_head_channels_loads(uninterrupted, tmp_path):
    """Model files written before head_channels existed still load, with the paper's width."""
    ckpt = torch.load(uninterrupted / "model.pt", weights_only=True)
    del ckpt["head_channels"]
    torch.save(ckpt, tmp_path / "old.pt")
    assert load_model(tmp_path / "old.pt").head.classifier.in_channels == 256


@pytest.mark.parametrize("name", ["gpu", "cuda0", "cpu:0x", ""])
def test_a_bad_device_names_the_setting(name):
    """`device: gpu` used to fail inside torch ('Expected one of cpu, cuda, ...') naming no setting."""
    with pytest.raises(
        ValueError, match=rf"device '{name}' is not one of auto, cpu, cuda, cuda:N \(--device, device in the config\)"
    ):
        resolve_device(name)
    assert resolve_device("cpu").type == "cpu" and resolve_device("auto").type in ("cpu", "cuda")


def test_jobs_on_a_workstation_claim_different_gpus(tmp_path):
    """`snakemake --resources gpu=2` runs two GPU jobs at once; each claims its own device, held
    until its process ends (processes here; the claim is a file lock)."""
    import subprocess
    import sys

    claim = (
        "import sys, time; from stages.seg.io import claim_gpu; "
        f"print(claim_gpu(2, {str(tmp_path)!r}), flush=True); time.sleep(float(sys.argv[1]))"
    )
    holders = [
        subprocess.Popen([sys.executable, "-c", claim, "30"], stdout=subprocess.PIPE, text=True) for _ in range(2)
    ]
    try:
        got = sorted(int(p.stdout.readline()) for p in holders)
        third = subprocess.run([sys.executable, "-c", claim, "0"], capture_output=True, text=True)
    finally:
        for p in holders:
            p.kill()
            p.wait()
    assert got == [0, 1]
    assert third.stdout.strip() == "0" and "all 2 GPUs are claimed" in third.stderr
    again = subprocess.run([sys.executable, "-c", claim, "0"], capture_output=True, text=True)
    assert again.stdout.strip() == "0" and not again.stderr  # the holders' locks went with them


def test_cuda_is_pinned_only_where_the_scheduler_did_not(monkeypatch, tmp_path):
    """The CUDA branch of resolve_device, run on CPU with torch.cuda faked: 3 GPUs visible."""
    from stages.seg import io

    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 3)
    monkeypatch.setenv("STPP_GPU_LOCK_DIR", str(tmp_path))
    monkeypatch.delenv("CUDA_VISIBLE_DEVICES", raising=False)
    monkeypatch.setattr(io, "_claimed", [])
    assert [io.resolve_device("auto"), io.resolve_device("cuda")] == [torch.device("cuda", 0), torch.device("cuda", 1)]
    assert io.resolve_device("cuda:2") == torch.device("cuda", 2)  # asked for: as it is
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "5")  # SLURM gave this job its GPU
    assert io.resolve_device("auto") == torch.device("cuda")
    for handle in io._claimed:
        handle.close()


@pytest.mark.parametrize(
    "num_pseudo,expected",
    [
        (156, 60),  # MSRC-21 1/8 student 1: labeled x 4 + 156 reliable; the teacher saw each image 8 x 30 times
        (312, 30),  # ST and student 2: labeled x 8 + 312, the teacher's repeats already
        (0, 30),  # the teacher itself
    ],
)
def test_labeled_passes_schedule(num_pseudo, expected):
    epochs = train.schedule_epochs(30, 44, num_pseudo, 8, 352, teacher_epochs=30)
    assert epochs == expected
    if num_pseudo:
        student_repeats = math.ceil(num_pseudo / 44)
        assert epochs * student_repeats >= 30 * 8  # every labeled image at least as often as the teacher
        assert epochs * ((44 * student_repeats + num_pseudo) // 8) >= 30 * (352 // 8)  # the teacher's iterations
    assert train.schedule_epochs(30, 44, num_pseudo, 8, 352, teacher_epochs=None) == 30  # the paper's rule


def test_labeled_passes_schedule_bounds_hold_for_any_sizes():
    """Every student under the rule sees each labeled image at least as often as the teacher and
    trains at least its iterations, whatever the list sizes and batch."""
    for labeled in (1, 3, 22, 44, 100):
        for pseudo in (1, 4, 44, 156, 334):
            for batch, min_labeled, teacher_epochs in ((2, 8, 3), (8, 352, 30), (16, 200, 80)):
                t_rep, s_rep = math.ceil(min_labeled / labeled), math.ceil(pseudo / labeled)
                if (labeled * s_rep + pseudo) < batch:
                    continue  # less than one batch: the trainer refuses it
                epochs = train.schedule_epochs(1, labeled, pseudo, batch, min_labeled, teacher_epochs)
                assert epochs * s_rep >= teacher_epochs * max(1, t_rep)
                assert epochs * ((labeled * s_rep + pseudo) // batch) >= teacher_epochs * (
                    labeled * max(1, t_rep) // batch
                )


def initial_weights(demo: Path, out: Path, monkeypatch, *extra: str) -> dict:
    """The state of the model as the trainer built it, before its first step (a test hook on the
    trainer's build_model)."""
    built = {}

    def capture(*args, **kwargs):
        net = build(*args, **kwargs)
        built.update({k: v.clone() for k, v in net.state_dict().items()})
        return net

    build = train.build_model
    monkeypatch.setattr(train, "build_model", capture)
    run_train(demo, out, "--epochs", "1", *extra)
    monkeypatch.setattr(train, "build_model", build)
    return built


def test_each_model_starts_from_its_own_head(demo, tmp_path, monkeypatch):
    teacher = initial_weights(demo, tmp_path / "a", monkeypatch, "--model-name", "teacher")
    student = initial_weights(demo, tmp_path / "b", monkeypatch, "--model-name", "st_student")
    again = initial_weights(demo, tmp_path / "c", monkeypatch, "--model-name", "teacher")
    shared = [initial_weights(demo, tmp_path / d, monkeypatch) for d in ("d", "e")]
    head = [k for k in teacher if k.startswith("classifier") or "head" in k or "aspp" in k]
    weights = [k for k in head if k.endswith("weight") and teacher[k].dim() > 1]
    assert weights, sorted(teacher)[:20]
    assert all(not torch.equal(teacher[k], student[k]) for k in weights)  # two models of one run
    assert all(torch.equal(teacher[k], again[k]) for k in teacher)  # the same model of two runs
    assert all(torch.equal(shared[0][k], shared[1][k]) for k in teacher)  # train.init: shared
    assert train.init_seed(3, None) == 3 and train.init_seed(3, "teacher") != train.init_seed(4, "teacher")


@pytest.mark.parametrize(
    "options,pseudo_ops,labeled_ops",
    [
        ([], ("colour_jitter", "grayscale", "blur", "cutout"), None),
        (
            ["--strong", "all"],
            ("colour_jitter", "grayscale", "blur", "cutout"),
            ("colour_jitter", "grayscale", "blur", "cutout"),
        ),
        (["--strong", "none"], None, None),
        (["--no-strong"], None, None),
        (["--strong-ops", "cutout", "blur"], ("blur", "cutout"), None),
        (["--labeled-cutout"], ("colour_jitter", "grayscale", "blur", "cutout"), ("cutout",)),
        (["--strong", "none", "--labeled-cutout"], None, ("cutout",)),
    ],
)
def test_which_images_get_which_strong_augmentation(options, pseudo_ops, labeled_ops):
    """The paper's Table 5 and Figure 2 as trainer options: a student's pseudo-labeled and
    labeled images each get the named strong augmentations; the teacher none, whatever they say."""
    from stages import train

    base = ["--labeled", "l.txt", "--data-root", ".", "--num-classes", "3", "--out-dir", "m"]
    student = train.build_parser().parse_args([*base, "--pseudo", "u.txt", "u.h5", *options])
    pseudo, labeled = train.strong_augmentation(student)
    assert (pseudo and pseudo.ops) == pseudo_ops
    assert (labeled and labeled.ops) == labeled_ops
    teacher = train.build_parser().parse_args([*base, *options])
    assert train.strong_augmentation(teacher) == (None, None)


def test_the_loss_is_the_mean_over_labeled_pixels_and_zero_without_any():
    """A batch whose every pixel is ignored (an unconfident crop of pixel-level selection) gives
    loss 0 and zero gradients, not nan: training goes on. Otherwise PyTorch's mean."""
    from stages.train import segmentation_loss

    logits = torch.randn(2, 3, 4, 4, requires_grad=True)
    masks = torch.randint(0, 3, (2, 4, 4))
    masks[0, :2] = 255
    torch.testing.assert_close(segmentation_loss(logits, masks), F.cross_entropy(logits, masks, ignore_index=255))
    ignored = torch.full((2, 4, 4), 255)
    loss = segmentation_loss(logits, ignored)
    loss.backward()
    assert loss.item() == 0 and torch.equal(logits.grad, torch.zeros_like(logits))
