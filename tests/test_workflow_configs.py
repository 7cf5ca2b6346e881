"""The real `snakemake` command on the shipped configs, each test in a work directory of its own:
lint, dry runs of every shipped config, config errors named, the shipped demo config run to its
summary, and labeling with the best-on-validation weights.

Apart from tests/test_workflow.py (the tiny end-to-end run and the tests that share its work
directory) so that the two files run on different test workers."""

from __future__ import annotations

import csv
import re

import numpy as np
import pytest
import yaml
from helpers import REPO, TINY, planned_rules, snakemake

from stages.seg.maskstore import MaskStore

# workflow runs, SLURM, DDP and signals: the slow tier (`pytest -m "not slow"` leaves them out)
pytestmark = pytest.mark.slow

SHARED_DATA = REPO.parent / "shared" / "data"


def test_lint_is_clean():
    proc = snakemake("--lint")
    assert "Congratulations" in proc.stdout + proc.stderr


def test_dry_run_default_config():
    proc = snakemake("-n", "--directory", str(REPO))
    assert proc.returncode == 0


@pytest.mark.parametrize("name", ["camvid", "msrc21"])
def test_dry_run_real_data_configs(name):
    if not (SHARED_DATA / name).is_dir():
        pytest.skip(f"../shared/data/{name} is not beside the repo")
    # --forceall: plan every job even where an earlier run left results in this checkout
    rules = planned_rules(
        snakemake("-n", "--forceall", "--configfile", f"config/{name}.yaml", "--directory", str(REPO))
    )
    assert {
        "train_teacher",
        "score_shard",
        "merge_score_shards",
        "split_reliable",
        "train_student",
        "summarize",
    } <= rules
    assert "make_demo" not in rules  # --configfile replaces the demo, not extends it


@pytest.mark.parametrize("name", ["pascal", "cityscapes"])
def test_dry_run_paper_configs(tmp_path, name):
    """The paper configs plan the whole workflow on the shipped split lists with only the data
    root (and the weights, read at training) filled in: lists_dir made absolute because this
    run's working directory is not the repository."""
    config = yaml.safe_load((REPO / "config" / f"{name}.yaml").read_text())
    for experiment in config["experiments"].values():
        experiment["data"]["root"] = str(tmp_path / "data")
        experiment["data"]["lists_dir"] = str(REPO / experiment["data"]["lists_dir"])
    (tmp_path / "config.yaml").write_text(yaml.safe_dump(config))
    rules = planned_rules(snakemake("-n", "--configfile", str(tmp_path / "config.yaml"), "--directory", str(tmp_path)))
    assert {"train_teacher", "label_shard", "merge_label_shards", "train_student", "evaluate"} <= rules


def test_config_typo_is_an_error_naming_the_key(tmp_path):
    config = yaml.safe_load((REPO / "config" / "config.yaml").read_text())
    config["experiments"]["demo"]["train"]["epoch"] = 3  # misspelt 'epochs'
    (tmp_path / "config.yaml").write_text(yaml.safe_dump(config))
    proc = snakemake("-n", "--configfile", str(tmp_path / "config.yaml"), "--directory", str(tmp_path), check=False)
    assert proc.returncode != 0
    assert "experiments.demo.train.epoch: no such key; did you mean experiments.demo.train.epochs?" in (
        proc.stderr + proc.stdout
    )


def test_config_bad_device_is_an_error_naming_the_key(tmp_path):
    config = yaml.safe_load((REPO / "config" / "config.yaml").read_text())
    config["device"] = "gpu"
    (tmp_path / "config.yaml").write_text(yaml.safe_dump(config))
    proc = snakemake("-n", "--configfile", str(tmp_path / "config.yaml"), "--directory", str(tmp_path), check=False)
    text = proc.stderr + proc.stdout
    assert proc.returncode != 0
    assert "device: 'gpu' is not allowed; allowed: auto (CUDA when present), cpu, cuda or cuda:N" in text


def test_labeling_with_best_on_validation_weights(tmp_path):
    """label.weights: best (the reference code) labels with best.pt and needs train.val_every."""
    config = yaml.safe_load(yaml.safe_dump(TINY))
    config["experiments"]["tiny"]["label"]["weights"] = "best"
    path = tmp_path / "best.yaml"
    path.write_text(yaml.safe_dump(config))
    proc = snakemake("-n", "--configfile", str(path), "--directory", str(tmp_path), check=False)
    assert proc.returncode != 0 and "set val_every > 0" in proc.stdout + proc.stderr

    # Label with the final weights first; switching to best must re-label, not re-train (the
    # choice of weights was a params function of the input, which the params trigger skips).
    config["experiments"]["tiny"]["train"]["val_every"] = 1
    config["experiments"]["tiny"]["label"]["weights"] = "final"
    config["experiments"]["tiny"]["label"]["shards"] = 1  # one labeling job is enough here
    path.write_text(yaml.safe_dump(config))
    pseudo = "results/tiny/teacher/pseudo_masks_unlabeled.h5"
    trained = snakemake("--cores", "2", "-p", "--configfile", str(path), "--directory", str(tmp_path), pseudo)
    flags = set(re.findall(r"--\S+ \S+", trained.stdout + trained.stderr))
    assert {"--val resources/demo/val.txt", "--eval-every 1"} <= flags
    config["experiments"]["tiny"]["label"]["weights"] = "best"
    path.write_text(yaml.safe_dump(config))
    proc = snakemake("-n", "-p", "--configfile", str(path), "--directory", str(tmp_path), pseudo)
    assert planned_rules(proc) == {"label_shard", "merge_label_shards"}
    assert "--weights best" in proc.stdout
    snakemake("--cores", "2", "--configfile", str(path), "--directory", str(tmp_path), pseudo)
    assert MaskStore(tmp_path / pseudo).attrs["model"] == "results/tiny/teacher/best.pt"


def test_shipped_demo_config_runs_to_a_summary(tmp_path):
    """The default run's own settings (the packaged ImageNet EfficientNet-Lite0, the demo data
    generator, TTA as configured), shrunk to a few tiny images and three epochs: every method gets a
    finite mIoU in the summary. Whether ST beats SupOnly is measured by benchmarks/demo.py."""
    config = yaml.safe_load((REPO / "config" / "config.yaml").read_text())
    config["demo"].update({"num_labeled": 2, "num_unlabeled": 4, "num_val": 2, "size": 32})
    (experiment,) = config["experiments"].values()
    experiment["train"].update({"epochs": 3, "batch_size": 2, "crop_size": 32, "min_labeled": 4})
    config["resources"] = TINY["resources"]
    path = tmp_path / "demo_tiny.yaml"
    path.write_text(yaml.safe_dump(config))
    (name,) = config["experiments"]
    # the summary alone: the audit and figure jobs are the tiny run's (test_end_to_end_artifacts)
    snakemake("--cores", "2", "--configfile", str(path), "--directory", str(tmp_path), f"results/{name}/summary.tsv")
    with open(tmp_path / "results" / name / "summary.tsv") as f:
        rows = list(csv.DictReader(f, delimiter="\t"))
    assert [r["method"] for r in rows] == ["SupOnly", "ST", "ST++ student 1", "ST++ final"]
    assert all(np.isfinite(float(r["miou"])) for r in rows)
    assert all(set(r) == {"method", "miou", *experiment["data"]["class_names"], "miou_classes"} for r in rows)


def test_every_fault_of_a_config_is_named_at_once_with_the_fix(tmp_path):
    """Four faults in one config: one dry run names all four, each with its key, the value and
    what is allowed, a misspelt key with the key meant, and no schema dump (before: the first
    fault, then about 90 lines of schema; three runs to see them all)."""
    config = yaml.safe_load(yaml.safe_dump(TINY))
    e = config["experiments"]["tiny"]
    e["stpp"]["reliabel_ratio"] = 0.5
    e["train"]["lr"] = -1
    e["model"]["arch"] = "unet"
    config["methods"] = ["ST", "STT"]
    path = tmp_path / "bad.yaml"
    path.write_text(yaml.safe_dump(config))
    proc = snakemake("-n", "--configfile", str(path), "--directory", str(tmp_path), check=False)
    out = proc.stdout + proc.stderr
    assert proc.returncode != 0
    for line in (
        "the config has 4 problem(s)",
        "experiments.tiny.stpp.reliabel_ratio: no such key; did you mean experiments.tiny.stpp.reliable_ratio?",
        "experiments.tiny.train.lr: -1 is not allowed; allowed: number > 0",
        "experiments.tiny.model.arch: 'unet' is not allowed; allowed: one of deeplabv3plus, pspnet, deeplabv2",
        "methods.1: 'STT' is not allowed; allowed: one of SupOnly, ST, ST++",
    ):
        assert line in out, out[-3000:]
    assert "Failed validating" not in out and "properties" not in out


def test_your_own_network_trains_labels_scores_and_evaluates_through_the_workflow(tmp_path):
    """model.arch: custom with model.factory (a file's function) and model.kwargs: a tiny U-Net
    of the tests' own is the teacher and every student; each checkpoint records the factory, so
    that labeling, scoring, evaluation and load_model rebuild it from the file alone."""
    from stages.seg.io import load_model

    config = yaml.safe_load(yaml.safe_dump(TINY))
    e = config["experiments"]["tiny"]
    e["model"] = {"arch": "custom", "factory": f"{REPO / 'tests' / 'tiny_unet.py'}:build", "kwargs": {"width": 4}}
    e["label"]["shards"] = 1
    path = tmp_path / "unet.yaml"
    path.write_text(yaml.safe_dump(config))
    snakemake("--cores", "2", "--configfile", str(path), "--directory", str(tmp_path))
    rows = list(csv.DictReader(open(tmp_path / "results" / "tiny" / "summary.tsv"), delimiter="\t"))
    assert [r["method"] for r in rows] == ["SupOnly", "ST", "ST++ student 1", "ST++ final"]
    assert all(0 <= float(r["miou"]) <= 100 for r in rows)
    model = load_model(tmp_path / "results" / "tiny" / "stpp_student2" / "model.pt")
    assert type(model.backbone).__name__ == "TinyUNet" and model.backbone.enc1[0].out_channels == 4
    assert (tmp_path / "results" / "tiny" / "audit" / "audit.json").exists()
