"""Bad input, each kind: the exit, a message that names the file (and list line) or the config key
and the fix, and no result file written. Through the stages' own ``main([...])``."""

from __future__ import annotations

import errno
import resource
import shutil
import signal
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from helpers import train_args
from PIL import Image

from stages import check_data, evaluate, label, score, train
from stages.seg.files import write_error, write_text
from stages.seg.io import save_model
from stages.seg.models import build_model

REPO = Path(__file__).resolve().parents[1]
C = 3
SIZE = 8


def png(path: Path, array, mode: str | None = None) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(np.asarray(array, dtype=np.uint8), mode).save(path)


@pytest.fixture
def data(tmp_path) -> Path:
    """4 labeled, 3 unlabeled (with audit masks) and 2 val images of 8x8, all valid."""
    root = tmp_path / "data"
    rng = np.random.default_rng(0)
    lists = {"labeled": range(0, 4), "unlabeled": range(4, 7), "val": range(7, 9)}
    for name, ids in lists.items():
        lines = []
        for i in ids:
            png(root / f"img/{i}.png", rng.integers(0, 256, (SIZE, SIZE, 3)))
            png(root / f"gt/{i}.png", rng.integers(0, C, (SIZE, SIZE)))
            lines.append(f"img/{i}.png gt/{i}.png")
        (root / f"{name}.txt").write_text("\n".join(lines) + "\n")
    return root


def run_check(root: Path, capsys, *extra: str, batch_size: int = 2) -> tuple[int, str]:
    """(exit code, log) of stages.check_data on ``root``'s three lists."""
    argv = [
        "--data-root",
        str(root),
        "--labeled",
        str(root / "labeled.txt"),
        "--unlabeled",
        str(root / "unlabeled.txt"),
        "--val",
        str(root / "val.txt"),
        "--num-classes",
        str(C),
        "--batch-size",
        str(batch_size),
        "--min-labeled",
        "4",
        "--out-dir",
        str(root.parent / "check"),
        *extra,
    ]
    try:
        check_data.main(argv)
        code = 0
    except SystemExit as exit_:
        code = exit_.code
    return code, capsys.readouterr().err


def assert_refused(root: Path, capsys, *needles: str, extra=(), batch_size: int = 2) -> str:
    code, log = run_check(root, capsys, *extra, batch_size=batch_size)
    assert code == 1, log
    for needle in needles:
        assert needle in log, f"{needle!r} not in:\n{log}"
    assert not (root.parent / "check").exists()  # nothing written
    return log


def truncate(path: Path, keep: float = 0.5) -> None:
    data = path.read_bytes()
    path.write_bytes(data[: int(len(data) * keep)])


def test_valid_data_passes_and_writes_manifest_and_digests(data, capsys):
    code, log = run_check(data, capsys, "--workers", "2")
    assert code == 0, log
    manifest = (data.parent / "check" / "manifest.tsv").read_text().splitlines()
    assert manifest[0].split("\t") == list(check_data.MANIFEST_COLUMNS)
    assert len(manifest) == 1 + 2 * 9  # an image and a mask per line
    assert "labeled\t1\timage\timg/0.png" in manifest[1]
    digests = {name: (data.parent / "check" / f"{name}.digest").read_text() for name in check_data.LISTS}
    assert len(set(digests.values())) == 4 and digests["test"] == "no test list\n"  # no --test given
    # the digest follows the content: the same bytes give the same digest, another mask another
    Path(data / "gt/7.png").touch()
    run_check(data, capsys)
    assert (data.parent / "check" / "val.digest").read_text() == digests["val"]
    png(data / "gt/7.png", np.zeros((SIZE, SIZE)))
    run_check(data, capsys)
    assert (data.parent / "check" / "val.digest").read_text() != digests["val"]
    assert (data.parent / "check" / "labeled.digest").read_text() == digests["labeled"]


# -- lists ----------------------------------------------------------------------------------


def test_missing_list(data, capsys):
    (data / "val.txt").unlink()
    assert_refused(data, capsys, f"split list not found: {data / 'val.txt'}")


def test_empty_list(data, capsys):
    (data / "unlabeled.txt").write_text("# nothing yet\n\n")
    assert_refused(data, capsys, f"split list {data / 'unlabeled.txt'} is empty")


def test_malformed_line(data, capsys):
    with open(data / "labeled.txt", "a") as f:
        f.write("img/x.png gt/x.png extra\n")
    assert_refused(data, capsys, f"{data / 'labeled.txt'}:5: expected '<image> [<mask>]'")


def test_labeled_line_without_mask(data, capsys):
    (data / "labeled.txt").write_text("img/0.png gt/0.png\nimg/1.png\n")
    assert_refused(data, capsys, f"{data / 'labeled.txt'}:2: img/1.png has no mask path")


def test_val_list_without_masks(data, capsys):
    (data / "val.txt").write_text("img/7.png\nimg/8.png\n")
    log = assert_refused(data, capsys, f"{data / 'val.txt'}:1: img/7.png has no mask path")
    assert f"{data / 'val.txt'}:2" in log  # every problem at once


def test_duplicate_id(data, capsys):
    with open(data / "unlabeled.txt", "a") as f:
        f.write("img/4.png\n")
    assert_refused(data, capsys, f"{data / 'unlabeled.txt'}:4: image img/4.png is listed twice (first on line 1)")


# -- files ----------------------------------------------------------------------------------


@pytest.mark.parametrize("name,line", [("labeled", 2), ("unlabeled", 2), ("val", 2)])
def test_missing_image_in_each_list(data, capsys, name, line):
    image = (data / f"{name}.txt").read_text().splitlines()[line - 1].split()[0]
    (data / image).unlink()
    assert_refused(data, capsys, f"image not found: {data / image} ({data / f'{name}.txt'}:{line})")


def test_missing_mask(data, capsys):
    (data / "gt/1.png").unlink()
    assert_refused(data, capsys, f"mask not found: {data / 'gt/1.png'} ({data / 'labeled.txt'}:2)")


def test_truncated_png_image(data, capsys):
    png(data / "img/5.png", np.random.default_rng(1).integers(0, 256, (64, 64, 3)))  # big enough to cut
    png(data / "gt/5.png", np.zeros((64, 64)))
    truncate(data / "img/5.png")
    assert_refused(data, capsys, f"image {data / 'img/5.png'} ({data / 'unlabeled.txt'}:2) is truncated or corrupt")


def test_truncated_jpeg_image(data, capsys):
    Image.fromarray(np.random.default_rng(1).integers(0, 256, (64, 64, 3), dtype=np.uint8)).save(data / "img/8.jpg")
    png(data / "gt/8.png", np.zeros((64, 64)))
    (data / "val.txt").write_text("img/7.png gt/7.png\nimg/8.jpg gt/8.png\n")
    truncate(data / "img/8.jpg")
    assert_refused(data, capsys, f"image {data / 'img/8.jpg'} ({data / 'val.txt'}:2) is truncated or corrupt")


def test_undecodable_image(data, capsys):
    (data / "img/0.png").write_bytes(b"this is not an image")
    assert_refused(data, capsys, f"image {data / 'img/0.png'} ({data / 'labeled.txt'}:1) cannot be read")


def test_truncated_mask(data, capsys):
    png(data / "img/7.png", np.zeros((64, 64, 3)))
    png(data / "gt/7.png", np.random.default_rng(2).integers(0, C, (64, 64)))
    truncate(data / "gt/7.png")
    assert_refused(data, capsys, f"mask {data / 'gt/7.png'} ({data / 'val.txt'}:1) is truncated or corrupt")


def test_colour_mask(data, capsys):
    png(data / "gt/2.png", np.zeros((SIZE, SIZE, 3)))
    assert_refused(
        data,
        capsys,
        f"mask {data / 'gt/2.png'} ({data / 'labeled.txt'}:3) has mode RGB",
        "for colour masks set data.mask_colors",
    )


def test_class_out_of_range(data, capsys):
    png(data / "gt/3.png", np.full((SIZE, SIZE), 7))
    assert_refused(
        data,
        capsys,
        f"mask {data / 'gt/3.png'} ({data / 'labeled.txt'}:4) has labels [7] outside [0, 3)",
        "data.ignore_labels",
    )
    code, log = run_check(data, capsys, "--ignore-labels", "7")  # an ignore label is fine
    assert code == 0, log


def test_mask_of_another_size(data, capsys):
    png(data / "gt/8.png", np.zeros((SIZE, SIZE + 2)))
    assert_refused(
        data, capsys, f"mask {data / 'gt/8.png'} ({data / 'val.txt'}:2) is 10x8 but its image img/8.png is 8x8"
    )


# -- lists against each other ---------------------------------------------------------------


def test_labeled_image_in_unlabeled_list(data, capsys):
    with open(data / "unlabeled.txt", "a") as f:
        f.write("img/0.png\n")
    assert_refused(
        data,
        capsys,
        f"img/0.png is in the labeled and the unlabeled list ({data / 'labeled.txt'}:1 and {data / 'unlabeled.txt'}:4)",
        "data.allow_labeled_in_unlabeled",
    )
    code, log = run_check(data, capsys, "--allow-labeled-in-unlabeled")  # the config switch: a warning
    assert code == 0 and "WARNING img/0.png is in the labeled and the unlabeled list" in log


def test_labeled_image_in_val_list_is_leakage(data, capsys):
    with open(data / "val.txt", "a") as f:
        f.write("img/1.png gt/1.png\n")
    assert_refused(
        data,
        capsys,
        "img/1.png is in the labeled and the val list",
        "inflates mIoU",
        extra=["--allow-labeled-in-unlabeled"],
    )


def test_same_image_under_another_name_in_val(data, capsys):
    (data / "img/copy.png").write_bytes((data / "img/4.png").read_bytes())
    (data / "gt/copy.png").write_bytes((data / "gt/4.png").read_bytes())
    with open(data / "val.txt", "a") as f:
        f.write("img/copy.png gt/copy.png\n")
    assert_refused(
        data,
        capsys,
        f"img/copy.png ({data / 'val.txt'}:3) has the same bytes as img/4.png ({data / 'unlabeled.txt'}:1)",
        "inflates mIoU",
    )


def test_batch_larger_than_the_teachers_epoch(data, capsys):
    assert_refused(data, capsys, "fewer than one batch (train.batch_size 6)", "train.min_labeled", batch_size=6)


def test_every_problem_at_once(data, capsys):
    (data / "img/0.png").unlink()
    png(data / "gt/5.png", np.full((SIZE, SIZE), 9))
    (data / "img/8.png").write_bytes(b"junk")
    log = assert_refused(data, capsys, "img/0.png", "gt/5.png", "img/8.png", "4 problem(s)")
    assert log.count(" ERROR ") == 5  # the three, the labels' summary line, the count


# -- stages at run time: the same errors, named, where no data check ran --------------------


def train_argv(root: Path, out: Path, *extra: str) -> list[str]:
    return [*train_args(root, out, num_classes=C, crop=SIZE, min_labeled=4, epochs=1), *extra]


def exit_log(main, argv, capsys) -> str:
    with pytest.raises(SystemExit) as exit_:
        main(argv)
    assert exit_.value.code == 1
    return capsys.readouterr().err


def test_training_names_a_truncated_image_and_its_list_line(data, tmp_path, capsys):
    png(data / "img/2.png", np.random.default_rng(1).integers(0, 256, (64, 64, 3)))
    png(data / "gt/2.png", np.zeros((64, 64)))
    truncate(data / "img/2.png")
    log = exit_log(train.main, train_argv(data, tmp_path / "out"), capsys)
    assert f"image {data / 'img/2.png'} ({data / 'labeled.txt'}:3) is truncated or corrupt" in log
    assert not (tmp_path / "out" / "model.pt").exists()


def test_batch_size_larger_than_the_training_set_names_the_key(data, tmp_path, capsys):
    log = exit_log(train.main, train_argv(data, tmp_path / "out", "--batch-size", "8"), capsys)
    assert "fewer than one batch of 8" in log and "train.batch_size" in log


@pytest.fixture
def model_file(tmp_path) -> Path:
    path = tmp_path / "model.pt"
    spec = dict(arch="deeplabv3plus", backbone="resnet18", num_classes=C, output_stride=16, head_channels=8)
    save_model(path, build_model(**spec), spec)
    return path


def test_evaluation_names_a_val_mask_of_another_size(data, model_file, tmp_path, capsys):
    png(data / "gt/8.png", np.zeros((SIZE + 2, SIZE)))
    out = tmp_path / "metrics.json"
    log = exit_log(
        evaluate.main,
        [
            "--model",
            str(model_file),
            "--list",
            str(data / "val.txt"),
            "--data-root",
            str(data),
            "--num-classes",
            str(C),
            "--out",
            str(out),
            "--device",
            "cpu",
        ],
        capsys,
    )
    assert f"mask {data / 'gt/8.png'} ({data / 'val.txt'}:2) is 8x10 but its image img/8.png is 8x8" in log
    assert not out.exists()


def test_labeling_names_an_undecodable_unlabeled_image(data, model_file, tmp_path, capsys):
    (data / "img/6.png").write_bytes(b"\x89PNG\r\n\x1a\n garbage")
    out = tmp_path / "masks.h5"
    log = exit_log(
        label.main,
        [
            "--model",
            str(model_file),
            "--list",
            str(data / "unlabeled.txt"),
            "--data-root",
            str(data),
            "--out",
            str(out),
            "--device",
            "cpu",
            "--no-tta",
        ],
        capsys,
    )
    assert f"image {data / 'img/6.png'} ({data / 'unlabeled.txt'}:3)" in log
    assert not out.exists() and not list(tmp_path.glob(".masks.h5.tmp-*"))


@pytest.mark.parametrize(
    "content,needle",
    [
        (b"\x00" * 1000, "it is not a PyTorch checkpoint"),
        ("pickled", "it holds pickled Python objects"),
        ("truncated", "truncated or corrupt"),
    ],
)
def test_unreadable_checkpoint_names_the_file_and_never_advises_weights_only_false(
    data, model_file, tmp_path, capsys, content, needle
):
    if content == "pickled":
        torch.save(build_model("deeplabv3plus", "resnet18", num_classes=C), model_file)
    elif content == "truncated":
        truncate(model_file)
    else:
        model_file.write_bytes(content)
    out = tmp_path / "scores.tsv"
    log = exit_log(
        score.main,
        [
            "--checkpoints",
            str(model_file),
            str(model_file),
            "--list",
            str(data / "unlabeled.txt"),
            "--data-root",
            str(data),
            "--num-classes",
            str(C),
            "--scores",
            str(out),
            "--masks",
            str(tmp_path / "m.h5"),
            "--device",
            "cpu",
        ],
        capsys,
    )
    assert f"cannot load model checkpoint {model_file}: {needle}" in log
    assert "weights_only" not in log
    assert not out.exists()


def test_pretrained_weights_of_random_bytes(data, tmp_path, capsys):
    weights = tmp_path / "resnet18.pth"
    weights.write_bytes(np.random.default_rng(0).bytes(5000))
    log = exit_log(train.main, train_argv(data, tmp_path / "out", "--pretrained", str(weights)), capsys)
    assert f"cannot load pretrained weights (a resnet18 ImageNet state dict) {weights}" in log
    assert "weights_only" not in log


def test_missing_pretrained_weights_name_the_file_and_the_key(data, tmp_path):
    with pytest.raises(FileNotFoundError, match=r"not found: '/nowhere/r18.pth'. Set the config key `pretrained`"):
        train.main(train_argv(data, tmp_path / "out", "--pretrained", "/nowhere/r18.pth"))
    assert not (tmp_path / "out" / "model.pt").exists()


def test_wrong_class_checkpoint_is_refused(data, model_file, tmp_path):
    with pytest.raises(ValueError, match=rf"{model_file} is a model for 3 classes, but 5 were asked for"):
        label.main(
            [
                "--model",
                str(model_file),
                "--list",
                str(data / "unlabeled.txt"),
                "--data-root",
                str(data),
                "--out",
                str(tmp_path / "m.h5"),
                "--num-classes",
                "5",
                "--device",
                "cpu",
            ]
        )
    assert not (tmp_path / "m.h5").exists()


def test_bad_device_names_the_key(data, tmp_path):
    with pytest.raises(ValueError, match=r"device 'gpu' is not one of .*device in the config"):
        train.main(train_argv(data, tmp_path / "out", "--device", "gpu"))


# -- writes that the file system refuses -----------------------------------------------------


def test_a_full_disk_names_the_path(data, tmp_path):
    """A real refused write: the training job under a file-size limit (ulimit -f), which fails
    like a full disk once the resume state (megabytes) is written."""
    out = tmp_path / "out"

    def limit():
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # EFBIG instead of a kill
        resource.setrlimit(resource.RLIMIT_FSIZE, (200_000, 200_000))

    argv = train_argv(data, out, "--resume-state", str(out / "resume" / "state.pt"))
    proc = subprocess.run(
        [sys.executable, "-m", "stages.train", *argv],
        cwd=REPO,
        capture_output=True,
        text=True,
        preexec_fn=limit,
        timeout=300,
    )
    assert proc.returncode != 0
    assert f"cannot write {out / 'resume' / 'state.pt'}: File too large" in proc.stderr
    assert "unexpected pos" not in proc.stderr.splitlines()[-1]
    assert not (out / "model.pt").exists() and not list((out / "resume").glob(".*tmp-*"))


@pytest.mark.parametrize(
    "code,fix", [(errno.ENOSPC, "the disk is full"), (errno.EROFS, "read-only"), (errno.EDQUOT, "quota")]
)
def test_write_errors_name_the_path_and_the_fix(tmp_path, code, fix):
    err = write_error(tmp_path / "x.pt", OSError(code, "refused"))
    assert str(tmp_path / "x.pt") in str(err) and fix in str(err) and err.errno == code
    # h5py's wording of a full disk counts too
    assert write_error(tmp_path / "m.h5", OSError(f"Can't write data (file write failed: errno = {code}, "))


def test_a_read_only_folder_names_the_path(tmp_path, monkeypatch):
    """Root ignores permissions, so the refusal is a fault hook here: the rename fails as on a
    read-only file system."""

    def refuse(src, dst):
        raise OSError(errno.EROFS, "Read-only file system", str(dst))

    monkeypatch.setattr("stages.seg.files.os.replace", refuse)
    with pytest.raises(OSError, match=rf"cannot write {tmp_path / 'a.txt'}: Read-only file system.*writable folder"):
        write_text(tmp_path / "a.txt", "x")
    assert list(tmp_path.iterdir()) == []


def test_a_test_list_is_checked_as_val_and_shares_no_image(data, capsys):
    """data.test: its lines need masks, its files are decoded, and an image it shares with the
    labeled, unlabeled or val list is refused; without it the digest says there is none."""
    code, log = run_check(data, capsys)
    assert code == 0 and (data.parent / "check" / "test.digest").read_text() == "no test list\n"
    shutil.rmtree(data.parent / "check")
    (data / "test.txt").write_text("img/8.png gt/8.png\n")  # 8 is a val image
    assert_refused(
        data,
        capsys,
        "img/8.png is in the val and the test list",
        "settings tuned on val",
        extra=["--test", str(data / "test.txt")],
    )
    (data / "test.txt").write_text("img/1.png gt/1.png\n")  # a labeled one
    assert_refused(
        data,
        capsys,
        "img/1.png is in the labeled and the test list",
        "inflates mIoU",
        extra=["--test", str(data / "test.txt")],
    )
    (data / "test.txt").write_text("img/9.png\n")  # no mask, and no such image
    assert_refused(data, capsys, "test list", "img/9.png", extra=["--test", str(data / "test.txt")])


def test_a_jpeg_mask_is_refused_by_name(data, capsys):
    """A JPEG's lossy edges invent class indices; the check once suggested widening num_classes."""
    mask = np.array(Image.open(data / "gt/1.png"))
    Image.fromarray(mask.astype(np.uint8)).save(data / "gt/1.jpg", format="JPEG")
    (data / "labeled.txt").write_text((data / "labeled.txt").read_text().replace("gt/1.png", "gt/1.jpg"))
    assert_refused(data, capsys, "gt/1.jpg (", "is a JPEG file", "save masks as PNG")


@pytest.mark.parametrize("orientation", [3, 6])
def test_an_image_with_an_exif_turn_is_refused_by_name(data, capsys, orientation):
    """Orientation 3 (upside down) passed silently once, and 6 gave only a size mismatch."""
    image = Image.open(data / "img/2.png").convert("RGB")
    exif = Image.Exif()
    exif[0x0112] = orientation
    image.save(data / "img/2.jpg", format="JPEG", exif=exif.tobytes())
    (data / "labeled.txt").write_text((data / "labeled.txt").read_text().replace("img/2.png", "img/2.jpg"))
    assert_refused(data, capsys, "img/2.jpg (", f"has EXIF orientation {orientation}", "exif_transpose")


def test_a_crop_much_larger_than_the_labeled_images_is_a_warning_naming_the_key(data, capsys):
    code, log = run_check(data, capsys, "--crop-size", "8")
    assert code == 0 and "crop_size" not in log
    code, log = run_check(data, capsys, "--crop-size", "64", "--scale-range", "0.5", "2.0")
    assert code == 0, log  # correct, only slow: a warning
    assert "WARNING" in log and "train.crop_size 64 is large" in log and "lower train.crop_size to about 10" in log
    assert "covers 2% of a crop" in log and "41.0x the computation" in log  # 10x10 of 64x64 pixels


# -- the review (review.exclude, review.masks) ---------------------------------------------


def test_the_review_is_checked_with_the_lists_and_has_a_digest_of_its_own(data, capsys):
    masks = data / "review_masks" / "img"
    masks.mkdir(parents=True)
    png(masks / "4.png", np.zeros((SIZE, SIZE)))
    (data / "exclude.txt").write_text("# the teacher's dogs\nimg/5.png\n")
    review = ("--review-exclude", str(data / "exclude.txt"), "--review-masks", str(data / "review_masks"))
    code, log = run_check(data, capsys, *review)
    assert code == 0, log
    digest = (data.parent / "check" / "review.digest").read_text()
    others = {n: (data.parent / "check" / f"{n}.digest").read_text() for n in ("labeled", "unlabeled")}
    png(masks / "4.png", np.ones((SIZE, SIZE)))  # one corrected mask edited: only review.digest changes
    run_check(data, capsys, *review)
    assert (data.parent / "check" / "review.digest").read_text() != digest
    assert {n: (data.parent / "check" / f"{n}.digest").read_text() for n in others} == others
    run_check(data, capsys)
    assert (data.parent / "check" / "review.digest").read_text() == "no review\n"


@pytest.mark.parametrize(
    "case, needles",
    [
        ("excluded unknown", ["review.exclude", "exclude.txt:1: img/9.png is not in the unlabeled list"]),
        ("mask of no image", ["review.masks:", "img/9.png names no image of the unlabeled list"]),
        ("jpeg mask", ["review.masks:", "4.jpg is not a .png file and would be ignored"]),
        ("excluded and corrected", ["review: img/4.png is both excluded", "keep one of the two"]),
        ("wrong size", ["corrected mask", "is 4x4 but its image img/4.png is 8x8"]),
        ("colour", ["has mode RGB"]),
    ],
)
def test_a_bad_review_is_refused_by_name(data, capsys, case, needles):
    masks = data / "review_masks" / "img"
    masks.mkdir(parents=True)
    (data / "exclude.txt").write_text("img/5.png\n")
    if case == "excluded unknown":
        (data / "exclude.txt").write_text("img/9.png\n")
    elif case == "mask of no image":
        png(masks / "9.png", np.zeros((SIZE, SIZE)))
    elif case == "jpeg mask":
        Image.fromarray(np.zeros((SIZE, SIZE), np.uint8)).save(masks / "4.jpg", format="JPEG")
    elif case == "excluded and corrected":
        png(masks / "5.png", np.zeros((SIZE, SIZE)))
        (data / "exclude.txt").write_text("img/4.png\n")
        png(masks / "4.png", np.zeros((SIZE, SIZE)))
    elif case == "wrong size":
        png(masks / "4.png", np.zeros((4, 4)))
    else:
        png(masks / "4.png", np.zeros((SIZE, SIZE, 3)))
    review = ("--review-exclude", str(data / "exclude.txt"), "--review-masks", str(data / "review_masks"))
    assert_refused(data, capsys, *needles, extra=review)


# -- what the masks mean: label maps, classes no mask holds, values out of range -------------------


def rewrite_masks(root: Path, ids, values) -> None:
    """The masks of images ``ids``, redrawn from ``values`` (random, seeded)."""
    rng = np.random.default_rng(1)
    for i in ids:
        png(root / f"gt/{i}.png", rng.choice(values, (SIZE, SIZE)))


def test_binary_masks_stored_as_0_and_255_are_refused_with_the_label_map_that_fixes_them(data, capsys):
    """The usual foreground/background format: 255 is ignore, so the foreground class was in no
    mask, every model trained on background alone and the summary printed mIoU 100.00."""
    rewrite_masks(data, range(9), [0, 255])
    assert_refused(data, capsys, "class 1 (1) has no pixel", "data.label_map: {255: 1}", extra=("--num-classes", "2"))
    code, log = run_check(data, capsys, "--num-classes", "2", "--label-map", "255:1")
    assert code == 0, log
    assert "has no pixel" not in log


def test_a_class_in_no_labeled_and_no_val_mask_is_refused_and_one_in_val_only_is_a_warning(data, capsys):
    names = ("--class-names", "road", "car", "dog")
    rewrite_masks(data, [*range(0, 4), 7, 8], [0, 1])  # labeled and val: no dog
    assert_refused(data, capsys, "class 2 (dog) has no pixel in any labeled mask", "nor in any val mask", extra=names)
    rewrite_masks(data, [7, 8], [0, 1, 2])  # a dog in val only: a split may lack a rare class
    code, log = run_check(data, capsys, *names)
    assert code == 0, log
    assert "WARNING class 2 (dog) has no pixel in any labeled mask" in log


def test_labels_out_of_range_end_with_one_line_of_the_largest_value_and_the_fix(data, capsys):
    rewrite_masks(data, [0, 7], [0, 1, 20])
    log = assert_refused(data, capsys, "in all, 2 mask(s) have labels outside [0, 3)", "the largest 20", "at least 21")
    assert log.count("has labels [20] outside") == 2  # each mask named too
    assert "has no pixel" not in log  # the class findings wait until the values are right


def test_a_label_map_maps_stored_values_wherever_a_mask_is_read(data, capsys, tmp_path):
    """--label-map on the data check and on evaluation: stored 7 is class 2, 9 is ignored."""
    rewrite_masks(data, range(9), [0, 1, 7, 9])
    assert_refused(data, capsys, "labels [7, 9] outside [0, 3)")
    code, log = run_check(data, capsys, "--label-map", "7:2", "9:ignore")
    assert code == 0, log
    spec = dict(arch="deeplabv3plus", backbone="resnet18", num_classes=C, output_stride=16, head_channels=8)
    save_model(tmp_path / "model.pt", build_model(**spec).eval(), spec)
    common = ["--model", str(tmp_path / "model.pt"), "--list", str(data / "val.txt"), "--data-root", str(data)]
    common += ["--num-classes", str(C), "--device", "cpu", "--out", str(tmp_path / "metrics.json")]
    with pytest.raises(SystemExit):
        evaluate.main(common)
    assert "labels [7, 9] outside [0, 3)" in capsys.readouterr().err
    evaluate.main([*common, "--label-map", "7:2", "9:ignore"])
    assert (tmp_path / "metrics.json").exists()
    with pytest.raises(SystemExit):
        evaluate.main([*common, "--label-map", "7=2"])
    assert "write STORED:CLASS" in capsys.readouterr().err


def test_colour_masks_are_read_by_their_palette_and_an_unknown_colour_is_named(data, capsys):
    from stages.seg.palettes import palette

    colours = np.array(palette("camvid")[:C], np.uint8)
    rng = np.random.default_rng(2)
    for i in range(9):
        png(data / f"gt/{i}.png", colours[rng.integers(0, C, (SIZE, SIZE))])
    assert_refused(data, capsys, "has mode RGB", "set data.mask_colors")
    code, log = run_check(data, capsys, "--mask-colors", "camvid")
    assert code == 0, log
    shutil.rmtree(data.parent / "check")
    odd = np.array(Image.open(data / "gt/7.png"))
    odd[:2, :3] = (1, 2, 3)
    png(data / "gt/7.png", odd)
    assert_refused(data, capsys, "gt/7.png", "(1, 2, 3) on 6 pixels", extra=("--mask-colors", "camvid"))


def test_a_list_of_bare_ids_is_refused_with_the_line_format_and_the_list_maker(data, capsys):
    """Pascal VOC's ImageSets lists hold ids; as split lists each was 'image not found' alone."""
    (data / "labeled.txt").write_text("0\n1\n2\n3\n")
    assert_refused(data, capsys, "image not found", "with its folder and extension", "stages.make_lists")
