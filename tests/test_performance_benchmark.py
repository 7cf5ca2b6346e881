"""benchmarks/performance.py: its baselines do the work the stages do (speed is measured there,
never here), and its stage runs parse what the stages write."""

from __future__ import annotations

import json
from argparse import Namespace

import helpers
import numpy as np
import torch

from stages import evaluate
from stages.make_demo import make_demo
from stages.seg.io import save_model
from stages.seg.models import build_model

performance = helpers.load("performance")


def test_the_plain_training_data_is_crops_of_the_list_with_void_ignored(tmp_path):
    demo = tmp_path / "demo"
    make_demo(demo, num_labeled=2, num_unlabeled=2, num_val=1, size=(32, 32), seed=0)
    lines = (demo / "labeled.txt").read_text().splitlines()
    data = performance.PlainPairs(demo, lines, crop=24, ignore=3, repeat=2)
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
    performance.naive_evaluate(
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
    a = Namespace(data_root=str(demo), threads=1, label_batch=2)
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
    a = Namespace(
        bf16_model=str(tmp_path / "model.pt"),
        bf16_list=str(demo / "unlabeled.txt"),
        bf16_data_root=str(demo),
        data_root=str(demo),
        bf16_num_classes=4,
        bf16_ignore=[],
        bf16_images=2,
        threads=1,
        label_batch=2,
    )
    result = performance.bf16_agreement(a, tmp_path)
    assert result["images"] == 2 and result["pixels"] == 2 * 32 * 32
    assert 0.5 < result["agreement"] <= 1.0  # an untrained model's argmax: close calls flip in bf16
    assert 0 <= result["miou_fp32"] <= 1 and 0 <= result["miou_bf16"] <= 1
