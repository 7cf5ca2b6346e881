"""The real `snakemake` command on a tiny end-to-end config, and the tests that share its run
(the shipped configs: tests/test_workflow_configs.py)."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml
from helpers import REPO, planned_outputs, planned_rules, ran_rules, snakemake, touch_demo_images, write_config
from PIL import Image

from stages.seg.data import read_split_list
from stages.seg.io import load_model
from stages.seg.maskstore import MaskStore

# workflow runs, SLURM, DDP and signals: the slow tier (`pytest -m "not slow"` leaves them out)
pytestmark = pytest.mark.slow


# ---------------------------------------------------------------------------------------------
# End to end: the whole SupOnly / ST / ST++ workflow on a tiny synthetic data set.


@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory):
    workdir = tmp_path_factory.mktemp("workflow")
    config = write_config(workdir)
    proc = snakemake("--cores", "2", "--configfile", str(config), "--directory", str(workdir))
    return workdir, proc


def test_end_to_end_artifacts(tiny_run):
    workdir, proc = tiny_run
    results = workdir / "results" / "tiny"
    unlabeled = read_split_list(workdir / "resources" / "demo" / "unlabeled.txt")

    teacher = results / "teacher"
    for path in [
        teacher / "checkpoints" / "checkpoint_1.pt",
        teacher / "checkpoints" / "checkpoint_2.pt",
        *(results / m / "model.pt" for m in ("teacher", "st_student", "stpp_student1", "stpp_student2")),
    ]:
        model = load_model(path)
        assert model(torch.zeros(1, 3, 32, 32)).shape == (1, 4, 32, 32)
    assert not (teacher / "resume").exists() or not any((teacher / "resume").iterdir())

    store = MaskStore(teacher / "pseudo_masks_unlabeled.h5")
    assert sorted(store.ids()) == sorted(s.id for s in unlabeled)
    for image_id in store.ids():
        mask = store[image_id]
        assert mask.dtype == np.uint8 and mask.shape == (32, 32) and mask.max() < 4

    reliable = (results / "stpp_split" / "reliable_ids.txt").read_text().splitlines()
    unreliable = (results / "stpp_split" / "unreliable_ids.txt").read_text().splitlines()
    assert len(reliable) == 3 and not set(reliable) & set(unreliable)
    assert sorted(reliable + unreliable) == sorted(s.line() for s in unlabeled)
    relabeled = MaskStore(results / "stpp_student1" / "pseudo_masks_unreliable.h5")
    assert sorted(relabeled.ids()) == sorted(line.split()[0] for line in unreliable)

    with open(results / "teacher" / "stability_scores.tsv") as f:
        scores = list(csv.DictReader(f, delimiter="\t"))
    assert len(scores) == len(unlabeled)

    with open(results / "summary.tsv") as f:
        rows = list(csv.DictReader(f, delimiter="\t"))
    assert [r["method"] for r in rows] == ["SupOnly", "ST", "ST++ student 1", "ST++ final"]
    assert all(0 <= float(r["miou"]) <= 100 for r in rows)
    assert (results / "summary.tsv").read_text() in proc.stdout  # the table is printed at the end
    sup = float(rows[0]["miou"])
    for row in rows[1:]:  # and each method against SupOnly, then where the audit and the report are
        diff = float(row["miou"]) - sup
        assert f"{row['method']}: {diff:+.2f} mIoU {'over' if diff >= 0 else 'under'} SupOnly" in proc.stdout
    assert "audit: results/tiny/audit/" in proc.stdout and "snakemake --report report.html" in proc.stdout

    audit = json.loads((results / "audit" / "audit.json").read_text())  # the demo's unlabeled masks are the truth
    assert audit["images"] == len(unlabeled) and 0 <= audit["teacher"]["unreliable"]["miou"] <= 1
    assert len((results / "audit" / "per_image.tsv").read_text().splitlines()) == 1 + len(unlabeled)
    for figure in (
        "stability_scores",
        "contact_most_stable",
        "contact_least_stable",
        "contact_random",
        "training_curves",
        "summary",
    ):
        assert (results / "audit" / f"{figure}.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    sheet = (results / "review_sheet" / "review.tsv").read_text().splitlines()  # 6 unlabeled, sheet_size 16
    assert sheet[0].startswith("id\tscore\treliable\twhy") and len(sheet) == 1 + len(unlabeled)
    assert len(list((results / "review_sheet" / "masks").rglob("*.png"))) == len(unlabeled)

    # logs/ and benchmarks/ mirror each other, one file per job
    logs = {p.relative_to(workdir / "logs").with_suffix("") for p in (workdir / "logs").rglob("*.log")}
    benchmarks = {
        p.relative_to(workdir / "benchmarks").with_suffix("") for p in (workdir / "benchmarks").rglob("*.tsv")
    }
    assert logs == benchmarks and Path("tiny/teacher/train") in logs
    assert "epoch 3/3 done" in (workdir / "logs" / "tiny" / "teacher" / "train.log").read_text()


def test_report_has_the_summary_the_audit_and_the_figures(tiny_run):
    workdir, _ = tiny_run
    snakemake("--configfile", str(workdir / "tiny.yaml"), "--directory", str(workdir), "--report", "report.html")
    html = (workdir / "report.html").read_text()
    for item in (
        "summary.tsv",
        "audit.json",
        "per_image.tsv",
        "stability_scores.png",
        "contact_most_stable.png",
        "training_curves.png",
        "summary.png",
        "the reliable and unreliable sets",
    ):
        assert item in html, item


def test_second_run_does_nothing(tiny_run):
    workdir, _ = tiny_run
    config = workdir / "tiny.yaml"
    proc = snakemake("--cores", "2", "--configfile", str(config), "--directory", str(workdir))
    assert "Nothing to be done" in proc.stdout + proc.stderr


def reversed_mappings(tree):
    """The same config with every mapping's keys in reverse order."""
    if isinstance(tree, dict):
        return {key: reversed_mappings(value) for key, value in reversed(list(tree.items()))}
    return [reversed_mappings(value) for value in tree] if isinstance(tree, list) else tree


def test_a_config_rewritten_with_its_keys_reordered_re_runs_nothing(tiny_run):
    """Re-runs follow the config's values, not its text: the finished run's config with every
    mapping's keys in reverse order, in flow style (as a tool that rewrites YAML may leave it),
    plans no job. Before, rule make_demo passed the demo mapping itself as a param, and
    Snakemake compares params by their text: every job re-ran, the teacher included."""
    workdir, _ = tiny_run
    snakemake("--cores", "2", "--configfile", str(workdir / "tiny.yaml"), "--directory", str(workdir))
    written = yaml.safe_load((workdir / "tiny.yaml").read_text())
    config = reversed_mappings(written)
    assert list(config["demo"]) == list(reversed(written["demo"])) and config == written
    path = workdir / "tiny_reordered.yaml"
    path.write_text(yaml.safe_dump(config, sort_keys=False, default_flow_style=True))
    assert path.read_text().startswith("{")
    proc = snakemake("-n", "--configfile", str(path), "--directory", str(workdir))
    assert planned_rules(proc) == set(), proc.stdout[-2000:]


def test_forcerun_and_until_plan_only_what_they_should(tiny_run):
    workdir, _ = tiny_run
    args = ("-n", "--configfile", str(workdir / "tiny.yaml"), "--directory", str(workdir))
    forced = planned_rules(snakemake(*args, "--forcerun", "split_reliable"))
    assert "train_teacher" not in forced and {"split_reliable", "train_student", "summarize"} <= forced
    assert planned_rules(snakemake(*args, "--forcerun", "train_teacher", "--until", "merge_score_shards")) == {
        "train_teacher",
        "score_shard",
        "merge_score_shards",
    }


def test_changing_r_reruns_split_and_downstream_only(tiny_run):
    workdir, _ = tiny_run
    teacher = workdir / "results" / "tiny" / "teacher" / "model.pt"
    st_student = workdir / "results" / "tiny" / "st_student" / "model.pt"
    before = teacher.stat().st_mtime_ns, st_student.stat().st_mtime_ns
    config = write_config(workdir, reliable_ratio=0.34)
    args = ("--configfile", str(config), "--directory", str(workdir))
    assert planned_rules(snakemake("-n", *args)) == {
        "split_reliable",
        "train_student",
        "label_shard",
        "merge_label_shards",
        "evaluate",
        "summarize",
        "audit",
        "figure_scores",
        "figure_contact_sheet",
        "figure_training_curves",
        "figure_summary",
        "review_sheet",
        "all",
    }
    split = workdir / "results" / "tiny" / "stpp_split" / "reliable_ids.txt"
    snakemake("--cores", "2", *args, str(split.relative_to(workdir)))  # the split alone: the students cost time
    assert (teacher.stat().st_mtime_ns, st_student.stat().st_mtime_ns) == before
    assert len(split.read_text().splitlines()) == 2  # floor(6 * 0.34)
    # back to R = 0.5: the same reliable set again, so nothing after the split re-runs
    snakemake(
        "--cores",
        "2",
        "--configfile",
        str(write_config(workdir)),
        "--directory",
        str(workdir),
        str(split.relative_to(workdir)),
    )
    assert (
        planned_rules(snakemake("-n", "--configfile", str(workdir / "tiny.yaml"), "--directory", str(workdir))) == set()
    )


def test_a_training_setting_retrains_and_how_a_job_runs_does_not(tiny_run):
    """Training settings are params that Snakemake's params trigger sees: a params function that
    takes threads is 'derived' and left out of it, so the settings must not pass through one
    (they did: changing train.lr or train.batch_size re-trained nothing). The thread count and
    how often the resume state is saved change how a job runs, not the model: no re-run."""
    workdir, _ = tiny_run
    for section, key, value, retrained in [
        ("train", "lr", 0.03, True),
        ("train", "batch_size", 4, True),
        ("resources", "threads", 2, False),
        ("train", "save_every_minutes", 5, False),
    ]:
        config = yaml.safe_load((workdir / "tiny.yaml").read_text())
        if section == "resources":
            config["resources"]["train"][key] = value
        else:
            config["experiments"]["tiny"][section][key] = value
        path = workdir / f"tiny_{key}.yaml"
        path.write_text(yaml.safe_dump(config))
        rules = planned_rules(snakemake("-n", "--cores", "2", "--configfile", str(path), "--directory", str(workdir)))
        assert ({"train_teacher", "train_student"} <= rules) == retrained, (key, rules)
        if not retrained:
            assert rules == set(), (key, rules)


def test_student1_epochs_lengthens_student1_only(tiny_run):
    """stpp.student1_epochs changes ST++ student 1's command (and so re-trains it and what follows
    it), not the teacher's or ST's; unset, every model trains train.epochs."""
    workdir, _ = tiny_run
    config = yaml.safe_load((workdir / "tiny.yaml").read_text())
    config["experiments"]["tiny"]["stpp"]["student1_epochs"] = 7
    path = workdir / "tiny_student1_epochs.yaml"
    path.write_text(yaml.safe_dump(config))
    proc = snakemake("-n", "-p", "--configfile", str(path), "--directory", str(workdir))
    text = proc.stdout + proc.stderr
    jobs = [block for block in text.split("\n\n") if "rule train_student:" in block]
    assert len(jobs) == 2 and "train_teacher" not in planned_rules(proc)
    by_student = {("stpp_student1" if "stpp_student1/model.pt" in job else "stpp_student2"): job for job in jobs}
    assert "--epochs 7 " in by_student["stpp_student1"]
    assert "--epochs 3 " in by_student["stpp_student2"]  # train.epochs


def test_teacher_from_copies_the_teacher_and_data_test_scores_every_model(tiny_run):
    """An experiment with teacher_from: tiny (here with the paper's TTA scoring and the
    labeled-passes schedule) copies tiny's teacher and its pseudo-masks (the labeling settings
    are tiny's), scores with it anew (score_tta is not tiny's), trains its own students, and
    evaluates every model on its data.test list too; tiny's outputs are untouched. A teacher
    setting that differs, or a source that is no experiment, is refused by name."""
    from stages.make_demo import make_demo

    workdir, _ = tiny_run
    snakemake("--cores", "2", "--configfile", str(workdir / "tiny.yaml"), "--directory", str(workdir))
    results = workdir / "results"
    trained = {p: p.stat().st_mtime_ns for p in (results / "tiny").rglob("*") if p.is_file()}
    make_demo(workdir / "held_out", num_labeled=1, num_unlabeled=1, num_val=2, size=(32, 32), seed=7)
    held_out = workdir / "held_out"
    (held_out / "test.txt").write_text(
        "".join(  # absolute paths: another folder than the data root
            f"{held_out / line.split()[0]} {held_out / line.split()[1]}\n"
            for line in (held_out / "val.txt").read_text().splitlines()
        )
    )
    config = yaml.safe_load((workdir / "tiny.yaml").read_text())
    tagged = yaml.safe_load(yaml.safe_dump(config["experiments"]["tiny"]))
    tagged["teacher_from"] = "tiny"
    tagged["stpp"].update(score_tta=True, student_schedule="labeled_passes")
    tagged["data"]["test"] = str(held_out / "test.txt")
    config["experiments"]["tiny_tta"] = tagged
    path = workdir / "tiny_teacher_from.yaml"
    path.write_text(yaml.safe_dump(config))
    args = ("--configfile", str(path), "--directory", str(workdir))

    dry = snakemake("-n", *args)
    rules = planned_rules(dry)
    assert {"copy_teacher", "copy_shared", "score_shard", "train_student", "evaluate_test"} <= rules
    assert "train_teacher" not in rules
    # the pseudo-masks copied (the labeling settings are tiny's), the scores computed anew
    assert "results/tiny_tta/teacher/pseudo_masks_unlabeled.h5" in planned_outputs(dry, "copy_shared")
    assert not [o for o in planned_outputs(dry, "label_shard") if "tiny_tta/teacher/" in o]
    assert "results/tiny_tta/teacher/checkpoint_masks.h5" in planned_outputs(dry, "merge_score_shards")
    # the copy, labeling and scoring with it, and student 1 (ST and student 2 add nothing here)
    proc = snakemake(
        "--cores",
        "2",
        "-p",
        *args,
        "results/tiny_tta/teacher/stability_scores.tsv",
        *(f"results/tiny_tta/{m}/test/metrics.json" for m in ("teacher", "stpp_student1")),
    )
    copied, source = results / "tiny_tta" / "teacher", results / "tiny" / "teacher"
    for name in (
        "model.pt",
        "train_log.tsv",
        "checkpoints/checkpoint_1.pt",
        "checkpoints/checkpoint_2.pt",
        "pseudo_masks_unlabeled.h5",
    ):
        assert (copied / name).read_bytes() == (source / name).read_bytes()
    assert (copied / "stability_scores.tsv").read_bytes() != (source / "stability_scores.tsv").read_bytes()
    assert "--tta" in (proc.stdout + proc.stderr).split("stages.score")[1].split("\n")[0]
    for model in ("teacher", "stpp_student1"):
        metrics = json.loads((results / "tiny_tta" / model / "test" / "metrics.json").read_text())
        assert metrics["list"] == str(held_out / "test.txt")
        with np.load(results / "tiny_tta" / model / "test" / "per_image_confusion.npz") as f:
            assert f["confusion"].shape == (2, 4, 4) and f["confusion"].sum() == 2 * 32 * 32
    with np.load(results / "tiny" / "teacher" / "per_image_confusion.npz") as f:  # on val, every experiment
        total = f["confusion"].sum(0)
    assert total.tolist() == json.loads((results / "tiny" / "teacher" / "metrics.json").read_text())["confusion_matrix"]
    # the labeled-passes schedule: student 1 (4 labeled + 3 reliable) trained longer than train.epochs
    epochs = len((results / "tiny_tta" / "stpp_student1" / "train_log.tsv").read_text().splitlines()) - 1
    assert epochs > 3
    assert {p: p.stat().st_mtime_ns for p in trained} == trained  # tiny is as it was

    for change, message in [
        (("train", "lr", 0.5), "train.lr differ from 'tiny'"),
        ((None, "teacher_from", "nowhere"), "names 'nowhere', which is not an experiment"),
    ]:
        bad = yaml.safe_load(yaml.safe_dump(config))
        part, key, value = change
        (bad["experiments"]["tiny_tta"][part] if part else bad["experiments"]["tiny_tta"])[key] = value
        path.write_text(yaml.safe_dump(bad))
        proc = snakemake("-n", *args, check=False)
        assert proc.returncode != 0 and message in proc.stdout + proc.stderr


def test_third_round_adds_student3_to_the_plan(tiny_run, tmp_path):
    """rounds: 3 for the whole config, or stpp.rounds: 3 for one experiment: student 2 relabels
    every unlabeled image and student 3 learns from them; the teacher is reused."""
    workdir, _ = tiny_run
    config = yaml.safe_load((workdir / "tiny.yaml").read_text())
    config["experiments"]["tiny"]["stpp"]["rounds"] = 3
    (tmp_path / "rounds.yaml").write_text(yaml.safe_dump(config))
    for extra in (
        ("--configfile", str(workdir / "tiny.yaml"), "--config", "rounds=3"),
        ("--configfile", str(tmp_path / "rounds.yaml")),
    ):
        proc = snakemake("-n", *extra, "--directory", str(workdir))
        text = proc.stdout + proc.stderr
        assert "results/tiny/stpp_student2/pseudo_masks_unlabeled.h5" in text  # student 2 relabels everything
        assert "results/tiny/stpp_student3/model.pt" in text
        assert "rule train_teacher" not in text  # the teacher is reused


def test_data_changes_rerun_exactly_the_jobs_that_read_them(tiny_run):
    """Data files are tracked by content: the data check re-runs on a change and names a broken
    file; only the jobs whose lists changed re-run after it; touched files re-run the check alone
    (their times are in its params; their contents, in its digests, are the same)."""
    workdir, _ = tiny_run
    args = ("--cores", "2", "--configfile", str(workdir / "tiny.yaml"), "--directory", str(workdir))
    snakemake(*args)  # whatever an earlier test changed, complete again
    demo = workdir / "resources" / "demo"
    results = workdir / "results" / "tiny"
    trained = {m: (results / m / "model.pt").stat().st_mtime_ns for m in ("teacher", "st_student")}

    touch_demo_images(workdir)
    assert ran_rules(snakemake(*args)) == {"check_data"}
    assert "Nothing to be done" in (lambda p: p.stdout + p.stderr)(snakemake("-n", *args))

    val_mask = demo / (demo / "val.txt").read_text().split()[1]
    array = np.array(Image.open(val_mask))
    array[:4, :4] = (array[:4, :4] + 1) % 4  # re-annotated
    Image.fromarray(array).save(val_mask)
    assert ran_rules(snakemake(*args)) == {"check_data", "evaluate", "summarize", "figure_summary"}

    unlabeled_image = demo / (demo / "unlabeled.txt").read_text().split()[0]
    original = unlabeled_image.read_bytes()
    unlabeled_image.write_bytes(original[: len(original) // 2])  # truncated
    for _ in range(2):  # and again unfixed: the failed check runs until the data passes
        proc = snakemake(*args, check=False)
        assert proc.returncode != 0 and ran_rules(proc) == {"check_data"}
        log = (workdir / "logs" / "tiny" / "check_data.log").read_text()
        finding = f"image {unlabeled_image.relative_to(workdir)} (resources/demo/unlabeled.txt:1) is truncated"
        assert finding in log
        console = proc.stdout + proc.stderr
        assert "The data check of tiny failed" in console and console.count(finding) >= 1  # on the console too
        assert not (results / "data_check").exists()

    unlabeled_image.write_bytes(original)  # restored: the check passes, nothing else re-runs
    assert ran_rules(snakemake(*args)) == {"check_data"}

    image = np.array(Image.open(unlabeled_image))
    Image.fromarray(255 - image).save(unlabeled_image)  # another unlabeled image
    snakemake(*args, "results/tiny/data_check/manifest.tsv")  # the check alone; then the plan is decided
    planned = planned_rules(snakemake("-n", *args))
    assert {"label_shard", "score_shard", "merge_score_shards", "train_student", "evaluate"} <= planned
    assert "train_teacher" not in planned
    unlabeled_image.write_bytes(original)
    snakemake(*args, "results/tiny/data_check/manifest.tsv")
    assert planned_rules(snakemake("-n", *args)) == set()
    assert {m: (results / m / "model.pt").stat().st_mtime_ns for m in trained} == trained


def test_a_third_round_ablation_copies_the_first_two_rounds_and_trains_only_the_third(tiny_run):
    """teacher_from: tiny with stpp.rounds: 3 and nothing else changed: the split, students 1
    and 2, student 1's relabel and ST are tiny's files, copied (training is deterministic, so
    they are the files it would train); only student 2's relabel of every image and student 3
    are computed."""
    workdir, _ = tiny_run
    snakemake("--cores", "2", "--configfile", str(workdir / "tiny.yaml"), "--directory", str(workdir))
    config = yaml.safe_load((workdir / "tiny.yaml").read_text())
    third = yaml.safe_load(yaml.safe_dump(config["experiments"]["tiny"]))
    third["teacher_from"] = "tiny"
    third["stpp"]["rounds"] = 3
    config["experiments"]["tiny_r3"] = third
    path = workdir / "tiny_r3.yaml"
    path.write_text(yaml.safe_dump(config))
    args = ("--configfile", str(path), "--directory", str(workdir))
    shared = (
        "teacher/pseudo_masks_unlabeled.h5",
        "teacher/stability_scores.tsv",
        "stpp_split/reliable_ids.txt",
        "st_student/model.pt",
        "stpp_student1/model.pt",
        "stpp_student1/pseudo_masks_unreliable.h5",
        "stpp_student2/model.pt",
        "stpp_student2/train_log.tsv",
    )
    target = "results/tiny_r3/stpp_student3/model.pt"
    targets = (target, *(f"results/tiny_r3/{rel}" for rel in shared))
    dry = snakemake("-n", *args, *targets)
    assert planned_outputs(dry, "train_student") == [target, "results/tiny_r3/stpp_student3/train_log.tsv"]
    assert sorted(planned_outputs(dry, "copy_shared")) == sorted(targets[1:])
    assert "label_shard" in planned_rules(dry)  # student 2 relabels every image
    assert not {"train_teacher", "score_shard", "split_reliable", "merge_score_shards"} & planned_rules(dry)
    snakemake("--cores", "2", *args, *targets)
    results = workdir / "results"
    for rel in shared:
        assert (results / "tiny_r3" / rel).read_bytes() == (results / "tiny" / rel).read_bytes(), rel
    assert (results / "tiny_r3" / "stpp_student3" / "model.pt").exists()
    assert not (results / "tiny" / "stpp_student3").exists()  # nothing of the third round in tiny's folder

    # touched data (a data set copied again keeps its bytes, not its times) re-runs both experiments'
    # checks alone, the borrowed teacher's copy and every copied file included
    touch_demo_images(workdir)
    assert ran_rules(snakemake("--cores", "2", *args, *targets)) == {"check_data"}
    # ... whichever check is asked for first: tiny_r3's own check waits for tiny's (before it did
    # not, and a tiny_r3 check finished first re-ran every copy, about one CI run in three)
    touch_demo_images(workdir)
    own_check = snakemake("--cores", "2", *args, "results/tiny_r3/data_check/manifest.tsv")
    assert planned_outputs(own_check, "check_data").count("results/tiny/data_check/manifest.tsv") == 1
    assert ran_rules(own_check) | ran_rules(snakemake("--cores", "2", *args, *targets)) == {"check_data"}


def test_a_review_excludes_and_corrects_and_re_trains_only_the_students(tiny_run, monkeypatch):
    """review.exclude and review.masks (issue 30), on an experiment that copies tiny's teacher:
    an excluded image leaves every student's training set and the split; a corrected mask is what
    the trainer loads for its image; editing either re-runs the students and never the teacher,
    its labeling or its scoring; a bad corrected mask is named by the data check before any
    training; without the review keys the plan is the plain workflow's."""
    from snakemake.utils import validate

    from stages import export_masks
    from stages.seg.data import training_set
    from stages.seg.transforms import WeakAugment
    from stages.workflow import Plan

    workdir, _ = tiny_run
    snakemake("--cores", "2", "--configfile", str(workdir / "tiny.yaml"), "--directory", str(workdir))
    results, review = workdir / "results" / "reviewed", workdir / "review"
    unlabeled = read_split_list(workdir / "resources" / "demo" / "unlabeled.txt")
    config = yaml.safe_load((workdir / "tiny.yaml").read_text())
    reviewed = yaml.safe_load(yaml.safe_dump(config["experiments"]["tiny"]))
    reviewed["teacher_from"] = "tiny"
    config["experiments"]["reviewed"] = reviewed
    path = workdir / "tiny_reviewed.yaml"

    def run(*targets, check=True, dry=False):
        path.write_text(yaml.safe_dump(config))
        args = ("-n",) if dry else ("--cores", "2")
        return snakemake(*args, "--configfile", str(path), "--directory", str(workdir), *targets, check=check)

    plain = planned_rules(run(dry=True))
    assert "apply_review" not in plain  # no review keys: the plain workflow
    reviewed["review"] = {"exclude": "review/exclude.txt"}
    review.mkdir()
    (review / "exclude.txt").write_text(f"# cat called dog\n{unlabeled[0].id}\n")
    # without a review every file is tiny's and copied; with one the split and the students train
    assert "train_student" not in plain and "copy_shared" in plain
    assert planned_rules(run(dry=True)) == plain | {
        "apply_review",
        "split_reliable",
        "train_student",
        "label_shard",
        "merge_label_shards",
    }
    # student 1 (every student's sources: tests/test_workflow_plan.py); ST and student 2 cost time
    targets = ("results/reviewed/stpp_student1/model.pt",)
    run(*targets, "results/reviewed/audit/audit.json")
    kept = (results / "review" / "kept_ids.txt").read_text()
    split = (results / "stpp_split" / "reliable_ids.txt").read_text() + (
        results / "stpp_split" / "unreliable_ids.txt"
    ).read_text()
    assert unlabeled[0].id not in kept + split and len(kept.splitlines()) == len(unlabeled) - 1
    audit = json.loads((results / "audit" / "audit.json").read_text())
    assert audit["review"]["excluded_ids"] == [unlabeled[0].id] and audit["review"]["corrected"] == 0
    with open(results / "audit" / "per_image.tsv", newline="") as f:
        assert [r["review"] for r in csv.DictReader(f, delimiter="\t")][0] == "excluded"

    validate(config, str(REPO / "config" / "config.schema.yaml"))
    fresh = {p: p.stat().st_mtime_ns for p in (results / "teacher").rglob("*") if p.is_file()}
    assert (results / "teacher" / "stability_scores.tsv") in fresh

    # another exclusion: the split and the students again, not the teacher or its masks and scores
    (review / "exclude.txt").write_text(f"{unlabeled[1].id}\n")
    run("results/reviewed/data_check/manifest.tsv")  # the check alone; then the plan is decided
    outputs = planned_outputs(run(*targets, dry=True))
    assert any("stpp_split" in o for o in outputs) and any("stpp_student1/model.pt" in o for o in outputs)
    assert not [o for o in outputs if o.startswith("results/reviewed/teacher/")]

    # a corrected mask, exported as the review sheet exports it and edited: the trainer loads it
    export_masks.main(
        [
            "--store",
            str(results / "teacher" / "pseudo_masks_unlabeled.h5"),
            "--out",
            str(review / "masks"),
            "--ids",
            unlabeled[2].id,
        ]
    )
    png = review / "masks" / Path(unlabeled[2].id).with_suffix(".png")
    edited = np.array(Image.open(png))
    edited[:8, :8] = 3
    edited[8:12, :8] = 255  # painted "ignore", as docs/review.md allows
    Image.fromarray(edited).save(png)
    reviewed["review"]["masks"] = "review/masks"
    run(*targets)
    assert {p: p.stat().st_mtime_ns for p in fresh} == fresh  # the teacher's outputs untouched
    monkeypatch.chdir(workdir)  # the plan's paths are the working directory's, as in Snakemake
    plan = Plan(yaml.safe_load(path.read_text()))
    validate(plan.config, str(REPO / "config" / "config.schema.yaml"))
    sources = plan.pseudo_sources("reviewed", "stpp_student1")
    identity = WeakAugment(32, None, (1.0, 1.0), flip_p=0.0)
    pseudo = [(read_split_list(workdir / lst, allow_empty=True), str(workdir / store)) for lst, store in sources]
    assert [s.id for s in pseudo[-1][0]] == [unlabeled[2].id]  # the corrected image: its own source
    labeled = read_split_list(workdir / "resources" / "demo" / "labeled.txt")
    dataset = training_set(workdir / "resources" / "demo", labeled, pseudo, identity, None, 4)
    assert np.array_equal(dataset.datasets[-1][0][1].numpy(), edited)
    assert unlabeled[2].id not in (results / "stpp_split" / "reliable_ids.txt").read_text()
    # the audit measures the corrected mask where it was painted (before: "prediction has class 255"),
    # and reports the corrected image as reliable, as every student treats it
    run("results/reviewed/audit/audit.json")
    with open(results / "audit" / "per_image.tsv", newline="") as f:
        row = {r["id"]: r for r in csv.DictReader(f, delimiter="\t")}[unlabeled[2].id]
    assert row["review"] == "corrected" and row["reliable"] == "1"
    assert json.loads((results / "audit" / "audit.json").read_text())["review"]["corrected"] == 1

    # bad corrected masks: named by the data check, nothing trains
    good = png.read_bytes()
    for bad, finding in [
        (np.zeros((16, 16), np.uint8), "is 16x16 but its image"),
        (np.full((32, 32), 9, np.uint8), "has labels [9] outside [0, 4)"),
        (np.zeros((32, 32, 3), np.uint8), "has mode RGB"),
    ]:
        Image.fromarray(bad).save(png)
        proc = run(*targets, check=False)
        assert proc.returncode != 0 and ran_rules(proc) == {"check_data"}
        assert finding in proc.stdout + proc.stderr
    png.write_bytes(good)

    del reviewed["review"]  # the review keys removed: the plain workflow's plan and commands
    plain_plan = Plan(yaml.safe_load(yaml.safe_dump(config)))
    validate(plain_plan.config, str(REPO / "config" / "config.schema.yaml"))
    for student in ("st_student", "stpp_student1", "stpp_student2"):
        ours, theirs = (plain_plan.step("train_student", e, model=student).files() for e in ("reviewed", "tiny"))
        assert ours == [path.replace("results/tiny/", "results/reviewed/") for path in theirs]
    assert "apply_review" not in planned_rules(run(dry=True))


def test_predict_segments_new_images_with_st_plus_plus_final_and_reruns_only_for_a_new_image(tiny_run):
    """predict.images: rule predict writes results/<experiment>/predictions/<model>/ for ST++
    final by default (masks, colour masks, overlays, predictions.tsv), re-runs when an image
    changes, and nothing else re-runs."""
    workdir, _ = tiny_run
    snakemake("--cores", "2", "--configfile", str(workdir / "tiny.yaml"), "--directory", str(workdir))
    photos = workdir / "photos"
    photos.mkdir(exist_ok=True)
    for image in sorted((workdir / "resources" / "demo" / "images").glob("val_*.png"))[:2]:
        (photos / image.name).write_bytes(image.read_bytes())
    config = yaml.safe_load((workdir / "tiny.yaml").read_text())
    config["experiments"]["tiny"]["predict"] = {"images": "photos"}
    path = workdir / "tiny_predict.yaml"
    path.write_text(yaml.safe_dump(config))
    run = ("--configfile", str(path), "--directory", str(workdir))
    assert planned_rules(snakemake("-n", *run)) == {"predict", "all"}
    snakemake("--cores", "2", *run)
    out = workdir / "results" / "tiny" / "predictions" / "stpp_student2"
    names = sorted(p.name for p in photos.iterdir())
    for folder in ("masks", "color", "overlays"):
        assert sorted(p.name for p in (out / folder).iterdir()) == names
    table = (out / "predictions.tsv").read_text().splitlines()
    assert len(table) == 1 + len(names) and "share_circle" in table[0]  # the names the checkpoint records
    assert planned_rules(snakemake("-n", *run)) == set()
    (photos / "new.png").write_bytes((photos / names[0]).read_bytes())  # a new image: the predictions again
    assert planned_rules(snakemake("-n", *run)) == {"predict", "all"}


def test_pixel_level_selection_runs_on_the_baselines_teacher(tiny_run):
    """stpp.selection: pixel (the paper's Table 8) as an experiment with teacher_from: the
    teacher's masks (with their confidences) are copied, student 1 learns from the confident
    pixels, relabels, student 2 learns from the combined masks; the audit measures the confident
    and unconfident pixels."""
    workdir, _ = tiny_run
    config = yaml.safe_load((workdir / "tiny.yaml").read_text())
    pixel = yaml.safe_load(yaml.safe_dump(config["experiments"]["tiny"]))
    pixel["teacher_from"] = "tiny"
    pixel["stpp"]["selection"] = "pixel"
    config["experiments"]["tiny_pixel"] = pixel
    path = workdir / "tiny_pixel.yaml"
    path.write_text(yaml.safe_dump(config))
    args = ("--cores", "2", "--configfile", str(path), "--directory", str(workdir))
    targets = ["results/tiny_pixel/stpp_student2/metrics.json", "results/tiny_pixel/audit/audit.json"]
    proc = snakemake(*args, *targets)
    ran = ran_rules(proc)
    assert {"select_pixels", "train_student", "copy_shared"} <= ran and "train_teacher" not in ran
    results = workdir / "results" / "tiny_pixel"
    teacher = MaskStore(results / "teacher" / "pseudo_masks_unlabeled.h5")
    confident = MaskStore(results / "stpp_split" / "pixel_masks_confident.h5")
    combined = MaskStore(results / "stpp_split" / "pixel_masks_combined.h5")
    relabel = MaskStore(results / "stpp_student1" / "pseudo_masks_unreliable.h5")
    for image_id in teacher.ids():
        sure = teacher.confidence(image_id) >= 128
        assert np.array_equal(confident[image_id], np.where(sure, teacher[image_id], 255))
        assert np.array_equal(combined[image_id], np.where(sure, teacher[image_id], relabel[image_id]))
    audit = json.loads((results / "audit" / "audit.json").read_text())
    assert 0 < audit["confident_pixel_share"] <= 1
    assert {"confident_pixels", "unconfident_pixels"} <= set(audit["teacher"])
