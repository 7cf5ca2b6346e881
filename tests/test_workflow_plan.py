"""The workflow's plan (stages/workflow.py) for the tiny config: what each rule reads and the
arguments it passes, without running Snakemake."""

from __future__ import annotations

import copy
import shlex

import pytest
import yaml
from snakemake.utils import validate
from test_workflow import REPO, TINY

from stages.workflow import Plan, cli_args


def plan(**changes) -> Plan:
    config = copy.deepcopy(TINY)
    for dotted, value in changes.items():
        node = config
        *parents, leaf = dotted.split("__")
        for key in parents:
            node = node.setdefault(key, {})
        node[leaf] = value
    validate(config, str(REPO / "config" / "config.schema.yaml"))  # fills in the defaults, as the Snakefile does
    return Plan(config)


def options(args: str) -> dict[str, list[str]]:
    """--flag value... pairs of a command's arguments."""
    out, key = {}, None
    for token in shlex.split(args):
        if token.startswith("--"):
            key = token[2:]
            out.setdefault(key, [])
        else:
            out[key].append(token)
    return out


def test_cli_args():
    assert cli_args(a_b=1, c=None, d=[1, 2], e=[], f=True, g=False, h="x y") == "--a-b 1 --d 1 2 --f --no-g --h 'x y'"


def test_training_arguments_per_model():
    p = plan(experiments__tiny__stpp__student_schedule="labeled_passes")
    teacher = options(p.train_args("tiny", None, checkpoints=3))
    student1 = options(p.train_args("tiny", "stpp_student1"))
    assert teacher["model-name"] == ["teacher"] and student1["model-name"] == ["stpp_student1"]
    assert teacher["checkpoints"] == ["3"] and student1["checkpoints"] == ["1"]
    assert "teacher-epochs" not in teacher and student1["teacher-epochs"] == ["3"]  # train.epochs
    assert teacher["epochs"] == student1["epochs"] == ["3"] and teacher["min-labeled"] == ["8"]
    assert teacher["data-root"] == ["resources/demo"] and teacher["num-classes"] == ["4"]
    shared = options(plan(experiments__tiny__train__init="shared").train_args("tiny", "st_student"))
    assert "model-name" not in shared and "teacher-epochs" not in shared  # the old behaviour, equal epochs
    assert plan().trainer("tiny") == "python -m stages.train"
    assert "--nproc-per-node 2" in plan(experiments__tiny__train__gpus=2).trainer("tiny")
    runtime = options(plan(experiments__tiny__train__gpus=2).train_runtime_args("tiny", threads=4))
    assert runtime["threads"] == ["2"] and runtime["device"] == ["cpu"]  # the job's threads shared by 2 processes


def test_labeling_scoring_and_the_students_sources():
    p = plan()
    assert p.shard_files("tiny", "f", ".h5") == ["f/shard_0_of_2.h5", "f/shard_1_of_2.h5"]  # label.shards 2
    assert p.teacher_checkpoints("tiny") == [
        "results/tiny/teacher/checkpoints/checkpoint_1.pt",
        "results/tiny/teacher/checkpoints/checkpoint_2.pt",
        "results/tiny/teacher/model.pt",
    ]
    assert options(p.tta_args("tiny")) == {"tta": [], "scales": ["0.75", "1.0"], "flip": [], "no-resize-logits": []}
    assert p.labeling_list("tiny", "unreliable") == "results/tiny/stpp_split/unreliable_ids.txt"
    assert p.labeling_list("tiny", "unlabeled") == "resources/demo/unlabeled.txt"
    teacher_masks = "results/tiny/teacher/pseudo_masks_unlabeled.h5"
    assert p.pseudo_sources("tiny", "st_student") == [("resources/demo/unlabeled.txt", teacher_masks)]
    assert p.pseudo_sources("tiny", "stpp_student1") == [("results/tiny/stpp_split/reliable_ids.txt", teacher_masks)]
    assert p.pseudo_sources("tiny", "stpp_student2")[1] == (
        "results/tiny/stpp_split/unreliable_ids.txt",
        "results/tiny/stpp_student1/pseudo_masks_unreliable.h5",
    )
    assert p.pseudo_args("tiny", "stpp_student3") == (
        "--pseudo resources/demo/unlabeled.txt results/tiny/stpp_student2/pseudo_masks_unlabeled.h5"
    )
    best = plan(experiments__tiny__label__weights="best", experiments__tiny__train__val_every=1)
    assert best.labeling_weights("tiny", "teacher") == "results/tiny/teacher/best.pt"


def test_methods_summary_and_targets():
    p = plan()
    assert [m for _, m in p.method_models("tiny")] == ["teacher", "st_student", "stpp_student1", "stpp_student2"]
    three = plan(experiments__tiny__stpp__rounds=3)
    assert three.method_models("tiny")[-2:] == [("ST++ student 2", "stpp_student2"), ("ST++ final", "stpp_student3")]
    assert p.summary_args("tiny").startswith("SupOnly=results/tiny/teacher/metrics.json ST=")
    assert p.test_targets() == []  # no data.test
    with_test = plan(experiments__tiny__data__test="test.txt")
    assert with_test.test_targets()[0] == "results/tiny/teacher/test/metrics.json"
    assert "--test resources/demo/test.txt" in with_test.list_args("tiny")
    sup_only = plan(methods=["SupOnly"])
    assert sup_only.audit_targets() == ["results/tiny/audit/training_curves.png", "results/tiny/audit/summary.png"]
    assert "results/tiny/audit/stability_scores.png" in p.audit_targets()
    assert "stability_scores.png" not in " ".join(plan(methods=["SupOnly", "ST"]).audit_targets())
    assert p.pseudo_label_artifacts("tiny", "scores") == {
        "teacher_masks": "results/tiny/teacher/pseudo_masks_unlabeled.h5",
        "scores": "results/tiny/teacher/stability_scores.tsv",
    }


def test_settings_that_cannot_work_are_named():
    with pytest.raises(ValueError, match="class_names has 2 names for num_classes 4"):
        plan(experiments__tiny__data__class_names=["a", "b"]).check()
    with pytest.raises(ValueError, match="label.weights is 'best' but train.val_every is 0"):
        plan(experiments__tiny__label__weights="best").check()
    config = copy.deepcopy(TINY)
    config["experiments"]["copy"] = yaml.safe_load(yaml.safe_dump(config["experiments"]["tiny"]))
    config["experiments"]["copy"]["teacher_from"] = "tiny"
    config["experiments"]["copy"]["stpp"]["reliable_ratio"] = 0.25  # a student setting: fine
    validate(config, str(REPO / "config" / "config.schema.yaml"))
    p = Plan(config)
    p.check()
    assert p.own_teacher() == ["tiny"] and p.borrowed_teacher() == ["copy"]
    config["experiments"]["copy"]["train"]["workers"] = 3  # how it runs: fine
    Plan(config).check()
    config["experiments"]["copy"]["model"]["head_channels"] = 64
    with pytest.raises(ValueError, match="model.head_channels differ from 'tiny'"):
        Plan(config).check()


def test_an_experiment_with_teacher_from_copies_every_file_computed_from_the_same_settings():
    """teacher_from copies, besides the teacher, each file both plans compute from the same
    settings all the way up to the shared teacher, and nothing downstream of a setting that
    differs: a student setting or label.shards keeps the teacher's pseudo-masks and scores,
    stpp.score_tta changes the scores and all after them, a TTA scale the pseudo-masks and all
    after them (scoring without TTA reads no scale), the unlabeled list everything, and a third
    round copies the first two."""
    config = copy.deepcopy(TINY)
    config["experiments"]["copy"] = yaml.safe_load(yaml.safe_dump(config["experiments"]["tiny"]))
    copy_ = config["experiments"]["copy"]
    copy_["teacher_from"] = "tiny"
    copy_["label"]["shards"] = 3
    validate(config, str(REPO / "config" / "config.schema.yaml"))
    t, c = "results/tiny/", "results/copy/"
    scores = ["teacher/stability_scores.tsv", "teacher/checkpoint_masks.h5"]
    split = ["stpp_split/reliable_ids.txt", "stpp_split/unreliable_ids.txt"]
    models = {m: [f"{m}/model.pt", f"{m}/train_log.tsv"] for m in ("st_student", "stpp_student1", "stpp_student2")}

    def copied():
        p = Plan(config)
        p.check()
        files = p.copied_files("copy")
        assert all(v == t + k.removeprefix(c) for k, v in files.items())
        return sorted(k.removeprefix(c) for k in files)

    everything = ["teacher/pseudo_masks_unlabeled.h5", *scores, *split, "stpp_student1/pseudo_masks_unreliable.h5"]
    assert copied() == sorted(everything + [f for m in models.values() for f in m])
    copy_["stpp"]["reliable_ratio"] = 0.25  # the split and the ST++ students; ST stays
    assert copied() == sorted(["teacher/pseudo_masks_unlabeled.h5", *scores, *models["st_student"]])
    copy_["stpp"]["reliable_ratio"] = 0.5
    copy_["stpp"]["score_tta"] = True
    assert copied() == sorted(["teacher/pseudo_masks_unlabeled.h5", *models["st_student"]])
    copy_["stpp"]["score_tta"] = False
    copy_["label"]["scales"] = [1.0, 1.5]
    assert copied() == sorted([*scores, *split])
    copy_["label"]["scales"] = config["experiments"]["tiny"]["label"]["scales"]
    copy_["stpp"]["rounds"] = 3  # the first two rounds are tiny's; the third round's relabel and student are new
    assert copied() == sorted(everything + [f for m in models.values() for f in m])
    copy_["data"]["unlabeled"] = "other_unlabeled.txt"
    assert copied() == []
    assert Plan(config).copied_files("tiny") == {}  # it trains its own teacher


def test_a_reliable_ratio_that_leaves_st_plus_plus_no_reliable_image_is_named_before_any_job(tmp_path):
    (tmp_path / "unlabeled.txt").write_text("".join(f"u{i}.png\n" for i in range(6)))
    too_small = {"experiments__tiny__data__root": str(tmp_path), "experiments__tiny__stpp__reliable_ratio": 0.1}
    with pytest.raises(ValueError, match=r"stpp.reliable_ratio 0.1 makes none of the 6 images .* at least 0.167"):
        plan(**too_small).check()
    plan(**{**too_small, "experiments__tiny__stpp__reliable_ratio": 0.17}).check()  # one reliable image
    plan(**too_small, methods=["SupOnly", "ST"]).check()  # no ST++, no split
    (tmp_path / "unlabeled.txt").write_text("u0.png\n")
    with pytest.raises(ValueError, match="has 1 image; ST[+][+] splits at least 2"):
        plan(**{**too_small, "experiments__tiny__stpp__reliable_ratio": 0.9}).check()


def test_a_split_list_with_a_byte_order_mark_reads_as_without(tmp_path):
    from stages.seg.splits import read_split_list

    (tmp_path / "list.txt").write_bytes("\ufeffimages/a.png masks/a.png\nimages/b.png masks/b.png\n".encode())
    assert [s.id for s in read_split_list(tmp_path / "list.txt")] == ["images/a.png", "images/b.png"]


def test_log_lines_of_one_level(tmp_path):
    from stages.workflow import log_lines

    log = tmp_path / "check_data.log"
    assert log_lines(str(log), "WARNING") == []  # no log yet
    log.write_text(
        "2026-12-03 10:00:00 INFO data check passed\n"
        "2026-12-03 10:00:00 WARNING train.crop_size 64 is large\n"
        "2026-12-03 10:00:00 ERROR a problem\n"
    )
    assert log_lines(str(log), "WARNING") == ["train.crop_size 64 is large"]
    assert log_lines(str(log), "ERROR") == ["a problem"]


def test_a_review_changes_what_every_student_and_the_split_read_and_nothing_else(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)  # review paths are the working directory's
    plain = plan()
    (tmp_path / "masks" / "images").mkdir(parents=True)
    reviewed = plan(experiments__tiny__review={"exclude": "exclude.txt", "masks": "masks"})
    kept, corrected = "results/tiny/review/kept_ids.txt", "results/tiny/review/corrected_ids.txt"
    assert not plain.reviewed("tiny") and plain.pseudo_list("tiny") == "resources/demo/unlabeled.txt"
    assert reviewed.reviewed("tiny") and reviewed.pseudo_list("tiny") == kept
    assert reviewed.pseudo_sources("tiny", "st_student")[0][0] == kept  # no corrected mask yet: no source
    assert reviewed.pseudo_sources("tiny", "stpp_student1") == plain.pseudo_sources("tiny", "stpp_student1")
    (tmp_path / "masks" / "images" / "unlabeled_0000.png").write_bytes(b"")
    assert reviewed.review_files("tiny") == ["exclude.txt", "masks/images/unlabeled_0000.png"]
    for student in ("st_student", "stpp_student1", "stpp_student2", "stpp_student3"):
        assert reviewed.pseudo_sources("tiny", student)[-1] == (corrected, "results/tiny/review/corrected_masks.h5")
    assert reviewed.review_artifacts("tiny")["kept"] == kept and plain.review_artifacts("tiny") == {}
    assert options(reviewed.review_check_args("tiny")) == {"review-exclude": ["exclude.txt"], "review-masks": ["masks"]}
    assert plain.review_check_args("tiny") == ""
    for key in ("labeling_list", "teacher_checkpoints"):  # the teacher's side: as without a review
        args = ("tiny", "unlabeled") if key == "labeling_list" else ("tiny",)
        assert getattr(reviewed, key)(*args) == getattr(plain, key)(*args)


def test_an_empty_list_is_a_problem_unless_a_stage_wrote_it_so(tmp_path):
    from stages.seg.splits import DataError, read_split_list

    (tmp_path / "corrected_ids.txt").write_text("")
    with pytest.raises(DataError, match="is empty"):
        read_split_list(tmp_path / "corrected_ids.txt")
    assert read_split_list(tmp_path / "corrected_ids.txt", allow_empty=True) == []
