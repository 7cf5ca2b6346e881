"""The workflow's plan (stages/workflow/plan.py) for the tiny config: what each rule reads and the
arguments it passes, without running Snakemake."""

from __future__ import annotations

import copy
import shlex

import pytest
import yaml
from helpers import REPO, TINY
from snakemake.utils import validate

from stages.workflow import Plan, cli_args, flat, pairs_args


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
    # sorted by key: equal settings are equal text, whatever the order they were written in
    assert cli_args(h="x y", a_b=1, c=None, d=[1, 2], e=[], f=True, g=False) == "--a-b 1 --d 1 2 --f --no-g --h 'x y'"
    assert pairs_args("pseudo", ["a", "b", "c d", "e"]) == "--pseudo a b --pseudo 'c d' e"


def test_training_arguments_per_model():
    p = plan(experiments__tiny__stpp__student_schedule="labeled_passes")
    teacher = options(p.step("train_teacher", "tiny").args)
    student1 = options(p.step("train_student", "tiny", model="stpp_student1").args)
    assert teacher["model-name"] == ["teacher"] and student1["model-name"] == ["stpp_student1"]
    assert teacher["checkpoints"] == ["3"] and student1["checkpoints"] == ["1"]
    assert "teacher-epochs" not in teacher and student1["teacher-epochs"] == ["3"]  # train.epochs
    assert teacher["epochs"] == student1["epochs"] == ["3"] and teacher["min-labeled"] == ["8"]
    assert teacher["data-root"] == ["resources/demo"] and teacher["num-classes"] == ["4"]
    shared = plan(experiments__tiny__train__init="shared").step("train_student", "tiny", model="st_student")
    assert "model-name" not in options(shared.args) and "teacher-epochs" not in options(shared.args)
    assert shared.inputs == {
        "labeled": "resources/demo/labeled.txt",
        "pseudo": ["resources/demo/unlabeled.txt", "results/tiny/teacher/pseudo_masks_unlabeled.h5"],
    }
    assert plan().trainer("tiny") == "python -m stages.train"
    assert "--nproc-per-node 2" in plan(experiments__tiny__train__gpus=2).trainer("tiny")
    runtime = options(plan(experiments__tiny__train__gpus=2).train_runtime_args("tiny", threads=4))
    assert runtime["threads"] == ["2"] and runtime["device"] == ["cpu"]  # the job's threads shared by 2 processes


def test_labeling_scoring_and_the_students_sources():
    p = plan()
    shards = "results/tiny/teacher/pseudo_masks_unlabeled.shards"
    assert p.step("merge_label_shards", "tiny", model="teacher", subset="unlabeled").inputs["shards"] == [
        f"{shards}/shard_0_of_2.h5",  # label.shards 2
        f"{shards}/shard_1_of_2.h5",
    ]
    assert p.teacher_checkpoints("tiny") == [
        "results/tiny/teacher/checkpoints/checkpoint_1.pt",
        "results/tiny/teacher/checkpoints/checkpoint_2.pt",
        "results/tiny/teacher/model.pt",
    ]
    label = p.step("label_shard", "tiny", model="teacher", subset="unlabeled", shard="0", shards="2")
    assert options(label.args) == {
        "data-root": ["resources/demo"],
        "flip": [],
        "no-resize-logits": [],
        "num-classes": ["4"],
        "scales": ["0.75", "1.0"],
        "tta": [],
        "tta-geometry": ["rounded"],
        "weights": ["final"],
    }
    assert label.inputs == {"model": "results/tiny/teacher/model.pt", "images": "resources/demo/unlabeled.txt"}
    assert "--no-tta" in p.step("score_shard", "tiny").args and "--scales" not in p.step("score_shard", "tiny").args
    relabel = p.step("label_shard", "tiny", model="stpp_student1", subset="unreliable")
    assert relabel.inputs["images"] == "results/tiny/stpp_split/unreliable_ids.txt"
    teacher_masks = "results/tiny/teacher/pseudo_masks_unlabeled.h5"
    assert p.pseudo_sources("tiny", "st_student") == [("resources/demo/unlabeled.txt", teacher_masks)]
    assert p.pseudo_sources("tiny", "stpp_student1") == [("results/tiny/stpp_split/reliable_ids.txt", teacher_masks)]
    assert p.pseudo_sources("tiny", "stpp_student2")[1] == (
        "results/tiny/stpp_split/unreliable_ids.txt",
        "results/tiny/stpp_student1/pseudo_masks_unreliable.h5",
    )
    best = plan(experiments__tiny__label__weights="best", experiments__tiny__train__val_every=1)
    assert "--weights best" in best.step("label_shard", "tiny", model="teacher", subset="unlabeled").args


def test_methods_summary_and_targets():
    p = plan()
    assert [m for _, m in p.method_models("tiny")] == ["teacher", "st_student", "stpp_student1", "stpp_student2"]
    three = plan(experiments__tiny__stpp__rounds=3)
    assert three.method_models("tiny")[-2:] == [("ST++ student 2", "stpp_student2"), ("ST++ final", "stpp_student3")]
    assert p.summary_args("tiny").startswith("SupOnly=results/tiny/teacher/metrics.json ST=")
    assert p.test_targets() == []  # no data.test
    with_test = plan(experiments__tiny__data__test="test.txt")
    assert with_test.test_targets()[0] == "results/tiny/teacher/test/metrics.json"
    assert "--test resources/demo/test.txt" in with_test.step("check_data", "tiny").args
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
    # the data check and apply_review take the review's keys under the same names
    for rule in ("check_data", "apply_review"):
        review = {k: v for k, v in options(reviewed.step(rule, "tiny").args).items() if k.startswith("review")}
        assert review == {"review-exclude": ["exclude.txt"], "review-masks": ["masks"]}
        assert "--review" not in plain.step(rule, "tiny").args
    for key in ("labeling_list", "teacher_checkpoints"):  # the teacher's side: as without a review
        args = ("tiny", "unlabeled") if key == "labeling_list" else ("tiny",)
        assert getattr(reviewed, key)(*args) == getattr(plain, key)(*args)


def test_an_empty_list_is_a_problem_unless_a_stage_wrote_it_so(tmp_path):
    from stages.seg.splits import DataError, read_split_list

    (tmp_path / "corrected_ids.txt").write_text("")
    with pytest.raises(DataError, match="is empty"):
        read_split_list(tmp_path / "corrected_ids.txt")
    assert read_split_list(tmp_path / "corrected_ids.txt", allow_empty=True) == []


# -- every setting reaches the copy key of what is downstream of its rule, and nothing else ---------


def schema_leaves(node: dict, prefix: str = "") -> dict[str, dict]:
    """{dotted key: its schema} of every leaf of an experiment's settings."""
    out = {}
    for key, sub in node.get("properties", {}).items():
        out.update(schema_leaves(sub, f"{prefix}{key}.") if "properties" in sub else {prefix + key: sub})
    return out


def other_values(schema: dict, value) -> list:
    """Values other than ``value`` that the schema allows, most likely to be coherent first."""
    if "oneOf" in schema:
        return [v for option in schema["oneOf"] for v in other_values(option, value) if v != value]
    types = schema.get("type", [])
    if types == "null":
        return [None]
    if types == "object":
        # data.label_map's mapping (stored value: class), else model.kwargs (the factory's arguments)
        return [{1: 0} if "oneOf" in schema.get("additionalProperties", {}) else {"width": 4}]
    types = [types] if isinstance(types, str) else types
    if "enum" in schema:
        return [v for v in reversed(schema["enum"]) if v != value]
    if "boolean" in types:
        return [not value]
    if "integer" in types:
        if value is None:
            return [schema.get("minimum", 1) + 1]
        return [v for v in (value + 1, value - 1) if v >= schema.get("minimum", 1)]
    if "number" in types:
        return [(value or 0.4) * 1.5, (value or 0.4) * 0.5]
    if "array" in types:
        if "enum" in schema["items"]:
            return [[schema["items"]["enum"][0]]]
        if schema["items"].get("type") == "string":
            return [list(reversed(value or ["a", "b", "c", "d"]))]
        return [[*value[:-1], value[-1] * 1.5] if value else [1]]
    return [f"{value}_other" if value else "other", "camvid"]  # camvid: a palette's name


def config_with(config: dict, key: str, value) -> dict:
    config = copy.deepcopy(config)
    node = config["experiments"]["tiny"]
    *parents, leaf = key.split(".")
    for part in parents:
        node = node.setdefault(part, {})
    node[leaf] = value
    return config


def jobs(p: Plan) -> dict[str, tuple[str, dict]]:
    """Every file the plan makes of the experiment, with the data check's manifest."""
    check = {"results/tiny/data_check/manifest.tsv": ("check_data", {"experiment": "tiny"})}
    return {**p.files("tiny", p.targets("tiny")), **check}


def changed_jobs(before: Plan, after: Plan) -> set[str]:
    """The files whose job's settings, or whose job's data lists (inputs outside results/),
    differ between two plans, and the files of jobs the first plan does not have: where a
    changed setting enters the workflow. A shard is how a job is split, not what it computes: a
    new shard whose step the first plan has under another count is no new job."""
    out, had = set(), jobs(before)

    def job(p, rule, wildcards):
        step = p.step(rule, **wildcards)
        return rule, step.args, tuple(step.files())

    steps_before = {job(before, rule, w) for rule, w in had.values()}
    for path, (rule, wildcards) in jobs(after).items():
        a = after.step(rule, **wildcards)
        if path not in had:
            if job(after, rule, wildcards) not in steps_before or not rule.endswith("_shard"):
                out.add(path)
            continue
        b = before.step(rule, **wildcards)
        outside = [{f for f in s.files() if not f.startswith("results/")} for s in (a, b)]
        if a.settings != b.settings or outside[0] != outside[1]:
            out.add(path)
    return out


def downstream(p: Plan, start: set[str]) -> set[str]:
    """``start`` and every file of the plan computed from one of them, however indirectly."""
    out, graph = set(start), jobs(p)
    grew = True
    while grew:
        grew = False
        for path, (rule, wildcards) in graph.items():
            if path not in out and set(p.step(rule, **wildcards).files()) & out:
                out.add(path)
                grew = True
    return out


def test_every_setting_changes_the_copy_key_of_exactly_the_files_downstream_of_its_rule(tmp_path, monkeypatch):
    """For every setting of the schema, one at a time: the copy key (what teacher_from copies)
    of each file downstream of a rule whose command reads the setting changes, and of every
    other file does not. The keys follow from each rule's step alone, so a setting added to a
    step reaches copying and re-running with no second list to update. The settings that reach
    no command are how a job runs, not what it computes."""
    monkeypatch.chdir(tmp_path)  # review paths are the working directory's
    base = copy.deepcopy(TINY)
    base["experiments"]["tiny"]["data"]["test"] = "test.txt"  # so that the test evaluations are planned
    del base["experiments"]["tiny"]["data"]["class_names"]  # so that num_classes may change alone
    base["experiments"]["tiny"]["train"]["val_every"] = 1  # so that label.weights may be best
    base["experiments"]["tiny"]["predict"] = {"images": "photos"}  # so that predict.models reaches a rule
    schema = yaml.safe_load((REPO / "config" / "config.schema.yaml").read_text())
    validate(base, str(REPO / "config" / "config.schema.yaml"))
    before = Plan(base)
    keys_before = {path: before.copy_key("tiny", path) for path in jobs(before)}
    reaches_nothing, tried = set(), 0
    for key, leaf in schema_leaves(schema["$defs"]["experiment"]).items():
        if key == "teacher_from":
            continue  # names another experiment: tests/test_workflow_plan.py's copy tests
        value = flat(base["experiments"]["tiny"]).get(key)
        for other in other_values(leaf, value):
            config = config_with(base, key, other)
            try:
                validate(config, str(REPO / "config" / "config.schema.yaml"))
                after = Plan(config)
                after.check()
                break
            except Exception:  # an incoherent value (checkpoints above epochs): the next one
                continue
        else:
            raise AssertionError(f"no value of {key} other than {value!r} passes the checks")
        tried += 1
        changed = changed_jobs(before, after)
        if not changed:
            reaches_nothing.add(key)
        moved = downstream(after, changed)
        for path in jobs(after):
            if path in keys_before:
                differs = after.copy_key("tiny", path) != keys_before[path]
                assert differs == (path in moved), f"{key}: {value!r} -> {other!r}: {path}"
    assert tried > 40
    # how a job runs, not what it computes: changing one re-runs and re-copies nothing
    assert reaches_nothing == {
        "train.workers",
        "train.save_every_minutes",
        "train.sync_bn",  # with one process per job
        "label.batch_size",
        "label.shards",  # any number of shards writes the same files
        "model.factory",  # a custom network's alone (model.arch is deeplabv3plus here)
        "model.kwargs",
    }


def test_the_rules_read_an_experiments_settings_only_through_the_plans_steps():
    """What a rule's command computes with comes from its step (params settings=...), so that
    the copy keys, which follow the steps, see every setting: no rule file reads the config's
    experiments itself (rules/common.smk adapts the plan: resources, the data fingerprint)."""
    for path in sorted((REPO / "rules").glob("*.smk")):
        if path.name == "common.smk":
            continue
        text = path.read_text()
        for forbidden in ("exp(wildcards)", "config[", "PLAN.exp("):
            assert forbidden not in text, f"{path.name} reads {forbidden}: take it from the rule's step"


def test_a_label_map_reaches_every_stage_that_reads_masks_and_is_checked():
    """data.label_map is a setting of every rule that reads a mask (the data check, training,
    evaluation, the audit, figures and the review), so changing it re-trains the teacher and
    re-copies nothing; a map to a class that does not exist is named before any job."""
    p = plan(experiments__tiny__data__label_map={255: 1, 254: "ignore"})
    for rule, wildcards in [
        ("check_data", {}),
        ("train_teacher", {}),
        ("train_student", {"model": "st_student"}),
        ("evaluate", {"model": "teacher"}),
        ("audit", {}),
        ("apply_review", {}),
        ("review_sheet", {}),
        ("figure_contact_sheet", {"selection": "random"}),
    ]:
        assert "--label-map 254:ignore 255:1" in p.step(rule, "tiny", **wildcards).args, rule
    assert "--label-map" not in p.step("label_shard", "tiny", model="teacher", subset="unlabeled").args
    assert options(
        plan(experiments__tiny__data__label_map="cityscapes").step("evaluate", "tiny", model="teacher").args
    )["label-map"] == ["cityscapes"]
    with pytest.raises(ValueError, match=r"label_map maps 255 to class 4, outside \[0, 4\)"):
        plan(experiments__tiny__data__label_map={255: 4}).check()
    with pytest.raises(ValueError, match="maps 11, which data.ignore_labels also ignores"):
        plan(experiments__tiny__data__label_map={11: 1}, experiments__tiny__data__ignore_labels=[11]).check()


def test_the_settings_that_cannot_work_are_named_all_at_once():
    """Plan.check: every experiment's every fault in one message, not the first alone."""
    with pytest.raises(ValueError) as found:
        plan(
            experiments__tiny__data__class_names=["a", "b"],
            experiments__tiny__label__weights="best",
            experiments__tiny__data__label_map={255: 9},
        ).check()
    lines = str(found.value).splitlines()
    assert len(lines) == 3 and "class_names has 2 names" in lines[0] and "label.weights is 'best'" in lines[1]
    assert "maps 255 to class 9" in lines[2]


def test_the_papers_ablations_share_the_teacher_and_copy_all_they_do_not_change():
    """Table 5 and Figure 2 (strong augmentation), Table 8 (pixel-level selection) and the TTA
    geometry, each an experiment with teacher_from: none changes the teacher, so every one is
    allowed; each copies exactly what it does not change."""
    config = copy.deepcopy(TINY)
    base = config["experiments"]["tiny"]
    variants = {
        "none": {"train": {"strong_augmentation": "none"}},
        "old_false": {"train": {"strong_augmentation": False}},
        "all": {"train": {"strong_augmentation": "all"}},
        "blur": {"train": {"strong_ops": ["blur"]}},
        "grey": {"train": {"labeled_cutout": True}},
        "pixel": {"stpp": {"selection": "pixel"}},
        "geometry": {"label": {"tta_geometry": "reference"}},
    }
    for name, change in variants.items():
        e = config["experiments"][name] = yaml.safe_load(yaml.safe_dump(base))
        e["teacher_from"] = "tiny"
        for section, values in change.items():
            e[section].update(values)
    validate(config, str(REPO / "config" / "config.schema.yaml"))
    p = Plan(config)
    p.check()

    def copied(name):
        return sorted(k.removeprefix(f"results/{name}/") for k in p.copied_files(name))

    labeling = ["teacher/pseudo_masks_unlabeled.h5", "teacher/stability_scores.tsv", "teacher/checkpoint_masks.h5"]
    split = ["stpp_split/reliable_ids.txt", "stpp_split/unreliable_ids.txt"]
    for name in ("none", "all", "blur", "grey"):  # every student trains anew
        assert copied(name) == sorted(labeling + split), name
    assert p.step("train_student", "none", model="st_student").args == p.step(
        "train_student", "old_false", model="st_student"
    ).args.replace("old_false", "none")
    # pixel: the teacher's labels, its scores (for the audit) and ST are the baseline's
    assert copied("pixel") == sorted([*labeling, "st_student/model.pt", "st_student/train_log.tsv"])
    sources = {m: p.pseudo_sources("pixel", m) for m in ("stpp_student1", "stpp_student2")}
    assert sources == {
        "stpp_student1": [
            ("results/pixel/stpp_split/reliable_ids.txt", "results/pixel/stpp_split/pixel_masks_confident.h5")
        ],
        "stpp_student2": [
            ("results/pixel/stpp_split/reliable_ids.txt", "results/pixel/stpp_split/pixel_masks_combined.h5")
        ],
    }
    combined = p.step("select_pixels", "pixel", phase="combined")
    assert combined.inputs["relabel"] == "results/pixel/stpp_student1/pseudo_masks_unreliable.h5"
    assert combined.args == "--threshold 0.5"
    assert "--selection pixel" in p.step("split_reliable", "pixel").args
    assert "--ratio" not in p.step("split_reliable", "pixel").args
    # the geometry changes the pseudo-masks and all after them; scoring without TTA reads none
    assert copied("geometry") == sorted(labeling[1:] + split)
    # what the trainer is told
    student = options(p.step("train_student", "grey", model="st_student").args)
    assert student["strong"] == ["pseudo_labeled"] and "labeled-cutout" in student
    assert options(p.step("train_student", "blur", model="st_student").args)["strong-ops"] == ["blur"]
    assert "strong" not in options(p.step("train_teacher", "tiny").args)
