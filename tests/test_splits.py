"""The paper's split lists shipped in config/splits: every count as the paper gives it, each
labeled / unlabeled pair disjoint and together the training set, and the shipped Pascal and
Cityscapes configs reading them."""

from __future__ import annotations

import pytest
import yaml
from helpers import REPO
from snakemake.utils import validate

from stages.seg.splits import parse_split_list
from stages.workflow.plan import Plan

SPLITS = REPO / "config" / "splits"

# (folder, labeled images) as the paper's tables give them; the training sets: Pascal's augmented
# set (10,582 images) and Cityscapes' fine training set (2,975)
PASCAL = [(f"1_16/split_{i}", 662) for i in range(3)]
PASCAL += [(f"1_8/split_{i}", 1323) for i in range(3)] + [(f"1_4/split_{i}", 2645) for i in range(3)]
PASCAL += [(f"92/split_{i}", 92) for i in range(3)]
PASCAL += [("183/split_0", 183), ("366/split_0", 366), ("732/split_0", 732), ("1.4k", 1464)]
CITYSCAPES = [
    (f"{fraction}/split_{i}", n) for fraction, n in (("1_30", 100), ("1_8", 372), ("1_4", 744)) for i in range(3)
]
TRAINING_SET = {"pascal": 10582, "cityscapes": 2975}
VAL = {"pascal": 1449, "cityscapes": 500}


def images(path) -> list[str]:
    samples, problems = parse_split_list(path, need_masks=True)
    assert problems == []
    return [s.image for s in samples]


@pytest.mark.parametrize(
    "dataset,folder,labeled", [("pascal", *row) for row in PASCAL] + [("cityscapes", *row) for row in CITYSCAPES]
)
def test_split_counts_and_partition(dataset, folder, labeled):
    lab = images(SPLITS / dataset / folder / "labeled.txt")
    unlab = images(SPLITS / dataset / folder / "unlabeled.txt")
    val = set(images(SPLITS / dataset / "val.txt"))
    assert len(lab) == labeled
    assert not set(lab) & set(unlab)
    assert len(set(lab) | set(unlab)) == TRAINING_SET[dataset]
    assert not (set(lab) | set(unlab)) & val


@pytest.mark.parametrize("dataset", ["pascal", "cityscapes"])
def test_val_lists(dataset):
    assert len(set(images(SPLITS / dataset / "val.txt"))) == VAL[dataset]


@pytest.mark.parametrize("dataset", ["pascal", "cityscapes"])
def test_every_training_set_is_the_same(dataset):
    """Each split partitions one and the same training set (not a set of its own)."""
    rows = PASCAL if dataset == "pascal" else CITYSCAPES
    sets = {
        folder: frozenset(images(SPLITS / dataset / folder / "labeled.txt"))
        | frozenset(images(SPLITS / dataset / folder / "unlabeled.txt"))
        for folder, _ in rows
    }
    assert len(set(sets.values())) == 1


@pytest.mark.parametrize("name", ["pascal", "cityscapes"])
def test_paper_configs_read_the_shipped_lists(name):
    """Run from the repository, the shipped config's lists are the shipped files: a user fills
    in data.root and model.pretrained, nothing else."""
    config = yaml.safe_load((REPO / "config" / f"{name}.yaml").read_text())
    validate(config, str(REPO / "config" / "config.schema.yaml"))  # fills in the defaults
    plan = Plan(config)
    for experiment in plan.experiments:
        for key in ("labeled", "unlabeled", "val"):
            path = REPO / plan.split_list(experiment, key)
            assert path.is_file() and path.is_relative_to(SPLITS), path
