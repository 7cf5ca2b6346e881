"""benchmarks/performance.py: its baselines do the work the stages do (speed is measured there,
never here), and its stage runs parse what the stages write."""

from __future__ import annotations

import json

import helpers
import numpy as np
import torch

from stages import evaluate
from stages.make_demo import make_demo
from stages.seg.io import save_model
from stages.seg.models import build_model

performance = helpers.load("performance")
baselines = helpers.load("baselines")


def test_the_plain_training_data_is_crops_of_the_list_with_void_ignored(tmp_path):
    demo = tmp_path / "demo"
    make_demo(demo, num_labeled=2, num_unlabeled=2, num_val=1, size=(32, 32), seed=0)
    lines = (demo / "labeled.txt").read_text().splitlines()
    data = baselines.PlainPairs(demo, lines, crop=24, ignore=3, repeat=2)
    assert len(data) == 4
    torch.manual_seed(0)
    image, mask = data[0]
    assert image.shape == (3, 24, 24) and image.dtype == torch.float32 and mask.shape == (24, 24)
    assert set(mask.unique().tolist()) <= {0, 1, 2, 255}  # class 3 is void here, padding is 255


def test_the_naive_evaluation_counts_what_stages_evaluate_counts(tmp_path):
    demo = tmp_path / "demo"
    make_demo(demo, num_labeled=2, num_unlabeled=2, num_val=3, size=(32, 32), seed=0)
    torch.manual_seed(0)
    spec = dict(arch="deeplabv3plus", backbone="resnet18", num_classes=4, output_stride=16, head_channels=16)
    save_model(tmp_path / "model.pt", build_model(**spec).eval(), spec)
    lst = demo / "val.txt"
    baselines.naive_evaluate(
        [str(tmp_path / "model.pt"), str(lst), str(demo), "1", "4", "255", str(tmp_path / "naive.json")]
    )
    evaluate.main(
        [
            "--model",
            str(tmp_path / "model.pt"),
            "--list",
            str(lst),
            "--data-root",
            str(demo),
            "--num-classes",
            "4",
            "--out",
            str(tmp_path / "stage.json"),
            "--device",
            "cpu",
            "--no-fold-batch-norm",
            "--channels-last",
            "off",
        ]
    )
    naive = json.loads((tmp_path / "naive.json").read_text())["miou"]
    stage = json.loads((tmp_path / "stage.json").read_text())["miou"]
    assert np.isclose(naive, stage)


def test_the_score_overhead_is_read_from_the_score_stage_log(tmp_path):
    demo = tmp_path / "demo"
    make_demo(demo, num_labeled=2, num_unlabeled=3, num_val=1, size=(32, 32), seed=0)
    spec = dict(arch="deeplabv3plus", backbone="resnet18", num_classes=4, output_stride=16, head_channels=16)
    save_model(tmp_path / "model.pt", build_model(**spec).eval(), spec)
    a = performance.parse_args(["--data-root", str(demo), "--threads", "1", "--label-batch", "2"])
    result = performance.score_overhead(a, tmp_path, tmp_path / "model.pt", demo / "unlabeled.txt", num_classes=4)
    assert result["predict_seconds"] > 0 and result["score_seconds"] >= 0  # logged to 0.01 s
    assert np.isclose(result["overhead"], result["score_seconds"] / result["predict_seconds"])
    assert len((tmp_path / "scores.tsv").read_text().splitlines()) == 1 + 3


def test_the_bf16_agreement_compares_two_labelings_of_one_model_against_the_masks(tmp_path):
    demo = tmp_path / "demo"
    make_demo(demo, num_labeled=2, num_unlabeled=3, num_val=1, size=(32, 32), seed=0)
    spec = dict(arch="deeplabv3plus", backbone="resnet18", num_classes=4, output_stride=16, head_channels=16)
    torch.manual_seed(0)
    save_model(tmp_path / "model.pt", build_model(**spec).eval(), spec)
    a = performance.parse_args(
        ["--data-root", str(demo), "--threads", "1", "--label-batch", "2", "--bf16-model", str(tmp_path / "model.pt")]
        + ["--bf16-list", str(demo / "unlabeled.txt"), "--bf16-num-classes", "4", "--bf16-ignore", "--bf16-images", "2"]
    )
    result = performance.bf16_agreement(a, tmp_path)
    assert result["images"] == 2 and result["pixels"] == 2 * 32 * 32
    assert 0.5 < result["agreement"] <= 1.0  # an untrained model's argmax: close calls flip in bf16
    assert 0 <= result["miou_fp32"] <= 1 and 0 <= result["miou_bf16"] <= 1


def test_each_stage_command_is_the_workflows_own_on_the_camvid_config(tmp_path):
    """performance.py runs each stage with the command the workflow's plan gives rule
    train_teacher, label_shard, score_shard and evaluate on config/camvid.yaml (only the data,
    the budget and the device its own), so that a setting added to a rule reaches the benchmark
    too; the plain training loop takes the same settings."""
    from stages.workflow import Plan

    a = performance.parse_args(["--data-root", str(tmp_path), "--threads", "1", "--train-epochs", "2"])
    train = performance.train_command(a, "efficientnet_lite0", workers=1)
    plan, name = performance.camvid(a)
    assert isinstance(plan, Plan) and name == "camvid_1_8"
    flags = " ".join(map(str, train))
    for expected in ("--head-channels 128", "--crop-size 160", "--batch-size 8", "--epochs 2", "--min-labeled 96"):
        assert expected in flags
    assert f"--data-root {tmp_path}" in flags and "--device cpu" in flags and "--model-name teacher" in flags
    label = " ".join(map(str, performance.label_command(a, "m.pt", "l.txt", "o.h5", 1)))
    assert "--tta --tta-geometry rounded --weights final" in label and "--scales 0.5 0.75 1.0 1.5 2.0" in label
    plain = " ".join(map(str, performance.plain_train_command(a, "resnet18", 0, tmp_path / "p.json")))
    assert "baselines.py plain-train" in plain and "--backbone resnet18" in plain and "--pretrained" not in plain


def test_the_naive_prediction_loops_masks_are_the_predict_stages(tmp_path):
    from PIL import Image

    from stages import predict

    demo = tmp_path / "demo"
    make_demo(demo, num_labeled=2, num_unlabeled=2, num_val=1, size=(32, 40), seed=0)
    spec = dict(arch="deeplabv3plus", backbone="resnet18", num_classes=4, output_stride=16, head_channels=16)
    torch.manual_seed(0)
    save_model(tmp_path / "model.pt", build_model(**spec).eval(), spec)
    lst = demo / "unlabeled.txt"
    baselines.naive_predict([str(tmp_path / "model.pt"), str(lst), str(demo), str(tmp_path / "naive"), "1"])
    predict.main(
        ["--model", str(tmp_path / "model.pt"), "--images", str(lst), "--data-root", str(demo)]
        + ["--out", str(tmp_path / "stage"), "--device", "cpu", "--no-fold-batch-norm", "--channels-last", "off"]
    )
    for mask in (tmp_path / "naive").iterdir():
        stage = np.array(Image.open(tmp_path / "stage" / "masks" / "images" / mask.name))
        assert np.array_equal(np.array(Image.open(mask)), stage)
