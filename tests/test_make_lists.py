"""stages.make_lists: the workflow's split lists from a folder layout (Pascal VOC's, or a plain
images + masks folder), checked by the data check as the workflow checks them."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from stages import check_data, make_lists
from stages.seg.palettes import flat, palette
from stages.seg.splits import read_split_list


def voc(root: Path, n: int = 12) -> Path:
    """A Pascal-VOC-style folder: JPEGImages/*.jpg, SegmentationClass/*.png (palette PNGs with
    the 255 outline), ImageSets/Segmentation/train.txt and val.txt of ids."""
    rng = np.random.default_rng(0)
    (root / "JPEGImages").mkdir(parents=True)
    (root / "SegmentationClass").mkdir()
    (root / "ImageSets" / "Segmentation").mkdir(parents=True)
    ids = [f"2007_{i:06d}" for i in range(n)]
    for i, image_id in enumerate(ids):
        Image.fromarray(rng.integers(0, 256, (16, 16, 3), dtype=np.uint8)).save(root / "JPEGImages" / f"{image_id}.jpg")
        mask = np.full((16, 16), i % 3, np.uint8)
        mask[0] = 255  # the outline
        png = Image.fromarray(mask, "P")
        png.putpalette(flat(palette("pascal")))
        png.save(root / "SegmentationClass" / f"{image_id}.png")
    sets = root / "ImageSets" / "Segmentation"
    (sets / "train.txt").write_text("".join(f"{i}\n" for i in ids[:9]))
    (sets / "val.txt").write_text("".join(f"{i}\n" for i in ids[9:]))
    return root


def check(root: Path, out: Path, capsys) -> str:
    argv = ["--data-root", str(root), "--num-classes", "3", "--batch-size", "2", "--min-labeled", "2"]
    argv += ["--out-dir", str(out.parent / "check"), "--crop-size", "16"]
    for name in ("labeled", "unlabeled", "val"):
        argv += [f"--{name}", str(out / f"{name}.txt")]
    check_data.main(argv)
    return capsys.readouterr().err


def test_a_voc_style_folder_becomes_lists_that_pass_the_data_check(tmp_path, capsys):
    root = voc(tmp_path / "VOC")
    out = root / "splits" / "1_4"
    make_lists.main(
        ["--root", str(root), "--images", "JPEGImages", "--masks", "SegmentationClass"]
        + ["--ids", "ImageSets/Segmentation/train.txt", "--val-ids", "ImageSets/Segmentation/val.txt"]
        + ["--labeled", "1/4", "--seed", "0", "--out", str(out)]
    )
    labeled, unlabeled, val = (read_split_list(out / f"{n}.txt") for n in ("labeled", "unlabeled", "val"))
    assert len(labeled) == 2 and len(unlabeled) == 7 and len(val) == 3  # round(9 / 4) of train.txt's 9
    assert labeled[0].line().startswith("JPEGImages/2007_") and labeled[0].mask.startswith("SegmentationClass/")
    assert not {s.id for s in labeled} & {s.id for s in unlabeled}
    assert all(s.mask for s in unlabeled)  # kept for the audit
    assert "data check passed" in check(root, out, capsys)
    again = tmp_path / "again"
    make_lists.main(
        ["--root", str(root), "--images", "JPEGImages", "--masks", "SegmentationClass"]
        + ["--ids", "ImageSets/Segmentation/train.txt", "--val-ids", "ImageSets/Segmentation/val.txt"]
        + ["--labeled", "1/4", "--seed", "0", "--out", str(again)]
    )
    assert (again / "labeled.txt").read_text() == (out / "labeled.txt").read_text()  # seeded


def test_a_plain_folder_draws_val_and_keeps_byte_identical_images_together(tmp_path):
    root = tmp_path / "mine"
    rng = np.random.default_rng(1)
    for folder in ("images", "masks"):
        (root / folder).mkdir(parents=True)
    for i in range(10):
        Image.fromarray(rng.integers(0, 256, (8, 8, 3), dtype=np.uint8)).save(root / "images" / f"a{i}.png")
        Image.fromarray(np.full((8, 8), i % 2, np.uint8)).save(root / "masks" / f"a{i}.png")
    (root / "images" / "copy_of_a3.png").write_bytes((root / "images" / "a3.png").read_bytes())
    (root / "masks" / "copy_of_a3.png").write_bytes((root / "masks" / "a3.png").read_bytes())
    for seed in range(6):
        out = tmp_path / f"splits{seed}"
        make_lists.main(
            ["--root", str(root), "--images", "images", "--masks", "masks", "--val", "3", "--labeled", "2"]
            + ["--seed", str(seed), "--out", str(out)]
        )
        where = {s.id: name for name in ("labeled", "unlabeled", "val") for s in read_split_list(out / f"{name}.txt")}
        assert len(where) == 11
        assert where["images/a3.png"] == where["images/copy_of_a3.png"]  # never split apart


def test_an_id_without_an_image_and_a_path_with_a_space_are_named_before_anything_is_written(tmp_path):
    root = voc(tmp_path / "VOC")
    sets = root / "ImageSets" / "Segmentation"
    (sets / "train.txt").write_text("2007_000000\n2007_999999\n")
    (root / "JPEGImages" / "2007_000001.jpg").rename(root / "JPEGImages" / "with space.jpg")
    (root / "SegmentationClass" / "2007_000001.png").rename(root / "SegmentationClass" / "with space.png")
    (sets / "val.txt").write_text("with space\n")
    with pytest.raises(SystemExit):
        make_lists.main(
            ["--root", str(root), "--images", "JPEGImages", "--masks", "SegmentationClass"]
            + ["--ids", str(sets / "train.txt"), "--val-ids", str(sets / "val.txt"), "--labeled", "1"]
            + ["--out", str(tmp_path / "out")]
        )
    assert not (tmp_path / "out").exists()
