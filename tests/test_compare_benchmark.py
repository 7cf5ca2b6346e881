"""benchmarks/compare.py: two experiments' models on the same images, paired."""

from __future__ import annotations

import json

import helpers
import pytest
import torch

from stages.evaluate import write_per_image_confusion

compare = helpers.load("compare")


def _experiment(root, name, wrong_images, ids=("a.jpg", "b.jpg", "c.jpg", "d.jpg"), test=False):
    """Per-image matrices of 2 classes, 10 pixels of each an image: every pixel right but on
    ``wrong_images``, where every pixel is taken for the other class."""
    right, wrong = torch.tensor([[10, 0], [0, 10]]), torch.tensor([[0, 10], [10, 0]])
    per_image = {i: (wrong if n in wrong_images else right) for n, i in enumerate(ids)}
    folder = root / name / "stpp_student1"
    write_per_image_confusion(folder / "per_image_confusion.npz", per_image)
    (folder / "metrics.json").write_text(json.dumps({"class_names": ["cat", "dog"]}))
    if test:
        write_per_image_confusion(folder / "test" / "per_image_confusion.npz", per_image)
        (folder / "test" / "metrics.json").write_text(json.dumps({"class_names": ["cat", "dog"]}))
    return root / name


def test_compare_gives_each_gap_with_its_paired_interval(tmp_path):
    # a: 1 of 4 images wrong, IoU of each class 30 / (30 + 10 + 10) = 0.6; b: all right, 1.0
    a = _experiment(tmp_path, "unreviewed", {3}, test=True)
    b = _experiment(tmp_path, "reviewed", set(), test=True)
    rows = compare.compare(a, b, classes=["cat"])
    assert [(r["model"], r["list"], r["images"]) for r in rows] == [
        ("stpp_student1", "val", 4),
        ("stpp_student1", "test", 4),
    ]
    row = rows[0]
    assert row["a"] == pytest.approx(60.0) and row["b"] == pytest.approx(100.0)
    diff, low, high = row["b - a"]
    assert diff == pytest.approx(40.0) and low <= diff <= high
    assert low == pytest.approx(0.0)  # a resample without image 3 makes a and b equal
    assert row["classes"] == {"cat": pytest.approx((60.0, 100.0))}
    text = compare.table(rows, a, b)
    assert "| stpp_student1 | val | 4 | 60.0 | 100.0 | +40.0 [+0.0, +" in text and "60.0 -> 100.0" in text
    # the same model twice: no gap and no width
    assert compare.compare(a, a)[0]["b - a"] == (0.0, 0.0, 0.0)
    # a's model A against b's model B
    (b / "stpp_student1").rename(b / "stpp_student3")
    row = compare.compare(a, b, models=["stpp_student1:stpp_student3"])[0]
    assert row["model"] == "stpp_student1:stpp_student3" and row["b - a"][0] == pytest.approx(40.0)


def test_compare_refuses_other_images_and_unknown_classes(tmp_path):
    a = _experiment(tmp_path, "a", {3})
    b = _experiment(tmp_path, "b", set(), ids=("a.jpg", "b.jpg", "c.jpg", "e.jpg"))
    with pytest.raises(ValueError, match="hold other images"):
        compare.compare(a, b)
    with pytest.raises(ValueError, match="--classes horse: not in"):
        compare.compare(a, a, classes=["horse"])
    with pytest.raises(SystemExit, match="no model of"):
        compare.main([str(a), str(b), "--models", "teacher"])


def test_pairs_are_pooled_over_their_own_images(tmp_path, capsys):
    # pair 1: a has 1 of 4 images wrong (mIoU 60), b none (100); pair 2: a and b alike (60):
    # the mean gap is (40 + 0) / 2 = 20, and a resample of pair 1 without image 3 gives 0
    pair_1 = (_experiment(tmp_path, "s0_a", {3}, test=True), _experiment(tmp_path, "s0_b", set(), test=True))
    pair_2 = (_experiment(tmp_path, "s1_a", {0}, test=True), _experiment(tmp_path, "s1_b", {0}, test=True))
    rows = compare.pooled([pair_1, pair_2])
    assert [(r["model"], r["list"], r["images"]) for r in rows] == [
        ("stpp_student1", "val", 8),
        ("stpp_student1", "test", 8),
    ]
    assert rows[0]["a"] == pytest.approx(60.0) and rows[0]["b"] == pytest.approx(80.0)
    diff, low, high = rows[0]["b - a"]
    assert diff == pytest.approx(20.0) and low == pytest.approx(0.0) and high > diff  # image 3 drawn twice: wider
    compare.main([str(p) for p in (*pair_1, *pair_2)])
    out = capsys.readouterr().out
    assert "Pooled over the 2 pairs" in out and "| stpp_student1 | val | 8 | 60.0 | 80.0 | +20.0 [+0.0, +" in out
    with pytest.raises(SystemExit):
        compare.main([str(p) for p in (*pair_1, pair_2[0])])  # an odd number of experiments


def test_a_record_stands_in_for_its_gone_work_directory(tmp_path):
    # the record of experiment "b" (its methods' per-image matrices, as benchmarks/semisup.py
    # keeps them) against a's results folder: the workflow's model names map onto the methods
    semisup = helpers.load("semisup")
    a = _experiment(tmp_path, "a", {3}, test=True)
    right = torch.tensor([[10, 0], [0, 10]]).numpy()
    ids = ["a.jpg", "b.jpg", "c.jpg", "d.jpg"]
    record = {"settings": {"data": {"class_names": ["cat", "dog"]}, "stpp": {"rounds": 3}}}
    confusion = {"val/ids": ids, "val/ST++ student 1": [right] * 4, "val/ST++ final": [right] * 4}
    semisup.write_record(tmp_path / "records", "b", record, confusion)
    b = tmp_path / "records" / "b.json"
    rows = compare.compare(a, b, models=["stpp_student1", "stpp_student2", "stpp_student3"], classes=["cat"])
    # student 1 on val only (the record has no test matrices); with rounds 3 the final is student 3
    assert [(r["model"], r["list"]) for r in rows] == [("stpp_student1", "val")]
    assert rows[0]["b - a"][0] == pytest.approx(40.0) and rows[0]["classes"] == {"cat": pytest.approx((60.0, 100.0))}
    row = compare.compare(a, b, models=["stpp_student1:stpp_student3"])[0]
    assert row["b"] == pytest.approx(100.0)
    assert compare.compare(b, b, models=["ST++ final"])[0]["b - a"] == (0.0, 0.0, 0.0)  # a method name as it is
