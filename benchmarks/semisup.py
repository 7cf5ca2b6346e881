"""Multi-seed SupOnly / ST / ST++ benchmark: runs the workflow per split seed and tabulates it.

    python benchmarks/semisup.py --dataset msrc21 [--seeds 0 1 2] [--splits 1_8] [--cores 2] \\
        [--set stpp.score_tta=true --tag tta --teacher-from untagged] [--workdir runs/semisup]

For every split and seed it writes an experiment into a generated config and runs the real
workflow (``snakemake --cores N`` in ``--workdir``; a re-run redoes only what is missing or out
of date). Seed 0 is the data set's shipped split; seed S > 0 draws a split of the same size from
``train.txt`` with ``random.Random(S)``. Every list the workflow reads (labeled, unlabeled, val,
test) is a copy under ``<workdir>/splits/<dataset>/``, rewritten only when its content changes,
so that a data set copied or unpacked again (newer files) re-runs nothing.

Everything is measured by the workflow itself: each experiment has ``data.test: test.txt``, so
the evaluate rules score every model on val and on test and write each image's confusion
matrix; the audit (``results/<exp>/audit/audit.json``) measures the teacher's pseudo-masks
against the unlabeled images' true masks (kept in the lists for auditing only): mIoU on all
unlabeled images, on the reliable and the unreliable half, the unreliable half as ST++ student 1
relabeled it, and the Spearman correlation of the stability score with each image's mIoU.

Ablations that leave the teacher as it is (R, selection, TTA, the student schedule, strong
augmentation) share one: ``--teacher-from TAG`` (``untagged`` for the untagged run) sets the
experiment's ``teacher_from`` to the experiment of the same split and seed with that tag, and
the workflow copies that teacher (rule ``copy_teacher``) and checks that no teacher setting
differs. The work directory keeps every experiment it has run in ``experiments.yaml``, and each
run's config holds them all (finished ones cost Snakemake a look), so that the one a teacher
comes from is there to depend on.

Each experiment's figures go to a record, ``benchmarks/records/<experiment>.json``
(``--records``): its settings (the data lists as digests of their lines, so that a record made
in another work directory or machine still matches), the date, the machine, the code's commit,
mIoU and per-class IoU on val and test for each model, the pseudo-mask audit and the stage
times; beside it ``<experiment>.confusion.npz``, every model's per-image confusion matrices on
val and test (compressed). The records are the durable result, to be committed; the work
directory is scratch that a lost machine takes with it. ``--from-records`` runs nothing and
tabulates the records of the experiments that the other arguments name (refusing one whose
settings differ), so that a table can join seeds that ran in different sessions.

The table (``<workdir>/semisup_<dataset>[_<tag>].md``, also printed) gives one row per split and
seed and the mean +- sample std over seeds, on test and on val, and then every difference
(ST - SupOnly, ST++ final - ST, ST++ final - SupOnly, student 1 - SupOnly) with its 90 %
interval: per seed a paired bootstrap over that list's images (2,000 resamples, seed 0); over
seeds the mean with a t-interval, and the pooled paired bootstrap (each seed's images resampled
on their own, the seeds' differences averaged). An interval that spans 0 says the difference is
not measurable at this size. Nothing here tunes anything: settings come from
``config/<dataset>.yaml`` and ``--set``. Not run by the test suite (hours on a CPU).
"""

from __future__ import annotations

import argparse
import csv
import glob
import hashlib
import json
import math
import random
import re
import statistics
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import yaml
from common import RECORDS, REPO, code_version, layout, machine, read_confusion, workflow_plan, write_record

from stages.evaluate import read_per_image_confusion
from stages.seg.data import read_split_list, write_split_list
from stages.seg.files import atomic_path
from stages.seg.metrics import paired_bootstrap_interval, t_interval_90
from stages.workflow import flat

# The record's method rows (ST++ final: student 2; a third round's is the plan's, make_record).
METHODS = tuple(layout.method_models(("SupOnly", "ST", "ST++"), rounds=2))


def _labeling(model: str, subset: str) -> list:
    return [(rule, {"model": model, "subset": subset}) for rule in ("label_shard", "merge_label_shards")]


# Stage wall times: (column, the jobs whose benchmark files it sums) in pipeline order.
STAGES = (
    ("teacher", [("train_teacher", {})]),
    ("label", _labeling("teacher", "unlabeled")),
    ("score", [("score_shard", {}), ("merge_score_shards", {})]),
    ("ST", [("train_student", {"model": "st_student"})]),
    ("student 1", [("train_student", {"model": "stpp_student1"})]),
    ("relabel", _labeling("stpp_student1", "unreliable")),
    ("student 2", [("train_student", {"model": "stpp_student2"})]),
    ("relabel 2", _labeling("stpp_student2", "unlabeled")),
    ("student 3", [("train_student", {"model": "stpp_student3"})]),
    ("evaluate", [("evaluate", {"model": "*"}), ("evaluate_test", {"model": "*"})]),
)
# The differences the tables give with their intervals: (label, method a, method b) for b - a.
DIFFERENCES = (
    ("ST - SupOnly", "SupOnly", "ST"),
    ("ST++ final - ST", "ST", "ST++ final"),
    ("ST++ final - SupOnly", "SupOnly", "ST++ final"),
    ("student 1 - SupOnly", "SupOnly", "ST++ student 1"),
)
LISTS = ("val", "test")
# Where the workflow writes a model's figures on each list (rules evaluate, evaluate_test).
EVALUATIONS = {"val": layout.OUTPUTS["evaluate"], "test": layout.OUTPUTS["evaluate_test"]}
UNTAGGED = "untagged"


def parse_args(argv=None):
    p = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0], formatter_class=argparse.ArgumentDefaultsHelpFormatter
    )
    p.add_argument("--dataset", required=True, help="name of config/<dataset>.yaml (msrc21, camvid)")
    p.add_argument("--config", default=None, help="base config (default: config/<dataset>.yaml)")
    p.add_argument("--splits", nargs="+", default=["1_8"], help="split folders under <root>/splits/")
    p.add_argument("--seeds", nargs="+", type=int, default=[0, 1, 2], help="0 = the shipped split")
    p.add_argument(
        "--set",
        nargs="+",
        action="extend",  # `--set a=1 --set b=2` sets both (a second --set once replaced the first)
        default=[],
        metavar="KEY=VALUE",
        help="experiment setting overrides, e.g. stpp.reliable_ratio=0.25 (YAML values); may repeat",
    )
    p.add_argument("--tag", default=None, help="name of this variant (experiment and table suffix)")
    p.add_argument(
        "--methods",
        nargs="+",
        default=None,
        choices=("SupOnly", "ST", "ST++"),
        help="methods to run (default: the config's)",
    )
    p.add_argument(
        "--teacher-from",
        default=None,
        metavar="TAG",
        help=f"with --tag: copy the teacher of the run tagged TAG ('{UNTAGGED}': the untagged run) of the "
        "same split and seed, which this work directory must have run (see above)",
    )
    p.add_argument(
        "--workdir",
        default=str(REPO / "runs" / "semisup"),
        help="Snakemake working directory: results/, logs/, benchmarks/ and the tables",
    )
    p.add_argument("--cores", type=int, default=2)
    p.add_argument("--records", default=str(RECORDS), help="folder of the per-experiment result records (commit them)")
    p.add_argument(
        "--from-records",
        action="store_true",
        help="run nothing: tabulate the records of the experiments these arguments name",
    )
    p.add_argument(
        "--snakemake-args",
        nargs=argparse.REMAINDER,
        default=[],
        help="passed on to snakemake (must come last), targets included; without it, the targets of this "
        "run's experiments alone",
    )
    return p.parse_args(argv)


def parse_setting(item: str) -> tuple[str, object]:
    """``KEY=VALUE`` of ``--set`` -> (dotted key, YAML value)."""
    key, sep, value = item.partition("=")
    if not sep:
        raise SystemExit(f"--set expects KEY=VALUE, got {item!r}")
    return key, yaml.safe_load(value)


def set_key(experiment: dict, dotted: str, value) -> None:
    node = experiment
    *parents, leaf = dotted.split(".")
    for key in parents:
        node = node.setdefault(key, {})
    node[leaf] = value


def split_lists(root: Path, split: str, seed: int, out: Path) -> tuple[str, str]:
    """Labeled and unlabeled lists for ``seed`` under ``out`` (one folder per data set, as two data
    sets share a work directory): seed 0 copies the shipped ones, S > 0 draws the shipped labeled
    count from train.txt, and the rest, less copies of a labeled image, is unlabeled."""
    shipped = root / "splits" / split
    folder = out / f"{split}_seed{seed}"
    labeled, unlabeled = folder / "labeled.txt", folder / "unlabeled.txt"
    if seed == 0:
        write_list_if_changed(labeled, read_split_list(shipped / "labeled.txt"))
        write_list_if_changed(unlabeled, read_split_list(shipped / "unlabeled.txt"))
        return str(labeled), str(unlabeled)
    train = read_split_list(root / "train.txt", need_masks=True)
    size = len(read_split_list(shipped / "labeled.txt"))
    chosen = set(random.Random(seed).sample(range(len(train)), size))
    write_list_if_changed(labeled, [s for i, s in enumerate(train) if i in chosen])  # train.txt order
    # An image whose bytes a labeled image has is not unlabeled (MSRC-21's train/9_10_s.jpg is
    # train/1_26_s.jpg; the data check refuses such a pair)
    taken = {content(root / s.image) for i, s in enumerate(train) if i in chosen} - {None}
    write_list_if_changed(
        unlabeled, [s for i, s in enumerate(train) if i not in chosen and content(root / s.image) not in taken]
    )
    return str(labeled), str(unlabeled)


def content(path: Path) -> str | None:
    """SHA-256 of a file's bytes; None for a file that is not there (the data check names it)."""
    try:
        return hashlib.sha256(path.read_bytes()).hexdigest()
    except OSError:
        return None


def write_list_if_changed(path: Path, samples: list) -> None:
    """Leave an identical list alone, so that its mtime says when its content last changed."""
    if path.exists() and [s.line() for s in read_split_list(path)] == [s.line() for s in samples]:
        return
    write_split_list(path, samples)


def register(workdir: Path, experiments: dict) -> dict:
    """Every experiment this work directory has run, these ones (new or changed) included: the
    generated config holds them all, so that a teacher_from names one that is there."""
    path = workdir / "experiments.yaml"
    known = yaml.safe_load(path.read_text()) if path.exists() else {}
    known.update(experiments)
    for name, e in experiments.items():
        if e.get("teacher_from") and e["teacher_from"] not in known:
            raise SystemExit(
                f"{name}: its teacher comes from {e['teacher_from']}, which {workdir} has not run; "
                "run that experiment first (the same command without --teacher-from, with its tag)"
            )
    with atomic_path(path) as tmp:
        tmp.write_text(yaml.safe_dump(known, sort_keys=False))
    return known


def make_config(args, workdir: Path, registry: bool = True) -> tuple[Path, dict]:
    base_path = Path(args.config or REPO / "config" / f"{args.dataset}.yaml")
    base = yaml.safe_load(base_path.read_text())
    (template,) = base["experiments"].values()
    root = (REPO / template["data"]["root"]).resolve()
    lists = workdir / "splits" / args.dataset
    val, test = lists / "val.txt", lists / "test.txt"
    write_list_if_changed(val, read_split_list(root / template["data"]["val"]))
    write_list_if_changed(test, read_split_list(root / "test.txt"))
    experiments = {}
    for split in args.splits:
        for seed in args.seeds:
            e = json.loads(json.dumps(template))
            e["data"]["root"] = str(root)
            e["data"]["labeled"], e["data"]["unlabeled"] = split_lists(root, split, seed, lists)
            e["data"]["val"], e["data"]["test"] = str(val), str(test)
            for item in args.set:
                set_key(e, *parse_setting(item))
            stem = f"{args.dataset}_{split}_seed{seed}"
            if getattr(args, "teacher_from", None):
                e["teacher_from"] = stem if args.teacher_from == UNTAGGED else f"{stem}_{args.teacher_from}"
            experiments[stem + (f"_{args.tag}" if args.tag else "")] = e
    config = {**base, "experiments": register(workdir, experiments) if registry else experiments}
    if args.methods:
        config["methods"] = args.methods
    path = workdir / f"config_{args.dataset}{'_' + args.tag if args.tag else ''}.yaml"
    path.write_text(yaml.safe_dump(config, sort_keys=False))
    return path, experiments


def run(cmd: list[str], cwd: Path) -> None:
    print("+", " ".join(cmd), flush=True)
    subprocess.run(cmd, cwd=cwd, check=True)


def pseudo_mask_audit(name: str, workdir: Path) -> dict:
    """The workflow's own audit (``results/<exp>/audit/audit.json``, rule ``audit``) in a record's
    terms: teacher pseudo-mask mIoU on all unlabeled images and, where ST++ ran, on the reliable and
    unreliable halves, the unreliable half as student 1 relabeled it, and Spearman(score, image
    mIoU). Fractions; None where the audit could not measure it; {} without an audit with ground truth."""
    path = workdir / layout.fill(layout.AUDIT_JSON, experiment=name)
    if not path.exists():  # SupOnly alone: no pseudo-masks, no audit
        return {}
    audit = json.loads(path.read_text())
    if not audit["ground_truth"]:
        return {}
    teacher = audit["teacher"]
    return {
        "all": teacher["all"]["miou"],
        "reliable": teacher.get("reliable", {}).get("miou"),
        "unreliable": teacher.get("unreliable", {}).get("miou"),
        "relabeled": audit.get("student1_relabel", {}).get("unreliable", {}).get("miou"),
        "spearman": audit.get("spearman_score_vs_miou"),
    }


def stage_minutes(name: str, e: dict, workdir: Path) -> dict:
    """Minutes per stage from Snakemake's benchmark files; a copied teacher's are its source's."""
    out = {}
    for column, jobs in STAGES:
        seconds = 0.0
        owner = (e.get("teacher_from") or name) if column == "teacher" else name
        patterns = [
            layout.fill(layout.benchmark_path(rule), experiment=owner, shard="*", shards="*", **w) for rule, w in jobs
        ]
        for path in sorted({p for pattern in patterns for p in glob.glob(str(workdir / pattern))}):
            with open(path, newline="") as f:
                seconds += sum(float(row["s"]) for row in csv.DictReader(f, delimiter="\t"))
        out[column] = seconds / 60
    return out


def fmt(values: list[float], signed: bool = False) -> str:
    """One value, or mean ± sample std of several; '-' for a method that was not run."""
    if any(math.isnan(v) for v in values):
        return "-"
    sign = "+" if signed else ""
    if len(values) == 1:
        return f"{values[0]:{sign}.1f}"
    return f"{statistics.mean(values):{sign}.1f} ± {statistics.stdev(values):.1f}"


def finite(value: float) -> float | None:
    """JSON has no NaN: a figure that was not measured is null."""
    return None if value is None or math.isnan(value) else value


def list_digest(path: str | Path) -> str:
    lines = "".join(s.line() + "\n" for s in read_split_list(path))
    return "sha256:" + hashlib.sha256(lines.encode()).hexdigest()


def record_settings(e: dict) -> dict:
    """What an experiment's result depends on, wherever its data and work directory are: its
    settings, with the data root left out and each list replaced by a digest of its lines."""
    settings = json.loads(json.dumps(e))
    data = settings["data"]
    root = data.pop("root")
    data.pop("palette", None)  # colours of exported masks and figures: not a setting of the result
    for key in ("labeled", "unlabeled", "val", "test"):
        if data.get(key) is not None:
            data[key] = list_digest(Path(root) / data[key])
    given = flat(settings)
    for dotted, default in schema_defaults(RECORDED_DEFAULTS).items():
        if dotted not in given:  # in the record even where the config left it to the schema
            set_key(settings, dotted, default)
    return settings


# Settings whose default changed (0.2) or that records made before them lack: a record names
# them explicitly, and a record without them had the old behaviour (LEGACY).
RECORDED_DEFAULTS = ("train.init", "stpp.student_schedule")
LEGACY = {"train.init": "shared", "stpp.student_schedule": "epochs"}


def schema_defaults(keys) -> dict:
    """The schema's defaults of experiment settings given as dotted keys."""
    schema = yaml.safe_load((REPO / "config" / "config.schema.yaml").read_text())
    out = {}
    for dotted in keys:
        node = schema["$defs"]["experiment"]
        for key in dotted.split("."):
            node = node["properties"][key]
        out[dotted] = node["default"]
    return out


def make_record(name: str, e: dict, workdir: Path, methods: list[str], rounds: int = 2) -> tuple[dict, dict]:
    """One experiment's figures, read from its work directory, and its per-image confusion
    matrices ({"<list>/ids": ids, "<list>/<method>": (N, C, C)}; empty where none were written).
    ``rounds``: the config's; which model each method row is (ST++ final: student 2, or 3 with
    three rounds) is the workflow's own plan's (``Plan.method_models``)."""
    models = dict(workflow_plan({"experiments": {name: e}, "methods": methods, "rounds": rounds}).method_models(name))
    record = {
        "experiment": name,
        "date": time.strftime("%Y-%m-%d"),
        "machine": machine(),
        "code": code_version(),
        "methods": methods,
        "settings": record_settings(e),
        "miou": {},
        "iou": {},
    }
    confusion = {}
    for list_name in LISTS:
        record["miou"][list_name], record["iou"][list_name] = {}, {}
        for method, model in METHODS:
            paths = {
                k: workdir / layout.fill(p, experiment=name, model=models.get(method, model))
                for k, p in EVALUATIONS[list_name].items()
            }
            metrics = json.loads(paths["metrics"].read_text()) if paths["metrics"].exists() else {}
            record["miou"][list_name][method] = finite(100 * metrics["miou"]) if metrics else None
            record["iou"][list_name][method] = metrics.get("iou")
            if paths["per_image"].exists():
                ids, cms = read_per_image_confusion(paths["per_image"])
                known = confusion.setdefault(f"{list_name}/ids", ids)
                if list(known) != ids:
                    raise SystemExit(f"{paths['per_image']}: its images differ from the other models'")
                confusion[f"{list_name}/{method}"] = cms.astype(np.int32)  # pixel counts of one image
    audit = pseudo_mask_audit(name, workdir)
    record["pseudo_masks"] = {
        k: None if v is None else finite(v if k == "spearman" else 100 * v) for k, v in audit.items()
    } or None
    record["stage_minutes"] = stage_minutes(name, e, workdir)
    return record, confusion


def load_records(folder: Path, experiments: dict) -> dict:
    """The records of ``experiments``; an error names a missing one or a setting that differs."""
    records, problems = {}, []
    for name, e in experiments.items():
        path = folder / f"{name}.json"
        if not path.exists():
            problems.append(f"{path}: no record; run this command without --from-records to make it")
            continue
        record = json.loads(path.read_text())
        expected, found = flat(record_settings(e)), flat(record["settings"])
        found = {**LEGACY, **found}  # a record from before these settings: the behaviour of then
        if "data.test" not in found:  # test figures measured outside the workflow, before data.test
            expected.pop("data.test", None)
        differ = sorted(k for k in expected.keys() | found.keys() if expected.get(k) != found.get(k))
        if differ:
            problems.append(
                f"{path}: made with other settings ({', '.join(differ)}); run without --from-records to measure these"
            )
            continue
        records[name] = record
    if problems:
        raise SystemExit("\n".join(problems))
    return records


def nan(value: float | None) -> float:
    return float("nan") if value is None else value


def group_of(name: str) -> str:
    """The experiments' name without its split seed: the seeds of one setting form a group."""
    return re.sub(r"_seed\d+", "", name).removesuffix(" (t)")


def interval(diff: float, low: float, high: float) -> str:
    """'+1.2 [-0.4, +2.9]' in points; the interval left out where it could not be computed."""
    if math.isnan(diff):
        return "-"
    if math.isnan(low):
        return f"{diff:+.1f}"
    return f"{diff:+.1f} [{low:+.1f}, {high:+.1f}]"


def difference_header(first: str) -> list[str]:
    """The two header lines of a table of DIFFERENCES whose first column is ``first``."""
    return [
        "| " + " | ".join([first, *(label for label, _, _ in DIFFERENCES)]) + " |",
        "|---|" + "---|" * len(DIFFERENCES),
    ]


def difference_cells(miou: dict, confusion: dict) -> list[str]:
    """One run's DIFFERENCES (b - a), each with its paired-bootstrap 90 % interval over the images
    where ``confusion`` (method -> per-image matrices) holds both methods, else bare."""
    cells = []
    for _, a, b in DIFFERENCES:
        if a in confusion and b in confusion:
            cells.append(interval(*(100 * v for v in paired_bootstrap_interval([(confusion[a], confusion[b])]))))
        else:
            cells.append(interval(nan(miou.get(b)) - nan(miou.get(a)), float("nan"), float("nan")))
    return cells


def seeds_cells(mious: list[dict], confusions: list[dict]) -> tuple[list[str], list[str]]:
    """Over the runs of several seeds: each difference's mean with its t-interval, and the pooled
    paired bootstrap over all their images ("-" where a run lacks a figure or its matrices)."""
    t_cells, pooled = [], []
    for _, a, b in DIFFERENCES:
        diffs = [nan(m.get(b)) - nan(m.get(a)) for m in mious]
        t_cells.append("-" if any(math.isnan(d) for d in diffs) else interval(*t_interval_90(diffs)))
        if all(a in c and b in c for c in confusions):
            both = [(c[a], c[b]) for c in confusions]
            pooled.append(interval(*(100 * v for v in paired_bootstrap_interval(both))))
        else:
            pooled.append("-")
    return t_cells, pooled


def list_confusion(confusion: dict, list_name: str) -> dict:
    """A record's per-image matrices on one list, by method ({"<list>/<method>": ...} -> {method: ...})."""
    prefix = f"{list_name}/"
    return {k.removeprefix(prefix): v for k, v in confusion.items() if k.startswith(prefix) and k != f"{prefix}ids"}


def difference_tables(records: dict, confusion: dict) -> list[str]:
    """Per list: each difference per seed with its paired-bootstrap 90 % interval over images, and
    for a group of seeds the mean with its t-interval and the pooled paired bootstrap."""
    lines = []
    for list_name in ("test", "val"):
        lines += [
            f"## Differences in mIoU points on {list_name}, with 90 % intervals",
            "",
            "Per seed: paired bootstrap over the list's images (2,000 resamples). Over seeds: the mean's "
            "t-interval, then the pooled paired bootstrap. An interval that contains 0: not measurable at this "
            "size.",
            "",
            *difference_header("experiment"),
        ]
        groups: dict[str, list[str]] = {}
        for name, record in records.items():
            cells = difference_cells(record["miou"][list_name], list_confusion(confusion.get(name, {}), list_name))
            lines.append(f"| {name} | " + " | ".join(cells) + " |")
            groups.setdefault(group_of(name), []).append(name)
        for group, members in groups.items():
            if len(members) < 2:
                continue
            t_cells, pooled_cells = seeds_cells(
                [records[m]["miou"][list_name] for m in members],
                [list_confusion(confusion.get(m, {}), list_name) for m in members],
            )
            lines.append(f"| **{group}, mean of {len(members)} seeds, t-interval** | " + " | ".join(t_cells) + " |")
            lines.append(f"| **{group}, pooled paired bootstrap** | " + " | ".join(pooled_cells) + " |")
        lines.append("")
    return lines


def tables(args, records: dict, confusion: dict | None = None) -> str:
    rows, sources = [], []
    for name, record in records.items():
        label = name
        if record.get("source"):  # not written by this script from a work directory
            sources.append(f"{name}: {record['source']}")
            label += " (t)"
        row = {"experiment": label}
        for split_name in ("val", "test"):
            for method, _ in METHODS:
                row[f"{split_name} {method}"] = nan(record["miou"][split_name].get(method))
        row.update({f"pseudo {k}": nan(v) for k, v in (record.get("pseudo_masks") or {}).items()})
        row.update({f"min {k}": nan(v) for k, v in (record.get("stage_minutes") or {}).items()})
        rows.append(row)

    measured = sorted(
        {
            f"{r['date']}, {r['machine']['device']}, {r['machine']['cores']} cores of {r['machine']['cpu']}"
            f" ({r['machine'].get('cpu_capability', 'vector width not recorded')}), torch {r['machine']['torch']}"
            for r in records.values()
        }
    )
    codes = sorted({r.get("code") or "not recorded" for r in records.values()})
    lines = [
        f"# {args.dataset} {' '.join(args.splits)}{' ' + args.tag if args.tag else ''}",
        "",
        f"config {args.config or f'config/{args.dataset}.yaml'}"
        + (f", --set {' '.join(args.set)}" if args.set else "")
        + "; measured "
        + "; ".join(measured)
        + "; code "
        + ", ".join(c[:12] + c[40:] for c in codes),
        "",
    ]  # short hash, "-dirty" kept
    for split_name in ("test", "val"):
        cols = [m for m, _ in METHODS]
        lines += [
            f"## mIoU (%) on {split_name}",
            "",
            "| experiment | " + " | ".join(cols) + " | ST - SupOnly | ST++ final - ST |",
            "|---|" + "---|" * (len(cols) + 2),
        ]
        groups = {}
        for row in rows:
            values = [row[f"{split_name} {m}"] for m in cols]
            lines.append(
                f"| {row['experiment']} | "
                + " | ".join(fmt([v]) for v in values)
                + f" | {fmt([values[1] - values[0]], True)} | {fmt([values[3] - values[1]], True)} |"
            )
            groups.setdefault(group_of(row["experiment"]), []).append(values)
        for group, members in groups.items():
            if len(members) > 1:
                cells = [fmt([v[i] for v in members]) for i in range(len(cols))]
                cells += [fmt([v[1] - v[0] for v in members], True), fmt([v[3] - v[1] for v in members], True)]
                lines.append(f"| **{group}, mean ± std of {len(members)}** | " + " | ".join(cells) + " |")
        lines.append("")
    lines += difference_tables(records, confusion or {})
    lines += audit_and_time_tables(rows, sources)
    return "\n".join(lines).rstrip() + "\n"


def audit_and_time_tables(rows: list[dict], sources: list[str]) -> list[str]:
    """The tables' pseudo-mask section and wall times per stage, and where records came from."""
    lines = [
        "## Teacher pseudo-masks against the true masks of the unlabeled images",
        "",
        "| experiment | mIoU all | reliable half | unreliable half | unreliable, relabeled by student 1 "
        "| Spearman(score, image mIoU) |",
        "|---|---|---|---|---|---|",
    ]
    for row in rows:
        if "pseudo all" in row and not math.isnan(row["pseudo all"]):
            spearman_cell = "-" if math.isnan(row["pseudo spearman"]) else f"{row['pseudo spearman']:.2f}"
            lines.append(
                f"| {row['experiment']} | "
                + " | ".join(fmt([row[f"pseudo {k}"]]) for k in ("all", "reliable", "unreliable", "relabeled"))
                + f" | {spearman_cell} |"
            )
    stage_cols = [c for c, _ in STAGES]
    lines += [
        "",
        "## Wall time per stage (minutes)",
        "",
        "| experiment | " + " | ".join(stage_cols) + " | total |",
        "|---|" + "---|" * (len(stage_cols) + 1),
    ]
    for row in rows:
        values = [row.get(f"min {c}", float("nan")) for c in stage_cols]
        lines.append(f"| {row['experiment']} | " + " | ".join(fmt([v]) for v in values) + f" | {fmt([sum(values)])} |")
    if sources:
        lines += ["", "(t) transcribed into a record by hand from the run's log; its work directory is lost:", ""]
        lines += [f"- {source}" for source in sources]
    return lines


def own_targets(config: Path, experiments: dict) -> list[str]:
    """What `snakemake` would make for these experiments alone (rule all, restricted): the
    generated config holds every experiment of the work directory (the registry), and its rule
    all would also train the methods of this run for the other tags' experiments (the ST of an
    equal-epochs run, identical to the labeled-passes run's, 30 minutes each)."""
    plan = workflow_plan(yaml.safe_load(config.read_text()))
    every = plan.audit_targets() + plan.test_targets()
    return [
        target
        for name in experiments
        for target in (
            layout.fill(layout.SUMMARY, experiment=name),
            layout.fill(layout.MANIFEST, experiment=name),
            *(t for t in every if t.startswith(f"results/{name}/")),
        )
    ]


def main(argv=None) -> None:
    args = parse_args(argv)
    workdir = Path(args.workdir).resolve()
    workdir.mkdir(parents=True, exist_ok=True)
    if args.teacher_from and not args.tag:
        raise SystemExit("--teacher-from needs --tag: the experiment that copies a teacher needs a name of its own")
    config, experiments = make_config(args, workdir, registry=not args.from_records)
    records_dir = Path(args.records)
    if args.from_records:
        records = load_records(records_dir, experiments)
    else:
        run(
            [
                sys.executable,
                "-m",
                "snakemake",
                "--snakefile",
                str(REPO / "Snakefile"),
                "--directory",
                str(workdir),
                "--cores",
                str(args.cores),
                "--configfile",
                str(config),
                "--rerun-incomplete",
                *(args.snakemake_args or own_targets(config, experiments)),
            ],
            REPO,
        )
        generated = yaml.safe_load(config.read_text())
        methods, rounds = generated["methods"], generated.get("rounds", 2)
        records = {}
        for name, e in experiments.items():
            records[name], confusion = make_record(name, e, workdir, methods, rounds)
            write_record(records_dir, name, records[name], confusion)
            print(f"wrote {records_dir / f'{name}.json'}")
    table = tables(args, records, {name: read_confusion(records_dir, name) for name in records})
    out = workdir / f"semisup_{args.dataset}{'_' + args.tag if args.tag else ''}.md"
    out.write_text(table)
    print(table)
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
