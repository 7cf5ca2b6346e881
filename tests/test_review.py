"""The review (issue 30) on four 4x4 images of which the teacher calls the cats of both reliable
ones dogs: the audit flags cat, the review sheet shows those images, and stages.review applies
an exclusion and a corrected mask drawn on the sheet's exported mask."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from stages import audit, review, review_sheet
from stages.seg.images import decode_mask
from stages.seg.maskstore import MaskStore, MaskStoreWriter
from stages.seg.palettes import palette
from stages.seg.splits import parse_split_list, png_name, read_split_list

NAMES = ["bg", "cat", "dog"]
CAT, DOG = np.zeros((4, 4), np.uint8), np.zeros((4, 4), np.uint8)
CAT[:2], DOG[:2] = 1, 2


@pytest.fixture
def case(tmp_path) -> Path:
    (tmp_path / "img").mkdir()
    truth = {"a": CAT, "b": CAT, "c": DOG, "d": DOG}
    for name, mask in truth.items():
        Image.fromarray(np.full((4, 4, 3), 200, np.uint8)).save(tmp_path / "img" / f"{name}.jpg")
        Image.fromarray(mask).save(tmp_path / f"{name}_gt.png")
    (tmp_path / "unlabeled.txt").write_text("".join(f"img/{n}.jpg {n}_gt.png\n" for n in "abcd"))
    (tmp_path / "reliable.txt").write_text("img/a.jpg a_gt.png\nimg/b.jpg b_gt.png\n")
    (tmp_path / "unreliable.txt").write_text("img/d.jpg d_gt.png\nimg/c.jpg c_gt.png\n")
    (tmp_path / "scores.tsv").write_text("id\tscore\nimg/a.jpg\t1.9\nimg/b.jpg\t1.8\nimg/c.jpg\t0.5\nimg/d.jpg\t0.7\n")
    with MaskStoreWriter(tmp_path / "teacher.h5") as w:
        for name in "abcd":
            w.write(f"img/{name}.jpg", DOG)  # every cat called a dog
    return tmp_path


def common(root: Path) -> list[str]:
    return [
        "--list",
        str(root / "unlabeled.txt"),
        "--data-root",
        str(root),
        "--num-classes",
        "3",
        "--class-names",
        *NAMES,
        "--teacher-masks",
        str(root / "teacher.h5"),
        "--scores",
        str(root / "scores.tsv"),
        "--reliable",
        str(root / "reliable.txt"),
    ]


def run_audit(root: Path, *extra: str) -> dict:
    audit.main(
        [
            *common(root),
            "--unreliable",
            str(root / "unreliable.txt"),
            *extra,
            "--out-json",
            str(root / "audit.json"),
            "--out-tsv",
            str(root / "per_image.tsv"),
        ]
    )
    return json.loads((root / "audit.json").read_text())


def test_the_audit_flags_the_class_called_another_and_the_sheet_shows_its_reliable_images(case):
    assert run_audit(case)["under_predicted_classes"] == ["cat"]
    out = case / "sheet"
    review_sheet.main([*common(case), "--audit", str(case / "audit.json"), "--size", "1", "--out", str(out)])
    with open(out / "review.tsv", newline="") as f:
        rows = list(csv.DictReader(f, delimiter="\t"))
    assert [r["id"] for r in rows] == ["img/c.jpg", "img/a.jpg", "img/b.jpg"]  # the least stable, then flagged
    assert rows[0]["why"] == "least stable (1)" and rows[1]["why"] == "reliable, shows flagged cat"
    assert rows[1]["reliable"] == "1" and rows[0]["reliable"] == "0"
    assert rows[1]["share_dog"] == "0.500" and rows[1]["share_cat"] == "0.000"
    for folder in ("images", "masks", "overlays"):
        assert (out / folder / png_name("img/a.jpg")).is_file()  # img/a.png: the id's path with .png
    exported = Image.open(out / "masks" / "img" / "a.png")
    assert exported.mode == "P" and np.array_equal(np.array(exported), DOG)  # class indices, a palette
    overlay = np.array(Image.open(out / "overlays" / "img" / "a.png"))
    assert overlay.shape[1:] == (160, 3) and not np.array_equal(overlay[0, 0], [200, 200, 200])
    # below the 4x4 overlay, the legend: a swatch of each class the mask holds (dog's, class 2)
    legend = overlay[4:]
    assert (legend == palette("pascal")[2]).all(-1).sum() >= 100 and not (legend == palette("pascal")[1]).all(-1).any()
    # the id column, rows of the kept images deleted, is an exclusion list
    (case / "exclude.txt").write_text("".join(r["id"] + "\n" for r in rows[1:]))
    samples, problems = parse_split_list(case / "exclude.txt")
    assert not problems and [s.id for s in samples] == ["img/a.jpg", "img/b.jpg"]


def test_review_applies_an_exclusion_and_a_corrected_mask(case):
    masks = case / "masks" / "img"
    masks.mkdir(parents=True)
    Image.fromarray(CAT).save(masks / "b.png")  # the reviewer's fix of b
    (case / "exclude.txt").write_text("# the cat of a, called dog\nimg/a.jpg\n")
    out = case / "review"
    outputs = ["--kept", str(out / "kept_ids.txt"), "--corrected", str(out / "corrected_ids.txt")]
    outputs += ["--corrected-masks", str(out / "corrected.h5")]
    inputs = ["--unlabeled", str(case / "unlabeled.txt"), "--exclude", str(case / "exclude.txt")]
    review.main([*inputs, "--masks", str(case / "masks"), "--num-classes", "3", *outputs])
    assert [s.id for s in read_split_list(out / "kept_ids.txt")] == ["img/c.jpg", "img/d.jpg"]
    assert (out / "corrected_ids.txt").read_text() == "img/b.jpg b_gt.png\n"  # the unlabeled list's line
    assert np.array_equal(MaskStore(out / "corrected.h5")["img/b.jpg"], CAT)
    assert np.array_equal(decode_mask(masks / "b.png", 3), CAT)
    result = run_audit(case, *outputs)
    assert result["review"]["excluded_ids"] == ["img/a.jpg"] and result["review"]["corrected_ids"] == ["img/b.jpg"]
    assert result["review"]["corrected_masks"]["miou"] == pytest.approx(1.0)  # the fix is the truth
    with open(case / "per_image.tsv", newline="") as f:
        assert [r["review"] for r in csv.DictReader(f, delimiter="\t")] == ["excluded", "corrected", "", ""]
