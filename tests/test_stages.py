"""End to end through the stage CLIs' ``main([...])`` on a tiny synthetic data set.

One teacher is trained per module (3 epochs, K = 3 checkpoints); labeling, scoring, splitting,
evaluation, summarising and a student training all reuse it.
"""

from __future__ import annotations

import csv
import json
import math
from pathlib import Path

import numpy as np
import pytest
import torch
from helpers import train_args
from PIL import Image

from stages import evaluate, label, merge_masks, merge_scores, score, split, summarize, train
from stages.make_demo import CLASS_NAMES, make_demo
from stages.seg import speed
from stages.seg.data import read_image
from stages.seg.inference import predict
from stages.seg.io import load_model
from stages.seg.maskstore import MaskStore
from stages.seg.metrics import stability_score

C = len(CLASS_NAMES)
H = W = 32
TTA_SCALES = ["0.5", "1.0"]
# the teacher's K = 3 checkpoints, relative to its --out-dir, the final model last
CHECKPOINTS = ("checkpoints/checkpoint_1.pt", "checkpoints/checkpoint_2.pt", "model.pt")


@pytest.fixture(scope="module")
def work(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("stages")


@pytest.fixture(scope="module")
def demo(work) -> Path:
    root = work / "data"
    make_demo(root, num_labeled=4, num_unlabeled=6, num_val=3, size=(H, W))
    return root


def lines(path: Path) -> list[str]:
    return path.read_text().splitlines()


def read_tsv(path: Path) -> list[dict]:
    with open(path, newline="") as f:
        return list(csv.DictReader(f, delimiter="\t"))


def image_ids(demo: Path, split_name: str) -> list[str]:
    return [line.split()[0] for line in lines(demo / f"{split_name}.txt")]


def run_train(demo: Path, out: Path, *extra: str) -> Path:
    train.main([*train_args(demo, out, num_classes=C, crop=H), *extra])
    return out


def run_label(demo: Path, model: Path, out: Path, *extra: str) -> Path:
    label.main(
        [
            "--model",
            str(model),
            "--list",
            str(demo / "unlabeled.txt"),
            "--data-root",
            str(demo),
            "--out",
            str(out),
            "--device",
            "cpu",
            "--batch-size",
            "4",
            *extra,
        ]
    )
    return out


def run_evaluate(demo: Path, model: Path, out: Path, *extra: str) -> dict:
    evaluate.main(
        [
            "--model",
            str(model),
            "--list",
            str(demo / "val.txt"),
            "--data-root",
            str(demo),
            "--num-classes",
            str(C),
            "--class-names",
            *CLASS_NAMES,
            "--out",
            str(out),
            "--device",
            "cpu",
            *extra,
        ]
    )
    return json.loads(out.read_text())


@pytest.fixture(scope="module")
def teacher(demo, work) -> Path:
    return run_train(demo, work / "teacher", "--epochs", "3", "--checkpoints", "3")


@pytest.fixture(scope="module")
def pseudo_store(demo, teacher, work) -> Path:
    return run_label(demo, teacher / "model.pt", work / "pseudo.h5", "--scales", *TTA_SCALES, "--flip")


@pytest.fixture(scope="module")
def scored(demo, teacher, work) -> tuple[Path, Path]:
    tsv, masks = work / "stability_scores.tsv", work / "checkpoint_masks.h5"
    score.main(
        [
            "--checkpoints",
            *(str(teacher / c) for c in CHECKPOINTS),
            "--list",
            str(demo / "unlabeled.txt"),
            "--data-root",
            str(demo),
            "--num-classes",
            str(C),
            "--scores",
            str(tsv),
            "--masks",
            str(masks),
            "--device",
            "cpu",
            "--batch-size",
            "4",
        ]
    )
    return tsv, masks


@pytest.fixture(scope="module")
def reliable_split(demo, scored, work) -> tuple[Path, Path]:
    reliable, unreliable = work / "reliable_ids.txt", work / "unreliable_ids.txt"
    split.main(
        [
            "--scores",
            str(scored[0]),
            "--list",
            str(demo / "unlabeled.txt"),
            "--ratio",
            "0.5",
            "--reliable",
            str(reliable),
            "--unreliable",
            str(unreliable),
        ]
    )
    return reliable, unreliable


def same_weights(a: torch.nn.Module, b: torch.nn.Module) -> bool:
    sa, sb = a.state_dict(), b.state_dict()
    return sa.keys() == sb.keys() and all(torch.equal(sa[k], sb[k]) for k in sa)


def test_teacher_outputs(teacher):
    models = [load_model(teacher / name) for name in CHECKPOINTS]
    assert not (teacher / "checkpoints" / "checkpoint_3.pt").exists()  # the K-th checkpoint is model.pt
    assert all(not m.training for m in models)
    assert [torch.load(teacher / n, weights_only=True)["epoch"] for n in CHECKPOINTS] == [1, 2, 3]
    # training went on between the checkpoints
    assert not same_weights(models[0], models[1]) and not same_weights(models[1], models[2])
    rows = read_tsv(teacher / "train_log.tsv")
    assert list(rows[0]) == [
        "epoch",
        "iterations",
        "loss",
        "lr",
        "seconds",
        "images_per_s",
        "data_wait_share",
        "val_miou",
    ]
    assert all(0 <= float(r["data_wait_share"]) < 1 for r in rows)
    assert [r["epoch"] for r in rows] == ["1", "2", "3"]
    assert [r["iterations"] for r in rows] == ["4", "8", "12"]  # 4 labeled x 2 = 8 images / batch 2
    assert all(math.isfinite(float(r["loss"])) and r["val_miou"] == "" for r in rows)


def test_label_writes_every_unlabeled_id(demo, teacher, pseudo_store):
    store = MaskStore(pseudo_store)
    ids = image_ids(demo, "unlabeled")
    assert sorted(store.ids()) == sorted(ids)
    # the model as labeling prepares it, with the default speed switches
    model = speed.for_inference(
        load_model(teacher / "model.pt"),
        torch.device("cpu"),
        label.build_parser().parse_args(["--model", "m", "--list", "l", "--out", "o"]),
    )
    scales = [float(s) for s in TTA_SCALES]
    for image_id in ids:
        mask = store[image_id]
        assert mask.dtype == np.uint8 and mask.shape == (H, W) and mask.max() < C
    for image_id in ids[:2]:  # the masks are the TTA predictions of the model (two checked)
        image = read_image(demo / image_id)[None]
        assert np.array_equal(store[image_id], predict(model, image, scales=scales, flip=True)[0].numpy())
    attrs = store.attrs
    assert attrs["model"] == str(teacher / "model.pt")
    assert json.loads(attrs["tta_scales"]) == scales and bool(attrs["tta_flip"])
    store.close()


def test_speed_switches_leave_the_pseudo_masks_as_they_were(demo, teacher, pseudo_store, tmp_path):
    plain = run_label(
        demo,
        teacher / "model.pt",
        tmp_path / "plain.h5",
        "--scales",
        *TTA_SCALES,
        "--flip",
        "--no-fold-batch-norm",
        "--channels-last",
        "off",
    )
    a, b = MaskStore(plain), MaskStore(pseudo_store)
    same = [np.mean(a[i] == b[i]) for i in a.ids()]
    a.close(), b.close()
    assert np.mean(same) > 0.999  # the same function up to float rounding


def test_label_shards_merge_to_the_unsharded_store(demo, teacher, pseudo_store, tmp_path):
    shards = [
        run_label(
            demo,
            teacher / "model.pt",
            tmp_path / f"shard_{i}.h5",
            "--scales",
            *TTA_SCALES,
            "--shard",
            str(i),
            "--num-shards",
            "2",
        )
        for i in range(2)
    ]
    ids = image_ids(demo, "unlabeled")
    assert sorted(MaskStore(shards[0]).ids()) == sorted(ids[0::2])
    assert sorted(MaskStore(shards[1]).ids()) == sorted(ids[1::2])
    merged = tmp_path / "merged.h5"
    merge_masks.main(["--out", str(merged), *map(str, shards)])
    whole, joined = MaskStore(pseudo_store), MaskStore(merged)
    assert sorted(joined.ids()) == sorted(ids)
    for image_id in ids:
        assert np.array_equal(joined[image_id], whole[image_id]), image_id
    assert "shard" not in joined.attrs and joined.attrs["model"] == whole.attrs["model"]
    with pytest.raises(ValueError, match="shard"):
        run_label(demo, teacher / "model.pt", tmp_path / "bad.h5", "--shard", "2", "--num-shards", "2")


def test_score(demo, teacher, scored):
    tsv, masks = scored
    rows = read_tsv(tsv)
    assert list(rows[0]) == ["id", "score", "miou_1", "miou_2"]
    assert [r["id"] for r in rows] == image_ids(demo, "unlabeled")
    store = MaskStore(masks)
    final = load_model(teacher / "model.pt")
    for r in rows:
        per_ckpt = store[r["id"]]
        assert per_ckpt.shape == (3, H, W) and per_ckpt.dtype == np.uint8 and per_ckpt.max() < C
        m1, m2 = float(r["miou_1"]), float(r["miou_2"])
        assert 0.0 <= m1 <= 1.0 and 0.0 <= m2 <= 1.0
        assert float(r["score"]) == pytest.approx(m1 + m2, abs=2e-6)
        s, ious = stability_score(list(per_ckpt), C)
        assert float(r["score"]) == pytest.approx(s, abs=1e-6) and [m1, m2] == pytest.approx(ious, abs=1e-6)
        # no TTA by default; the last mask is the final model's
        assert np.array_equal(per_ckpt[2], predict(final, read_image(demo / r["id"])[None])[0].numpy())
    assert json.loads(store.attrs["tta_scales"]) is None


def test_sharded_scoring_merges_to_the_unsharded_files(demo, teacher, scored, tmp_path):
    """label.shards: 3 splits the K-checkpoint predictions into 3 jobs: a byte-equal TSV, equal masks."""
    shards = []
    for i in range(3):
        shard = tmp_path / f"shard_{i}_of_3"
        score.main(
            [
                "--checkpoints",
                *(str(teacher / c) for c in CHECKPOINTS),
                "--list",
                str(demo / "unlabeled.txt"),
                "--data-root",
                str(demo),
                "--num-classes",
                str(C),
                "--scores",
                f"{shard}.tsv",
                "--masks",
                f"{shard}.h5",
                "--device",
                "cpu",
                "--batch-size",
                "4",
                "--shard",
                str(i),
                "--num-shards",
                "3",
            ]
        )
        shards.append(str(shard))
    tsv, masks = tmp_path / "stability_scores.tsv", tmp_path / "checkpoint_masks.h5"
    merge_scores.main(
        ["--list", str(demo / "unlabeled.txt"), "--scores", str(tsv), "--masks", str(masks), "--shards", *shards]
    )
    assert tsv.read_bytes() == scored[0].read_bytes()
    merged, whole = MaskStore(masks), MaskStore(scored[1])
    assert sorted(merged.ids()) == sorted(whole.ids())
    assert all(np.array_equal(merged[i], whole[i]) for i in whole.ids())
    assert dict(merged.attrs) == {k: v for k, v in whole.attrs.items() if k not in ("shard", "num_shards")}

    with pytest.raises(SystemExit):  # a shard left out is named, not silently missing
        merge_scores.main(
            [
                "--list",
                str(demo / "unlabeled.txt"),
                "--scores",
                str(tmp_path / "x.tsv"),
                "--masks",
                str(tmp_path / "x.h5"),
                "--shards",
                *shards[:2],
            ]
        )
    assert not (tmp_path / "x.tsv").exists()


def test_split_partitions_the_unlabeled_list(demo, scored, reliable_split):
    reliable, unreliable = (lines(p) for p in reliable_split)
    unlabeled = lines(demo / "unlabeled.txt")
    assert len(reliable) == 3 and len(unreliable) == 3  # floor(6 * 0.5)
    assert sorted(reliable + unreliable) == sorted(unlabeled)  # verbatim lines, each once
    scores = {r["id"]: float(r["score"]) for r in read_tsv(scored[0])}
    ranked = [scores[line.split()[0]] for line in reliable + unreliable]
    assert ranked == sorted(ranked, reverse=True)


def test_split_ties_keep_list_order(tmp_path):
    ids = [f"u/{i}.png" for i in range(7)]
    (tmp_path / "u.txt").write_text("".join(f"{i} m/{i}\n" for i in ids))
    values = [0.5, 0.9, 0.5, 0.9, 0.1, 0.5, 0.9]
    (tmp_path / "s.tsv").write_text("id\tscore\n" + "".join(f"{i}\t{v}\n" for i, v in zip(ids, values, strict=True)))
    out = {name: tmp_path / f"{name}.txt" for name in ("reliable", "unreliable")}
    split.main(
        [
            "--scores",
            str(tmp_path / "s.tsv"),
            "--list",
            str(tmp_path / "u.txt"),
            "--ratio",
            "0.5",
            "--reliable",
            str(out["reliable"]),
            "--unreliable",
            str(out["unreliable"]),
        ]
    )
    order = [1, 3, 6, 0, 2, 5, 4]  # descending score, ties in list order; floor(7 * 0.5) = 3 reliable
    assert lines(out["reliable"]) == [f"{ids[i]} m/{ids[i]}" for i in order[:3]]
    assert lines(out["unreliable"]) == [f"{ids[i]} m/{ids[i]}" for i in order[3:]]


def test_split_random_selection_ignores_scores(tmp_path):
    ids = [f"u/{i}.png" for i in range(10)]
    (tmp_path / "u.txt").write_text("".join(f"{i}\n" for i in ids))
    (tmp_path / "s.tsv").write_text("id\tscore\n" + "".join(f"{i}\t{n}\n" for n, i in enumerate(ids)))

    def reliable(seed):
        out = tmp_path / f"r{seed}.txt"
        split.main(
            [
                "--scores",
                str(tmp_path / "s.tsv"),
                "--list",
                str(tmp_path / "u.txt"),
                "--ratio",
                "0.3",
                "--selection",
                "random",
                "--seed",
                str(seed),
                "--reliable",
                str(out),
                "--unreliable",
                str(tmp_path / f"u{seed}.txt"),
            ]
        )
        assert sorted(lines(out) + lines(tmp_path / f"u{seed}.txt")) == sorted(ids)
        return lines(out)

    draws = [reliable(seed) for seed in range(4)]
    assert all(len(d) == 3 for d in draws)
    assert reliable(0) == draws[0]  # a seed gives the same draw again
    assert any(d != ["u/9.png", "u/8.png", "u/7.png"] for d in draws)  # not the top scores
    assert len({tuple(d) for d in draws}) > 1


def val_masks(demo: Path) -> list[np.ndarray]:
    return [np.asarray(Image.open(demo / line.split()[1])) for line in lines(demo / "val.txt")]


def test_evaluate(demo, teacher, tmp_path):
    metrics = run_evaluate(demo, teacher / "model.pt", tmp_path / "metrics.json")
    cm = np.array(metrics["confusion_matrix"])
    assert cm.shape == (C, C)
    assert cm.sum() == 3 * H * W  # the demo masks have no ignored pixels
    assert cm.sum(1).tolist() == np.bincount(np.concatenate([m.ravel() for m in val_masks(demo)]), minlength=C).tolist()
    assert metrics["class_names"] == list(CLASS_NAMES) and list(metrics["iou"]) == list(CLASS_NAMES)
    iou = [np.nan if v is None else v for v in metrics["iou"].values()]
    union = cm.sum(0) + cm.sum(1) - np.diag(cm)
    np.testing.assert_allclose(iou, np.where(union > 0, np.diag(cm) / np.maximum(union, 1), np.nan))
    assert metrics["miou"] == pytest.approx(np.nanmean(iou))
    assert metrics["pixel_accuracy"] == pytest.approx(np.trace(cm) / cm.sum())


def test_evaluate_ignored_pixels_and_sliding_window(demo, teacher, tmp_path):
    # with triangles (3) ignored, the matrix counts only the other pixels
    metrics = run_evaluate(
        demo, teacher / "model.pt", tmp_path / "m.json", "--ignore-labels", "3", "--window", "16", "--stride", "8"
    )
    cm = np.array(metrics["confusion_matrix"])
    assert cm.sum() == sum(int((m != 3).sum()) for m in val_masks(demo))
    assert cm[3].sum() == 0


def test_student_and_summary(demo, teacher, pseudo_store, reliable_split, work, tmp_path, capsys):
    student = run_train(demo, work / "student", "--pseudo", str(reliable_split[0]), str(pseudo_store), "--epochs", "1")
    load_model(student / "model.pt")
    # 4 labeled (ceil(3 / 4) = 1 copy) + 3 reliable pseudo-labeled = 7 images -> 3 batches of 2
    assert [r["iterations"] for r in read_tsv(student / "train_log.tsv")] == ["3"]

    paths = {"SupOnly": tmp_path / "sup.json", "ST++": tmp_path / "stpp.json"}
    metrics = {
        name: run_evaluate(demo, teacher / "model.pt" if name == "SupOnly" else student / "model.pt", p)
        for name, p in paths.items()
    }
    out = tmp_path / "summary.tsv"
    summarize.main(["--out", str(out), *(f"{n}={p}" for n, p in paths.items())])
    rows = read_tsv(out)
    assert [r["method"] for r in rows] == list(paths)
    assert list(rows[0]) == ["method", "miou", *CLASS_NAMES, "miou_classes"]
    for r in rows:
        m = metrics[r["method"]]
        assert r["miou"] == f"{100 * m['miou']:.2f}"
        assert [r[c] for c in CLASS_NAMES] == [
            "nan" if m["iou"][c] is None else f"{100 * m['iou'][c]:.2f}" for c in CLASS_NAMES
        ]
    assert capsys.readouterr().out == out.read_text()


@pytest.mark.parametrize("stage", ["evaluate", "label", "score"])
def test_a_model_for_another_number_of_classes_is_refused(demo, teacher, tmp_path, stage):
    """Asked for 6 classes, a 4-class model used to give a 6 x 6 matrix with two empty rows and
    exit 0; now every stage that loads a model names the file and both numbers, and writes nothing."""
    model = teacher / "model.pt"
    out = tmp_path / "out"
    common = ["--list", str(demo / "val.txt"), "--data-root", str(demo), "--device", "cpu", "--num-classes", "6"]
    with pytest.raises(ValueError, match=rf"{model}.* for {C} classes, but 6 were asked for"):
        if stage == "evaluate":
            evaluate.main(["--model", str(model), "--out", str(out), *common])
        elif stage == "label":
            label.main(["--model", str(model), "--out", str(out), *common])
        else:
            score.main(
                [
                    "--checkpoints",
                    str(model),
                    str(model),
                    "--scores",
                    str(out),
                    "--masks",
                    str(tmp_path / "masks.h5"),
                    *common,
                ]
            )
    assert not list(tmp_path.iterdir())


def test_methods_against_supervised():
    from stages.summarize import against_supervised

    table = "method\tmiou\ta\nSupOnly\t50.00\t50.00\nST\t54.10\t54.10\nST++ final\t49.50\t49.50\n"
    assert against_supervised(table) == [
        "ST: +4.10 mIoU over SupOnly (54.10 against 50.00)",
        "ST++ final: -0.50 mIoU under SupOnly (49.50 against 50.00)",
    ]
    assert against_supervised("method\tmiou\nST\t54.10\n") == []  # no SupOnly row, nothing to compare


def test_select_pixels_keeps_the_confident_pixels_then_fills_in_the_relabel(tmp_path):
    """stpp.selection pixel: student 1's masks are the teacher's confident pixels (the rest 255),
    student 2's those and student 1's relabel elsewhere; shards merge with their confidences."""
    from stages import merge_masks, select_pixels
    from stages.seg.maskstore import MaskStore, MaskStoreWriter

    teacher_mask = np.array([[1, 2], [3, 0]], np.uint8)
    conf = np.array([[200, 128], [127, 0]], np.uint8)  # 128 = round(255 x 0.5): confident
    for i, image_id in enumerate(("x/a.png", "b.png")):
        with MaskStoreWriter(tmp_path / f"t{i}.h5") as w:
            w.write(image_id, teacher_mask, conf)
    merge_masks.main(["--out", str(tmp_path / "t.h5"), str(tmp_path / "t0.h5"), str(tmp_path / "t1.h5")])
    merged = MaskStore(tmp_path / "t.h5")
    assert sorted(merged.ids()) == ["b.png", "x/a.png"] and len(merged) == 2
    assert np.array_equal(merged.confidence("x/a.png"), conf)
    with MaskStoreWriter(tmp_path / "r.h5") as w:
        for image_id in ("x/a.png", "b.png"):
            w.write(image_id, np.full((2, 2), 4, np.uint8))
    teacher = str(tmp_path / "t.h5")
    select_pixels.main(["--teacher", teacher, "--threshold", "0.5", "--out", str(tmp_path / "c.h5")])
    select_pixels.main(
        [
            "--teacher",
            teacher,
            "--relabel",
            str(tmp_path / "r.h5"),
            "--threshold",
            "0.5",
            "--out",
            str(tmp_path / "m.h5"),
        ]
    )
    assert np.array_equal(MaskStore(tmp_path / "c.h5")["b.png"], [[1, 2], [255, 255]])
    assert np.array_equal(MaskStore(tmp_path / "m.h5")["x/a.png"], [[1, 2], [4, 4]])
    with MaskStoreWriter(tmp_path / "old.h5") as w:  # a store written before confidences were
        w.write("b.png", teacher_mask)
    with pytest.raises(ValueError, match="holds no confidences .* re-run the teacher's labeling"):
        select_pixels.main(["--teacher", str(tmp_path / "old.h5"), "--out", str(tmp_path / "x.h5")])
    assert not (tmp_path / "x.h5").exists()
