"""benchmarks/semisup.py helpers: seeded splits, config generation, the tables (not the hours-long run)."""

from __future__ import annotations

import json
import math
import os
import subprocess
from argparse import Namespace
from pathlib import Path

import helpers
import numpy as np
import pytest
import yaml
from PIL import Image

from stages.seg.data import Sample, read_split_list, write_split_list
from stages.seg.files import write_json
from stages.seg.maskstore import MaskStoreWriter

REPO = Path(__file__).resolve().parents[1]
semisup = helpers.load("semisup")


@pytest.fixture
def root(tmp_path) -> Path:
    """A data root with train.txt (10 images), a shipped 1_8 split of 3 labeled and val.txt."""
    root = tmp_path / "data"
    samples = [Sample(f"img/{i}.png", f"img/{i}.png", f"gt/{i}.png") for i in range(10)]
    write_split_list(root / "train.txt", samples)
    write_split_list(root / "splits/1_8/labeled.txt", samples[:3])
    write_split_list(root / "splits/1_8/unlabeled.txt", samples[3:])
    write_split_list(root / "val.txt", samples[:2])
    write_split_list(root / "test.txt", samples[8:])
    return root


def test_seed_0_is_the_shipped_split_and_other_seeds_draw_the_same_size(root, tmp_path):
    shipped = semisup.split_lists(root, "1_8", 0, tmp_path)  # copies, so that the data set's mtimes do not matter
    assert shipped == (str(tmp_path / "1_8_seed0/labeled.txt"), str(tmp_path / "1_8_seed0/unlabeled.txt"))
    for copy, name in zip(shipped, ("labeled.txt", "unlabeled.txt"), strict=True):
        assert Path(copy).read_text() == (root / "splits/1_8" / name).read_text()
    train = [s.line() for s in read_split_list(root / "train.txt")]
    draws = []
    for seed in (1, 2, 1):
        labeled, unlabeled = (read_split_list(p) for p in semisup.split_lists(root, "1_8", seed, tmp_path / str(seed)))
        assert len(labeled) == 3 and len(unlabeled) == 7
        assert sorted(s.line() for s in labeled + unlabeled) == sorted(train)  # a partition of train.txt
        assert [s.line() for s in labeled] == [t for t in train if t in {s.line() for s in labeled}]  # list order
        draws.append([s.id for s in labeled])
    assert draws[0] == draws[2] and draws[0] != draws[1]


def test_a_drawn_split_leaves_a_copy_of_a_labeled_image_out_of_the_unlabeled_list(root, tmp_path):
    """MSRC-21's train.txt has one image twice under two names; a draw that labeled one of them
    made the other unlabeled, and the data check refused the split."""
    for i in range(10):
        (root / "img").mkdir(exist_ok=True)
        (root / f"img/{i}.png").write_bytes(bytes([i]) * 8)
    labeled, unlabeled = (read_split_list(p) for p in semisup.split_lists(root, "1_8", 1, tmp_path / "a"))
    copy = unlabeled[0]
    (root / copy.image).write_bytes((root / labeled[0].image).read_bytes())
    again = [read_split_list(p) for p in semisup.split_lists(root, "1_8", 1, tmp_path / "b")]
    assert [s.id for s in again[0]] == [s.id for s in labeled]  # the same draw
    assert [s.id for s in again[1]] == [s.id for s in unlabeled[1:]]  # less the copy


def test_drawing_a_split_again_leaves_its_lists_untouched(root, tmp_path):
    """A rewritten list gets a new mtime, and Snakemake would retrain every model of that seed."""
    paths = [Path(p) for p in semisup.split_lists(root, "1_8", 4, tmp_path)]
    paths += [Path(p) for p in semisup.split_lists(root, "1_8", 0, tmp_path)]
    for p in paths:
        os.utime(p, ns=(1_000_000_000, 1_000_000_000))
    os.utime(root / "splits/1_8/labeled.txt")  # the data set laid down again: newer, same content
    assert [
        Path(p) for p in semisup.split_lists(root, "1_8", 4, tmp_path) + semisup.split_lists(root, "1_8", 0, tmp_path)
    ] == paths
    assert [p.stat().st_mtime_ns for p in paths] == [1_000_000_000] * 4
    paths[0].write_text("stale\n")  # a list that differs is rewritten
    semisup.split_lists(root, "1_8", 4, tmp_path)
    assert paths[0].read_text() != "stale\n"


def test_config_has_one_experiment_per_split_and_seed(root, tmp_path):
    base = yaml.safe_load((REPO / "config" / "msrc21.yaml").read_text())
    (name,) = base["experiments"]
    base["experiments"][name]["data"]["root"] = str(root)
    (tmp_path / "base.yaml").write_text(yaml.safe_dump(base))
    args = Namespace(
        dataset="toy",
        config=str(tmp_path / "base.yaml"),
        splits=["1_8"],
        seeds=[0, 3],
        set=["stpp.reliable_ratio=0.25", "train.strong_augmentation=false"],
        tag="abl",
        methods=["ST++"],
    )
    path, experiments = semisup.make_config(args, tmp_path)
    assert list(experiments) == ["toy_1_8_seed0_abl", "toy_1_8_seed3_abl"]
    config = yaml.safe_load(path.read_text())
    assert config["methods"] == ["ST++"] and config["resources"] == base["resources"]
    e = config["experiments"]["toy_1_8_seed3_abl"]
    assert e["stpp"]["reliable_ratio"] == 0.25 and e["train"]["strong_augmentation"] is False
    assert e["data"]["labeled"] == str(tmp_path / "splits/toy/1_8_seed3/labeled.txt")
    assert e["data"]["val"] == str(tmp_path / "splits/toy/val.txt")  # a copy as well
    assert e["data"]["test"] == str(tmp_path / "splits/toy/test.txt")  # evaluated by the workflow
    assert "teacher_from" not in e
    # a second data set in the same work directory keeps lists of its own
    args.dataset, args.seeds = "toy2", [0]
    (e2,) = semisup.make_config(args, tmp_path)[1].values()
    assert e2["data"]["labeled"] == str(tmp_path / "splits/toy2/1_8_seed0/labeled.txt")
    assert e2["data"]["val"] == str(tmp_path / "splits/toy2/val.txt")


def test_pseudo_mask_audit_and_tables(root, tmp_path):
    """Reliable masks perfect, unreliable half wrong: the audit and the table say so."""
    work, name = tmp_path / "work", "toy_1_8_seed0"
    r = work / "results" / name
    unlabeled = read_split_list(root / "splits/1_8/unlabeled.txt")
    truth = np.zeros((4, 4), np.uint8)
    truth[:, 2:] = 1
    (root / "gt").mkdir()
    scores = {}
    with MaskStoreWriter(r / "teacher" / "pseudo_masks_unlabeled.h5") as store:
        for n, s in enumerate(unlabeled):
            Image.fromarray(truth).save(root / s.mask)
            store.write(s.id, truth if n < 3 else 1 - truth)
            scores[s.id] = 2.0 - n / 10  # the first three are the most stable
    (r / "teacher" / "stability_scores.tsv").write_text(
        "id\tscore\n" + "".join(f"{i}\t{v}\n" for i, v in scores.items())
    )
    e = toy_experiment(root)
    assert semisup.pseudo_mask_audit(name, work) == {}  # SupOnly alone: no audit
    run_audit(root, r)  # ST alone: no split yet, all unlabeled images, nothing else
    st_alone = semisup.pseudo_mask_audit(name, work)
    assert st_alone["all"] == pytest.approx(24 / (24 + 32 + 32)) and st_alone["reliable"] is None
    assert st_alone["spearman"] is None
    write_split_list(r / "stpp_split" / "reliable_ids.txt", unlabeled[:3])
    write_split_list(r / "stpp_split" / "unreliable_ids.txt", unlabeled[3:])
    run_audit(root, r, stpp=True)
    audit = semisup.pseudo_mask_audit(name, work)
    assert audit["reliable"] == 1.0 and audit["unreliable"] == 0.0 and audit["relabeled"] is None
    # score ranks 6..0 against quality ranks (5, 5, 5, 1.5, 1.5, 1.5, 1.5), centred: 21 / sqrt(28 x 21)
    assert audit["spearman"] == pytest.approx(21 / math.sqrt(28 * 21))

    with MaskStoreWriter(r / "stpp_student1" / "pseudo_masks_unreliable.h5") as store:
        for s in unlabeled[3:]:  # student 1 relabels the unreliable half correctly
            store.write(s.id, truth)
    run_audit(root, r, stpp=True, relabeled=True)
    assert semisup.pseudo_mask_audit(name, work)["relabeled"] == 1.0

    for (_, model), miou in zip(semisup.METHODS, (0.5, 0.6, 0.62, 0.65), strict=True):
        for folder in (r / model, r / model / "test"):
            folder.mkdir(parents=True, exist_ok=True)
            (folder / "metrics.json").write_text(json.dumps({"miou": miou}))
    bench = work / "benchmarks" / name / "teacher"
    bench.mkdir(parents=True)
    (bench / "train.tsv").write_text("s\th:m:s\n120.0\t0:02:00\n")
    record, confusion = semisup.make_record(name, e, work, ["SupOnly", "ST", "ST++"])
    assert confusion == {}  # no per-image matrices written
    assert record["miou"]["test"]["ST"] == pytest.approx(60.0) and record["stage_minutes"]["teacher"] == 2.0
    assert record["pseudo_masks"]["reliable"] == 100.0
    json.dumps(record, allow_nan=False)  # strict JSON: what was not measured is null
    head = subprocess.run(["git", "-C", str(semisup.REPO), "rev-parse", "HEAD"], capture_output=True, text=True)
    if head.returncode == 0:  # the code that made the record: this clone's commit
        assert record["code"].removesuffix("-dirty") == head.stdout.strip()
    table = semisup.tables(TABLE_ARGS, {name: record})
    assert f"code {record['code'][:12]}" in table if record["code"] else "code not recorded" in table
    assert "| toy_1_8_seed0 | 50.0 | 60.0 | 62.0 | 65.0 | +10.0 | +5.0 |" in table
    # all 7 images in one matrix: IoU = 24 / (24 + 32 + 32) for each class
    assert "| toy_1_8_seed0 | 27.3 | 100.0 | 0.0 | 100.0 | 0.87 |" in table
    assert "| toy_1_8_seed0 | 2.0 | 0.0 |" in table  # teacher minutes, then the label stage


def run_audit(root: Path, r: Path, stpp: bool = False, relabeled: bool = False) -> None:
    """The workflow's audit stage, as its rule runs it, on the toy run's artifacts."""
    from stages import audit

    args = [
        "--list",
        str(root / "splits/1_8/unlabeled.txt"),
        "--data-root",
        str(root),
        "--num-classes",
        "2",
        "--teacher-masks",
        str(r / "teacher" / "pseudo_masks_unlabeled.h5"),
        "--out-json",
        str(r / "audit" / "audit.json"),
        "--out-tsv",
        str(r / "audit" / "per_image.tsv"),
    ]
    if stpp:
        args += [
            "--scores",
            str(r / "teacher" / "stability_scores.tsv"),
            "--reliable",
            str(r / "stpp_split" / "reliable_ids.txt"),
            "--unreliable",
            str(r / "stpp_split" / "unreliable_ids.txt"),
        ]
    if relabeled:
        args += ["--relabeled", str(r / "stpp_student1" / "pseudo_masks_unreliable.h5")]
    audit.main(args)


TABLE_ARGS = Namespace(dataset="toy", splits=["1_8"], tag=None, config=None, set=[])


def toy_experiment(root: Path, **train) -> dict:
    return {
        "data": {
            "root": str(root),
            "labeled": "splits/1_8/labeled.txt",
            "unlabeled": "splits/1_8/unlabeled.txt",
            "val": "val.txt",
            "num_classes": 2,
            "ignore_labels": [],
        },
        "train": {"epochs": 30, **train},
    }


def test_records_match_wherever_the_lists_are_and_refuse_other_settings(root, tmp_path):
    """A record made in one work directory (or session) is found again from another; settings must agree."""
    work = tmp_path / "work"
    (work / "results" / "toy_1_8_seed0" / "teacher").mkdir(parents=True)
    (work / "results" / "toy_1_8_seed0" / "teacher" / "metrics.json").write_text(
        json.dumps({"miou": 0.5, "iou": {"a": 0.5}})
    )
    record, _ = semisup.make_record("toy_1_8_seed0", toy_experiment(root), work, ["SupOnly"])
    assert record["miou"]["val"]["SupOnly"] == 50.0 and record["miou"]["test"]["SupOnly"] is None
    assert record["iou"]["val"]["SupOnly"] == {"a": 0.5} and record["pseudo_masks"] is None
    assert "root" not in record["settings"]["data"] and record["settings"]["data"]["val"].startswith("sha256:")
    folder = tmp_path / "records"
    write_json(folder / "toy_1_8_seed0.json", record)

    moved = tmp_path / "elsewhere"  # the same lists under another root: the same record
    for name in ("splits/1_8/labeled.txt", "splits/1_8/unlabeled.txt", "val.txt"):
        (moved / name).parent.mkdir(parents=True, exist_ok=True)
        (moved / name).write_text((root / name).read_text())
    (found,) = semisup.load_records(folder, {"toy_1_8_seed0": toy_experiment(moved)}).values()
    assert found == record
    assert "(t)" not in semisup.tables(TABLE_ARGS, {"toy_1_8_seed0": found})

    with pytest.raises(SystemExit, match=r"toy_1_8_seed0.json: made with other settings \(train.epochs\)"):
        semisup.load_records(folder, {"toy_1_8_seed0": toy_experiment(moved, epochs=10)})
    (moved / "val.txt").write_text((root / "val.txt").read_text().splitlines()[0] + "\n")
    with pytest.raises(SystemExit, match=r"other settings \(data.val\)"):
        semisup.load_records(folder, {"toy_1_8_seed0": toy_experiment(moved)})
    with pytest.raises(SystemExit, match="toy_1_8_seed1.json: no record"):
        semisup.load_records(folder, {"toy_1_8_seed1": toy_experiment(root)})


def test_a_transcribed_record_is_marked_in_the_tables(root, tmp_path):
    record, _ = semisup.make_record("toy_1_8_seed0", toy_experiment(root), tmp_path, ["SupOnly"])
    record["source"] = "docs/study.md, run B"
    table = semisup.tables(TABLE_ARGS, {"toy_1_8_seed0": record})
    assert "| toy_1_8_seed0 (t) | - | - | - | - | - | - |" in table
    assert table.rstrip().endswith("- toy_1_8_seed0: docs/study.md, run B")


def test_teacher_from_names_a_run_of_the_work_directory(root, tmp_path):
    """--teacher-from sets teacher_from to the same split and seed of the named tag; the work
    directory's registry keeps every experiment, so the source is in every later config."""
    base = yaml.safe_load((REPO / "config" / "msrc21.yaml").read_text())
    (name,) = base["experiments"]
    base["experiments"][name]["data"]["root"] = str(root)
    (tmp_path / "base.yaml").write_text(yaml.safe_dump(base))

    def args(tag, teacher_from=None, **more):
        return Namespace(
            dataset="toy",
            config=str(tmp_path / "base.yaml"),
            splits=["1_8"],
            seeds=[0, 1],
            set=[],
            tag=tag,
            teacher_from=teacher_from,
            **{"methods": None, **more},
        )

    with pytest.raises(
        SystemExit, match="toy_1_8_seed0_tta: its teacher comes from toy_1_8_seed0, which .* has not run"
    ):
        semisup.make_config(args("tta", semisup.UNTAGGED), tmp_path)
    semisup.make_config(args(None), tmp_path)
    path, experiments = semisup.make_config(args("tta", semisup.UNTAGGED), tmp_path)
    assert [e["teacher_from"] for e in experiments.values()] == ["toy_1_8_seed0", "toy_1_8_seed1"]
    config = yaml.safe_load(path.read_text())
    assert list(config["experiments"]) == ["toy_1_8_seed0", "toy_1_8_seed1", "toy_1_8_seed0_tta", "toy_1_8_seed1_tta"]
    _, experiments = semisup.make_config(args("r25", "tta"), tmp_path)  # a tagged source
    assert experiments["toy_1_8_seed1_r25"]["teacher_from"] == "toy_1_8_seed1_tta"
    # the run makes its own experiments only, though its config holds them all (it once trained
    # ST for every registered experiment under this run's methods)
    path, experiments = semisup.make_config(args("tta", semisup.UNTAGGED, methods=["SupOnly", "ST++"]), tmp_path)
    targets = semisup.own_targets(path, experiments)
    assert {t.split("/")[1] for t in targets} == {"toy_1_8_seed0_tta", "toy_1_8_seed1_tta"}
    assert "results/toy_1_8_seed0_tta/summary.tsv" in targets and not [t for t in targets if "st_student" in t]
    assert "results/toy_1_8_seed0_tta/stpp_student2/test/metrics.json" in targets
    assert "results/toy_1_8_seed0_tta/review_sheet" in targets
    # tabulating from records registers nothing
    semisup.make_config(args("other"), tmp_path, registry=False)
    assert "toy_1_8_seed0_other" not in yaml.safe_load((tmp_path / "experiments.yaml").read_text())
    with pytest.raises(SystemExit, match="--teacher-from needs --tag"):
        semisup.main(["--dataset", "toy", "--teacher-from", "x", "--workdir", str(tmp_path), "--from-records"])


def test_records_keep_per_image_matrices_and_the_tables_give_intervals(root, tmp_path):
    """Per-image confusion matrices go into the record's .npz and come back as the paired intervals."""
    from stages.evaluate import write_per_image_confusion

    work, records = tmp_path / "work", tmp_path / "records"
    rng = np.random.default_rng(0)
    names = []
    for seed in (0, 1):
        name = f"toy_1_8_seed{seed}"
        names.append(name)
        r = work / "results" / name
        for k, (_, model) in enumerate(semisup.METHODS):
            for folder in (r / model, r / model / "test"):
                folder.mkdir(parents=True, exist_ok=True)
                # 20 images; a later method gets more pixels right
                per_image = {}
                for i in range(20):
                    right = int(rng.integers(50, 60)) + 10 * k
                    per_image[f"img{i}"] = torch_matrix([[right, 100 - right], [0, 100]])
                write_per_image_confusion(folder / "per_image_confusion.npz", per_image)
                from stages.seg.metrics import mean_iou

                total = sum(per_image.values())
                (folder / "metrics.json").write_text(json.dumps({"miou": mean_iou(total)}))
        record, confusion = semisup.make_record(name, toy_experiment(root), work, ["SupOnly", "ST", "ST++"])
        assert confusion["test/ST"].shape == (20, 2, 2) and list(confusion["val/ids"])[:2] == ["img0", "img1"]
        semisup.write_record(records, name, record, confusion)
    loaded = {n: json.loads((records / f"{n}.json").read_text()) for n in names}
    confusion = {n: semisup.read_confusion(records, n) for n in names}
    table = semisup.tables(TABLE_ARGS, loaded, confusion)
    section = table.split("## Differences in mIoU points on test")[1].split("##")[0]
    row = next(line for line in section.splitlines() if line.startswith("| toy_1_8_seed0 |"))
    cells = [c.strip() for c in row.strip("|").split("|")][1:]
    diff, low, high = (float(x) for x in cells[0].replace("[", "").replace("]", "").replace(",", "").split())
    assert low < diff < high and low > 0  # ST is 10 pixels in 100 better on every image
    assert "**toy_1_8, mean of 2 seeds, t-interval**" in section and "**toy_1_8, pooled paired bootstrap**" in section
    assert semisup.read_confusion(records, "toy_1_8_seed9") == {}  # an old record: values, no intervals
    # with three rounds ST++ final is student 3, as the workflow's plan has it
    three = toy_experiment(root)
    three.setdefault("stpp", {})["rounds"] = 3
    student3 = work / "results" / names[0] / "stpp_student3"
    student3.mkdir()
    (student3 / "metrics.json").write_text(json.dumps({"miou": 0.125}))
    record, _ = semisup.make_record(names[0], three, work, ["SupOnly", "ST", "ST++"])
    assert record["miou"]["val"]["ST++ final"] == 12.5


def torch_matrix(rows):
    import torch

    return torch.tensor(rows, dtype=torch.int64)


def test_demo_benchmark_reads_a_finished_seed_and_its_audit(tmp_path):
    """benchmarks/demo.py on a seed folder whose run is done: no run, the summary and the audit
    read back (it called pseudo_mask_audit with an old signature once)."""
    demo = helpers.load("demo")  # it imports semisup by name, the module above
    results = tmp_path / "seed0" / "results" / "demo"
    (results / "audit").mkdir(parents=True)
    (results / "summary.tsv").write_text("method\tmiou\nSupOnly\t40.0\nST\t45.0\n")
    (results / "audit" / "audit.json").write_text(
        json.dumps(
            {
                "ground_truth": True,
                "teacher": {"all": {"miou": 0.5}, "reliable": {"miou": 0.6}, "unreliable": {"miou": 0.4}},
                "spearman_score_vs_miou": 0.3,
            }
        )
    )
    (tmp_path / "seed0" / "wall_seconds.txt").write_text("12.5\n")
    row = demo.run_seed(0, Namespace(workdir=str(tmp_path), force=False, set=[], cores=1))
    assert row["miou"] == {"SupOnly": 40.0, "ST": 45.0} and row["wall"] == 12.5
    assert row["pseudo"]["all"] == 50.0 and row["pseudo"]["spearman"] == 0.3
    assert math.isnan(row["pseudo"]["relabeled"])  # not measured: no student-1 relabels
    assert row["confusion"] == {}  # no per-image matrices: the differences are given bare
    # the matrices are read from the workflow's models: under stpp.rounds: 3 ST++ final is student 3
    models = dict(semisup.workflow_plan(demo.seed_config(0, ["stpp.rounds=3"])).method_models("demo"))
    assert models["ST++ final"] == "stpp_student3"
    assert dict(semisup.workflow_plan(demo.seed_config(0, [])).method_models("demo"))["ST++ final"] == "stpp_student2"


def test_demo_benchmark_gives_each_difference_with_its_intervals():
    """The demo's table of differences: per seed a paired bootstrap over the val images, over
    seeds a t-interval and the pooled bootstrap. A case with a known answer: ST labels every pixel
    right and SupOnly half of each image's foreground wrong, the same on every image, so that
    ST - SupOnly is exact (no spread, the interval one point) and ST++ final (= ST) - ST is 0."""
    demo = helpers.load("demo")
    right = np.tile(np.diag([50, 50]), (4, 1, 1))  # 4 images, 2 classes, 50 pixels each
    half = np.tile(np.array([[50, 0], [25, 25]]), (4, 1, 1))  # foreground: 25 of 50 taken for background
    rows = [
        {
            "seed": s,
            "miou": {"SupOnly": 58.33, "ST": 100.0, "ST++ final": 100.0, "ST++ student 1": 100.0},
            "confusion": {"SupOnly": half, "ST": right, "ST++ final": right, "ST++ student 1": right},
        }
        for s in (0, 1)
    ]
    lines = demo.interval_table(rows)
    table = {line.split(" | ")[0].strip("| *"): line.split(" | ")[1:] for line in lines if line.startswith("| ")}
    # SupOnly's IoU: background 50 / 75, foreground 25 / 50; mean 58.3
    assert table["0"][0] == "+41.7 [+41.7, +41.7]" and table["0"][1] == "+0.0 [+0.0, +0.0]"
    assert table["mean of 2, t-interval"][0].startswith("+41.7 [+41.7, +41.7]")
    assert table["pooled paired bootstrap"][0] == "+41.7 [+41.7, +41.7]"
    # a seed without the matrices (an old run): its difference bare, no pooled interval
    rows[1]["confusion"] = {}
    table = {
        line.split(" | ")[0].strip("| *"): line.split(" | ")[1:]
        for line in demo.interval_table(rows)
        if line.startswith("| ")
    }
    assert table["1"][0] == "+41.7" and table["pooled paired bootstrap"][0] == "-"


def test_a_record_from_before_train_init_is_one_of_shared_heads(root, tmp_path):
    """Records made before train.init lack it and had every model start from one head: they match
    train.init: shared, not the new default; new records name the setting even when defaulted."""
    record, _ = semisup.make_record("toy_1_8_seed0", toy_experiment(root), tmp_path, ["SupOnly"])
    assert record["settings"]["train"]["init"] == "per_model"
    assert record["settings"]["stpp"]["student_schedule"] == "epochs"
    del record["settings"]["train"]["init"], record["settings"]["stpp"]
    write_json(tmp_path / "records" / "toy_1_8_seed0.json", record)
    with pytest.raises(SystemExit, match=r"other settings \(train.init\)"):
        semisup.load_records(tmp_path / "records", {"toy_1_8_seed0": toy_experiment(root)})
    shared = toy_experiment(root, init="shared")
    assert semisup.load_records(tmp_path / "records", {"toy_1_8_seed0": shared})


def test_every_set_option_counts():
    """Two --set options set both keys: the second once replaced the first, and issue 30's
    reviewed run trained under the default schedule instead of the one it was given."""
    args = semisup.parse_args(
        ["--dataset", "msrc21", "--set", "stpp.student_schedule=labeled_passes", "--set", "review.exclude=x.txt", "a=1"]
    )
    assert args.set == ["stpp.student_schedule=labeled_passes", "review.exclude=x.txt", "a=1"]
