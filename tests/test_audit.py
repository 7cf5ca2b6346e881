"""stages.audit against a hand computation on four 2x2 images."""

from __future__ import annotations

import csv
import json
import math
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from stages import audit
from stages.seg.maskstore import MaskStoreWriter

TRUTH = np.array([[0, 1], [0, 1]], np.uint8)
EXACT, ZEROS = TRUTH, np.zeros((2, 2), np.uint8)


def store(path: Path, masks: dict, confidence: np.ndarray | None = None) -> str:
    with MaskStoreWriter(path) as w:
        for image_id, mask in masks.items():
            w.write(image_id, mask, confidence)
    return str(path)


@pytest.fixture
def case(tmp_path) -> tuple[Path, list[str]]:
    for name in "abcd":
        Image.fromarray(np.zeros((2, 2, 3), np.uint8)).save(tmp_path / f"{name}.png")
        Image.fromarray(TRUTH).save(tmp_path / f"{name}_gt.png")
    (tmp_path / "unlabeled.txt").write_text("".join(f"{n}.png {n}_gt.png\n" for n in "abcd"))
    (tmp_path / "reliable.txt").write_text("a.png a_gt.png\nb.png b_gt.png\n")
    (tmp_path / "unreliable.txt").write_text("d.png d_gt.png\nc.png c_gt.png\n")
    (tmp_path / "scores.tsv").write_text("id\tscore\na.png\t1.9\nb.png\t1.8\nc.png\t0.5\nd.png\t0.7\n")
    argv = [
        "--list",
        str(tmp_path / "unlabeled.txt"),
        "--data-root",
        str(tmp_path),
        "--num-classes",
        "2",
        "--class-names",
        "bg",
        "fg",
        "--teacher-masks",
        store(tmp_path / "t.h5", {"a.png": EXACT, "b.png": EXACT, "c.png": ZEROS, "d.png": ZEROS}),
        "--scores",
        str(tmp_path / "scores.tsv"),
        "--reliable",
        str(tmp_path / "reliable.txt"),
        "--unreliable",
        str(tmp_path / "unreliable.txt"),
        "--relabeled",
        store(tmp_path / "s1.h5", {"c.png": EXACT, "d.png": ZEROS}),
        "--out-json",
        str(tmp_path / "audit" / "audit.json"),
        "--out-tsv",
        str(tmp_path / "audit" / "per_image.tsv"),
    ]
    return tmp_path, argv


def test_audit_matches_a_hand_computation(case):
    root, argv = case
    audit.main(argv)
    result = json.loads((root / "audit" / "audit.json").read_text())
    teacher = result["teacher"]
    # reliable: both exact. unreliable: class 0 TP 4 FP 4 -> 1/2, class 1 TP 0 -> 0
    assert teacher["reliable"]["miou"] == pytest.approx(1.0)
    assert teacher["unreliable"]["iou"] == pytest.approx({"bg": 0.5, "fg": 0.0})
    # all: class 0 TP 8 FP 4 -> 2/3, class 1 TP 4 FN 4 -> 1/2
    assert teacher["all"]["miou"] == pytest.approx((2 / 3 + 1 / 2) / 2)
    # 16 pixels, half of them fg in the truth; the teacher calls 4 fg (a and b), 12 bg
    assert teacher["all"]["pixel_share"] == {"truth": {"bg": 0.5, "fg": 0.5}, "pseudo_masks": {"bg": 0.75, "fg": 0.25}}
    assert teacher["unreliable"]["pixel_share"]["pseudo_masks"] == {"bg": 1.0, "fg": 0.0}
    # student 1 gets c right: class 0 TP 4 FP 2 -> 2/3, class 1 TP 2 FN 2 -> 1/2
    assert result["student1_relabel"]["unreliable"]["miou"] == pytest.approx(7 / 12)
    assert result["student1_relabel"]["unreliable"]["pixel_share"]["pseudo_masks"] == {"bg": 0.75, "fg": 0.25}
    assert result["relabel_gain"] == pytest.approx(7 / 12 - 1 / 4)
    # ranks of the scores 4 3 1 2 against per-image mIoU 1 1 .25 .25: r = 4 / sqrt(5 * 4)
    assert result["spearman_score_vs_miou"] == pytest.approx(4 / math.sqrt(20))
    assert result["not_measured"] == ["confident vs unconfident pixels: the teacher's masks hold no confidences"]
    assert result["ground_truth"] is True

    with open(root / "audit" / "per_image.tsv", newline="") as f:
        rows = {r["id"]: r for r in csv.DictReader(f, delimiter="\t")}
    assert list(rows) == ["a.png", "b.png", "c.png", "d.png"]
    assert (rows["a.png"]["reliable"], rows["c.png"]["reliable"]) == ("1", "0")
    assert float(rows["c.png"]["teacher_miou"]) == pytest.approx(0.25)
    assert float(rows["c.png"]["student1_miou"]) == pytest.approx(1.0) and rows["a.png"]["student1_miou"] == ""


def test_the_log_names_the_classes_the_pseudo_masks_under_predict(case, capsys):
    root, argv = case
    teacher = argv.index("--teacher-masks") + 1  # only a of the four images gets its fg pixels
    argv[teacher] = store(root / "t_rare.h5", {"a.png": EXACT, "b.png": ZEROS, "c.png": ZEROS, "d.png": ZEROS})
    audit.main(argv)
    share = json.loads((root / "audit" / "audit.json").read_text())["teacher"]["all"]["pixel_share"]
    assert share["pseudo_masks"] == {"bg": 0.875, "fg": 0.125}
    log = capsys.readouterr().err
    assert "under-predict (pixel share against the truth): fg 0.25x\n" in log  # bg, over-predicted, is not named


def test_audit_without_ground_truth_says_what_it_could_not_measure(case):
    root, argv = case
    (root / "unlabeled.txt").write_text("".join(f"{n}.png\n" for n in "abcd"))
    audit.main(argv)
    result = json.loads((root / "audit" / "audit.json").read_text())
    assert result["ground_truth"] is False and "teacher" not in result
    assert "4 of 4 lines" in result["not_measured"][0] and "unlabeled.txt" in result["not_measured"][0]
    rows = (root / "audit" / "per_image.tsv").read_text().splitlines()
    assert rows[1].split("\t")[:3] == ["a.png", "1.900000", "1"]


def test_confident_and_unconfident_pixels_match_a_hand_computation(case):
    """stpp.selection pixel's view (the paper's Table 8): the teacher is confident on the left
    column (truth bg) and not on the right (truth fg); student 1 relabels every image."""
    root, argv = case
    sure = np.array([[255, 0], [255, 127]], np.uint8)  # 127 < round(255 x 0.5) = 128
    masks = {"a.png": EXACT, "b.png": EXACT, "c.png": ZEROS, "d.png": ZEROS}
    argv[argv.index("--teacher-masks") + 1] = store(root / "t_conf.h5", masks, sure)
    relabel = {"a.png": ZEROS, "b.png": EXACT, "c.png": EXACT, "d.png": EXACT}
    argv[argv.index("--relabeled") + 1] = store(root / "s1_all.h5", relabel)
    audit.main([*argv, "--pixel-threshold", "0.5"])
    result = json.loads((root / "audit" / "audit.json").read_text())
    assert result["confident_pixel_share"] == 0.5 and result["pixel_threshold"] == 0.5
    # confident: 8 bg pixels, all right (fg absent: no IoU)
    assert result["teacher"]["confident_pixels"]["iou"] == {"bg": 1.0, "fg": None}
    # unconfident: 8 fg pixels, a and b right: fg TP 4 FN 4 -> 1/2, bg TP 0 FP 4 -> 0
    assert result["teacher"]["unconfident_pixels"]["iou"] == pytest.approx({"bg": 0.0, "fg": 0.5})
    # the relabel gets b, c, d right: fg TP 6 FN 2 -> 3/4
    assert result["student1_relabel"]["unconfident_pixels"]["iou"] == pytest.approx({"bg": 0.0, "fg": 0.75})
    assert result["pixel_relabel_gain"] == pytest.approx(0.375 - 0.25)
    assert result["not_measured"] == []
