"""benchmarks/ablations.py: the grid's experiments (each a teacher_from variant the workflow's plan
accepts and copies the baseline into), their targets, and the tables with their verdicts (not the
hours-long run)."""

from __future__ import annotations

import helpers
import numpy as np
import pytest

from stages.workflow import layout

ablations = helpers.load("ablations")
common = helpers.load("common")


def args(tmp_path, **changes):
    parsed = ablations.parse_args(["--dataset", "demo", "--workdir", str(tmp_path), "--records", str(tmp_path / "rec")])
    for key, value in changes.items():
        setattr(parsed, key, value)
    return parsed


def test_every_variant_takes_the_baselines_teacher_and_computes_only_what_it_changes(tmp_path):
    a = args(tmp_path)
    workdir, config = ablations.seed_config(a, 3, list(ablations.VARIANTS))
    assert workdir == tmp_path.resolve() / "demo" / "seed3" and config["demo"]["seed"] == 3
    plan = common.workflow_plan(config)
    plan.check()  # no variant changes a teacher setting
    base = "demo_seed3_base"
    for variant in ablations.VARIANTS:
        name = f"demo_seed3_{variant}"
        if variant == "base":
            assert plan.exp(name)["teacher_from"] is None
            continue
        assert plan.exp(name)["teacher_from"] == base
        copied = plan.copied_files(name)
        shared = "stability_scores.tsv" if variant == "tta_reference" else "pseudo_masks_unlabeled.h5"
        assert f"results/{name}/teacher/{shared}" in copied, variant  # labeling (or scoring) is shared
    # ST's augmentation variants train ST alone; the pixel-level one its two ST++ students
    assert ablations.targets(config, "demo_seed3_sda_none", "sda_none") == [
        layout.fill(layout.METRICS, experiment="demo_seed3_sda_none", model="st_student")
    ]
    pixel = ablations.targets(config, "demo_seed3_pixel", "pixel")
    assert [p.split("/")[2] for p in pixel] == ["stpp_student1", "stpp_student2", "audit"]
    third = ablations.targets(config, "demo_seed3_rounds3", "rounds3")
    assert third == [layout.fill(layout.METRICS, experiment="demo_seed3_rounds3", model="stpp_student3")]


def test_every_table_row_names_a_variant_and_a_row_it_is_compared_with():
    """Each paper row compared with another has the paper's direction (its figures or its words);
    the TTA-geometry table, not the paper's, has none."""
    for key in ablations.ORDER:
        table = ablations.TABLES[key]
        for row in table.rows:
            assert row.variant in ablations.VARIANTS and row.method in ablations.VARIANTS[row.variant][1]
            if row.against and key != "tta_geometry":
                other = table.row(row.against)
                assert row.paper is not None and other.paper is not None or row.expect in (1, -1), row.label


def confusions(rng, correct_share: float, n: int = 30) -> np.ndarray:
    """Per-image 2-class confusion matrices with about this share of each image's pixels right."""
    out = np.zeros((n, 2, 2), np.int32)
    for i in range(n):
        right = rng.binomial(100, correct_share)
        out[i] = [[right, 100 - right], [0, 100]]
    return out


def record(seed: int, variant: str, miou: dict) -> dict:
    return {"ablation": {"dataset": "demo", "seed": seed, "variant": variant}, "miou": {"val": miou}}


@pytest.mark.parametrize("gap,expected", [(0.3, "holds"), (-0.3, "reversed"), (0.0, "not measurable at this size")])
def test_a_tables_verdict_follows_the_pooled_interval(tmp_path, gap, expected):
    """Table 5's first row (no SDA, below ST in the paper) against ST over two seeds: the verdict
    is the paper's direction held, reversed, or not measurable, by the pooled paired interval."""
    a = args(tmp_path, seeds=[0, 1], tables=["table5"])
    rng = np.random.default_rng(0)
    for seed in (0, 1):
        st = confusions(rng, 0.5)
        none = st.copy()
        none[:, 0, 0] = np.clip(st[:, 0, 0] - int(100 * gap), 0, 100)  # no SDA: `gap` fewer right
        none[:, 0, 1] = 100 - none[:, 0, 0]
        for variant, cms in (("base", st), ("sda_none", none)):
            name = f"ablations_demo_seed{seed}_{variant}"
            common.write_record(tmp_path / "rec", name, record(seed, variant, {"ST": 50.0}), {"val/ST": cms})
    text = ablations.tables(a)
    (line,) = [line for line in text.splitlines() if line.startswith("| no SDA")]
    cells = [c.strip() for c in line.strip("|").split("|")]
    assert cells[2] == "2" and cells[3] == "71.4" and cells[6] == "-1.9"
    assert cells[7] == expected
