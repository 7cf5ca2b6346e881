"""Multi-seed SupOnly / ST / ST++ benchmark: runs the workflow per split seed and tabulates it.

    python benchmarks/semisup.py --dataset msrc21 [--seeds 0 1 2] [--splits 1_8] [--cores 2] \\
        [--set train.strong_augmentation=false --tag no_strong --methods ST --reuse-teacher] \\
        [--workdir runs/semisup]

For every split and seed it writes an experiment into one generated config and runs the real
workflow once on all of them (``snakemake --cores N`` in ``--workdir``; a re-run redoes only what
is missing or out of date). Seed 0 is the data set's shipped split; seed S > 0 draws a split of
the same size from ``train.txt`` with ``random.Random(S)``. Every list the workflow reads (labeled,
unlabeled, val) is a copy under ``<workdir>/splits/<dataset>/``, rewritten only when its content changes:
a data set that is copied or unpacked again gets newer files, and Snakemake would otherwise
retrain every model whose outputs carry no input checksums (those of ``--reuse-teacher``). Then,
outside the workflow:

- every model (SupOnly = the teacher, ST, ST++ student 1, ST++ final) is evaluated on ``test.txt``
  (the workflow evaluates on ``val.txt``): ``results/<exp>/<model>/metrics_test.json``;
- the workflow's pseudo-mask audit (``results/<exp>/audit/audit.json``: the teacher's
  pseudo-masks against the unlabeled images' true masks, kept in the lists for auditing only) is
  read into the record: mIoU on all unlabeled images, on the reliable and on the unreliable half,
  the unreliable half as ST++ student 1 relabeled it, and the Spearman correlation of the
  stability score with each image's pseudo-mask mIoU;
- each stage's wall time is read from Snakemake's ``benchmarks/`` files.

Each experiment's figures go to a record, ``benchmarks/records/<experiment>.json`` (``--records``):
its settings (the data lists as digests of their lines, so that a record made in another work
directory or on another machine still matches), the date, the machine, mIoU and per-class IoU on
val and test for each model, the pseudo-mask audit and the stage times. The records are the
durable result, to be committed; the work directory is scratch that a lost machine takes with it.
The tables are made from the records: ``--from-records`` runs nothing and tabulates the records of
the experiments that the other arguments name (refusing one whose settings differ), so that a
table can join seeds that ran in different sessions. Writes ``<workdir>/semisup_<dataset>[_<tag>].md``
(and prints it): one row per split and seed and the mean +- sample std over seeds, on val and on
test. Nothing here tunes anything: settings come from ``config/<dataset>.yaml`` and ``--set``.
Not run by the test suite (hours on a CPU).

Ablations (``--tag``) that leave the teacher as it is (R, the selection, TTA settings, strong
augmentation, which acts on pseudo-labeled images only) may ``--reuse-teacher``: the untagged run's
teacher folder of the same split and seed, and its data check, are hard-linked in before the
workflow starts, so the ablation trains only what differs, as the paper's ablations share their
teacher. Its pseudo-masks and stability scores are made again (they depend on ``label.*`` and
``stpp.score_tta``). Every other setting must equal the untagged run's record. The teacher's
stage times then repeat the untagged run's.
"""

from __future__ import annotations

import argparse
import csv
import glob
import hashlib
import json
import math
import os
import platform
import random
import shutil
import statistics
import subprocess
import sys
import time
from pathlib import Path

import torch
import yaml

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from stages.seg.data import read_split_list, write_split_list  # noqa: E402
from stages.seg.files import write_json  # noqa: E402

RECORDS = REPO / "benchmarks" / "records"
METHODS = (("SupOnly", "teacher"), ("ST", "st_student"), ("ST++ student 1", "stpp_student1"),
           ("ST++ final", "stpp_student2"))
# Stage wall times: (column, benchmark files under benchmarks/<exp>/) in pipeline order.
STAGES = (("teacher", "teacher/train.tsv"), ("label", "teacher/label_unlabeled/*.tsv"),
          ("score", "teacher/score_stability/*.tsv"), ("ST", "st_student/train.tsv"),
          ("student 1", "stpp_student1/train.tsv"), ("relabel", "stpp_student1/label_unreliable/*.tsv"),
          ("student 2", "stpp_student2/train.tsv"), ("evaluate", "*/evaluate.tsv"))


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    p.add_argument("--dataset", required=True, help="name of config/<dataset>.yaml (msrc21, camvid)")
    p.add_argument("--config", default=None, help="base config (default: config/<dataset>.yaml)")
    p.add_argument("--splits", nargs="+", default=["1_8"], help="split folders under <root>/splits/")
    p.add_argument("--seeds", nargs="+", type=int, default=[0, 1, 2], help="0 = the shipped split")
    p.add_argument("--set", nargs="*", default=[], metavar="KEY=VALUE",
                   help="experiment setting overrides, e.g. stpp.reliable_ratio=0.25 (YAML values)")
    p.add_argument("--tag", default=None, help="name of this variant (experiment and table suffix)")
    p.add_argument("--methods", nargs="+", default=None, choices=("SupOnly", "ST", "ST++"),
                   help="methods to run (default: the config's)")
    p.add_argument("--reuse-teacher", action="store_true",
                   help="with --tag: start from the untagged run's teacher (see above)")
    p.add_argument("--workdir", default=str(REPO / "runs" / "semisup"),
                   help="Snakemake working directory: results/, logs/, benchmarks/ and the tables")
    p.add_argument("--cores", type=int, default=2)
    p.add_argument("--records", default=str(RECORDS),
                   help="folder of the per-experiment result records (commit them)")
    p.add_argument("--from-records", action="store_true",
                   help="run nothing: tabulate the records of the experiments these arguments name")
    p.add_argument("--snakemake-args", nargs=argparse.REMAINDER, default=[],
                   help="passed on to snakemake (must come last)")
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
    sets share a work directory): seed 0 copies the shipped ones, S > 0 draws."""
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
    write_list_if_changed(unlabeled, [s for i, s in enumerate(train) if i not in chosen])
    return str(labeled), str(unlabeled)


def write_list_if_changed(path: Path, samples: list) -> None:
    """Leave an identical list alone, so that its mtime says when its content last changed."""
    if path.exists() and [s.line() for s in read_split_list(path)] == [s.line() for s in samples]:
        return
    write_split_list(path, samples)


def make_config(args, workdir: Path) -> tuple[Path, dict]:
    base_path = Path(args.config or REPO / "config" / f"{args.dataset}.yaml")
    base = yaml.safe_load(base_path.read_text())
    (template,) = base["experiments"].values()
    root = (REPO / template["data"]["root"]).resolve()
    lists = workdir / "splits" / args.dataset
    val = lists / "val.txt"
    write_list_if_changed(val, read_split_list(root / template["data"]["val"]))
    experiments = {}
    for split in args.splits:
        for seed in args.seeds:
            e = json.loads(json.dumps(template))
            e["data"]["root"] = str(root)
            e["data"]["labeled"], e["data"]["unlabeled"] = split_lists(root, split, seed, lists)
            e["data"]["val"] = str(val)
            for item in args.set:
                set_key(e, *parse_setting(item))
            name = f"{args.dataset}_{split}_seed{seed}" + (f"_{args.tag}" if args.tag else "")
            experiments[name] = e
    config = {**base, "experiments": experiments}
    if args.methods:
        config["methods"] = args.methods
    path = workdir / f"config_{args.dataset}{'_' + args.tag if args.tag else ''}.yaml"
    path.write_text(yaml.safe_dump(config, sort_keys=False))
    return path, experiments


# Settings a reused teacher does not depend on: it sees no pseudo-labeled image, and the tagged
# run labels and scores with it again (label.*, stpp.score_tta). stpp.checkpoints is not among
# them: K sets which checkpoints the teacher kept.
TEACHER_FREE = ("stpp.reliable_ratio", "stpp.selection", "stpp.score_tta", "stpp.student1_epochs",
                "stpp.student_schedule",
                "train.strong_augmentation", "label.")
# What is not brought along: the teacher's pseudo-masks and stability scores (made under the
# tagged run's label.* and stpp.score_tta; hard-linked, Snakemake would take them as they are,
# since files of a new experiment carry no record of the params that made them) and its resume state.
NOT_REUSED = ("*.shards", "resume", "pseudo_masks_*", "stability_scores*", "checkpoint_masks*", "label_*",
              "score_stability*")


def reuse_teacher(args, experiments: dict, workdir: Path) -> None:
    """Hard-link the untagged run's teacher (its training and evaluation outputs, logs and times)
    and its data check into each tagged experiment. The data check comes along because the
    tagged experiment's own, run anew, would be newer than the teacher and re-train it (for the
    same reason it is dated before the teacher: date_data_check_before_teacher). Refused
    when a teacher setting differs from the untagged run's record."""
    if not args.tag:
        raise SystemExit("--reuse-teacher needs --tag: it reuses the untagged run's teacher")
    for name, e in experiments.items():
        base = name.removesuffix(f"_{args.tag}")
        if not (workdir / "results" / base / "teacher" / "model.pt").exists():
            raise SystemExit(f"--reuse-teacher: no teacher in {workdir / 'results' / base}; run the untagged benchmark first")
        record = Path(args.records) / f"{base}.json"
        if not record.exists():
            raise SystemExit(f"--reuse-teacher: {record}: no record of the untagged run; let it finish first")
        ours, theirs = flatten(record_settings(e)), flatten(json.loads(record.read_text())["settings"])
        differ = sorted(k for k in ours.keys() | theirs.keys()
                        if not k.startswith(TEACHER_FREE) and ours.get(k) != theirs.get(k))
        if differ:
            raise SystemExit(f"--reuse-teacher: {', '.join(differ)} differ from {record} and change the teacher; "
                             "run without --reuse-teacher")
        for tree in ("results", "benchmarks", "logs"):
            for folder in ("teacher", "data_check"):
                src, dst = workdir / tree / base / folder, workdir / tree / name / folder
                if src.exists() and not dst.exists():
                    shutil.copytree(src, dst, copy_function=os.link, ignore=shutil.ignore_patterns(*NOT_REUSED))
        date_data_check_before_teacher(workdir / "results" / name)


def date_data_check_before_teacher(results: Path) -> None:
    """The untagged run's data check re-runs whenever the data's file times change (a new
    checkout, a restored disk) and rewrites its digests, newer than its teacher. Its own
    experiment keeps the teacher: Snakemake's metadata holds the digests' unchanged checksums.
    The tagged experiment has no metadata for the reused files, so there the newer digests alone
    would re-train the teacher. Its data check is therefore a copy (not a link, whose time is
    the untagged file's) dated a second before the teacher's oldest output."""
    teacher = [results / "teacher" / f for f in ("model.pt", "checkpoints", "train_log.tsv")]
    before = min(p.stat().st_mtime for p in teacher if p.exists()) - 1
    for path in (results / "data_check").iterdir():
        if path.is_file() and path.stat().st_mtime > before:
            copy = path.with_name(path.name + ".copy")
            shutil.copyfile(path, copy)
            copy.replace(path)  # a new file in place of the link; the untagged run's is untouched
            os.utime(path, (before, before))


def run(cmd: list[str], cwd: Path) -> None:
    print("+", " ".join(cmd), flush=True)
    subprocess.run(cmd, cwd=cwd, check=True)


def evaluate_on_test(name: str, e: dict, workdir: Path, cores: int) -> None:
    data = e["data"]
    for _, model in METHODS:
        folder = workdir / "results" / name / model
        out = folder / "metrics_test.json"
        per_image = folder / "per_image_confusion_test.npz"
        if not (folder / "model.pt").exists():  # a method this run does not train
            continue
        if per_image.exists() and out.exists() and out.stat().st_mtime > (folder / "model.pt").stat().st_mtime:
            continue
        run([sys.executable, "-m", "stages.evaluate", "--model", str(folder / "model.pt"),
             "--list", str(Path(data["root"]) / "test.txt"), "--data-root", data["root"],
             "--num-classes", str(data["num_classes"]), "--ignore-labels", *map(str, data.get("ignore_labels", [])),
             "--class-names", *data.get("class_names", map(str, range(data["num_classes"]))),
             "--threads", str(cores), "--out", str(out), "--per-image", str(per_image)], workdir)


def pseudo_mask_audit(name: str, workdir: Path) -> dict:
    """The workflow's own audit (``results/<exp>/audit/audit.json``, rule ``audit``) in a record's
    terms: teacher pseudo-mask mIoU on all unlabeled images and, where ST++ ran, on the reliable and
    unreliable halves, the unreliable half as student 1 relabeled it, and Spearman(score, image
    mIoU). Fractions; None where the audit could not measure it; {} without an audit with ground truth."""
    path = workdir / "results" / name / "audit" / "audit.json"
    if not path.exists():  # SupOnly alone: no pseudo-masks, no audit
        return {}
    audit = json.loads(path.read_text())
    if not audit["ground_truth"]:
        return {}
    teacher = audit["teacher"]
    return {"all": teacher["all"]["miou"],
            "reliable": teacher.get("reliable", {}).get("miou"),
            "unreliable": teacher.get("unreliable", {}).get("miou"),
            "relabeled": audit.get("student1_relabel", {}).get("unreliable", {}).get("miou"),
            "spearman": audit.get("spearman_score_vs_miou")}


def stage_minutes(name: str, workdir: Path) -> dict:
    out = {}
    for column, pattern in STAGES:
        seconds = 0.0
        for path in glob.glob(str(workdir / "benchmarks" / name / pattern)):
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
    for key in ("labeled", "unlabeled", "val"):
        data[key] = list_digest(Path(root) / data[key])
    return settings


def machine() -> dict:
    """Where the figures were measured; the CPU's vector width matters (the same run took 2.6x
    longer per training step on an AVX2-only CPU than on the earlier sessions' one)."""
    cpu = platform.processor() or platform.machine()
    if os.path.exists("/proc/cpuinfo"):
        with open("/proc/cpuinfo") as f:
            cpu = next((line.split(":", 1)[1].strip() for line in f if line.startswith("model name")), cpu)
    return {"cpu": cpu, "cores": os.cpu_count(), "cpu_capability": torch.backends.cpu.get_cpu_capability(),
            "torch": torch.__version__, "device": "cuda" if torch.cuda.is_available() else "cpu"}


def code_version() -> str | None:
    """The commit of the code that ran (``-dirty``: with uncommitted changes to tracked files), or
    None outside a git clone. Two commits may draw other augmentations from the same seeds, so a
    table that joins records of several commits says so."""
    def git(*cmd: str) -> str:
        return subprocess.run(["git", "-C", str(REPO), *cmd], capture_output=True, text=True, check=True).stdout.strip()
    try:
        return git("rev-parse", "HEAD") + ("-dirty" if git("status", "--porcelain", "--untracked-files=no") else "")
    except (OSError, subprocess.CalledProcessError):
        return None


def make_record(name: str, e: dict, workdir: Path, methods: list[str]) -> dict:
    """One experiment's figures, read from its work directory."""
    r = workdir / "results" / name
    record = {"experiment": name, "date": time.strftime("%Y-%m-%d"), "machine": machine(), "code": code_version(),
              "methods": methods, "settings": record_settings(e), "miou": {}, "iou": {}}
    for split_name, fname in (("val", "metrics.json"), ("test", "metrics_test.json")):
        record["miou"][split_name], record["iou"][split_name] = {}, {}
        for method, model in METHODS:
            path = r / model / fname
            metrics = json.loads(path.read_text()) if path.exists() else {}
            record["miou"][split_name][method] = finite(100 * metrics["miou"]) if metrics else None
            record["iou"][split_name][method] = metrics.get("iou")
    audit = pseudo_mask_audit(name, workdir)
    record["pseudo_masks"] = {k: None if v is None else finite(v if k == "spearman" else 100 * v)
                              for k, v in audit.items()} or None
    record["stage_minutes"] = stage_minutes(name, workdir)
    return record


def load_records(folder: Path, experiments: dict) -> dict:
    """The records of ``experiments``; an error names a missing one or a setting that differs."""
    records, problems = {}, []
    for name, e in experiments.items():
        path = folder / f"{name}.json"
        if not path.exists():
            problems.append(f"{path}: no record; run this command without --from-records to make it")
            continue
        record = json.loads(path.read_text())
        expected, found = flatten(record_settings(e)), flatten(record["settings"])
        differ = sorted(k for k in expected.keys() | found.keys() if expected.get(k) != found.get(k))
        if differ:
            problems.append(f"{path}: made with other settings ({', '.join(differ)}); "
                            "run without --from-records to measure these")
            continue
        records[name] = record
    if problems:
        raise SystemExit("\n".join(problems))
    return records


def flatten(tree: dict, prefix: str = "") -> dict:
    out = {}
    for key, value in tree.items():
        if isinstance(value, dict):
            out.update(flatten(value, f"{prefix}{key}."))
        else:
            out[prefix + key] = value
    return out


def nan(value: float | None) -> float:
    return float("nan") if value is None else value


def tables(args, records: dict) -> str:
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

    measured = sorted({f"{r['date']}, {r['machine']['device']}, {r['machine']['cores']} cores of {r['machine']['cpu']}"
                       f" ({r['machine'].get('cpu_capability', 'vector width not recorded')}), torch {r['machine']['torch']}"
                       for r in records.values()})
    codes = sorted({r.get("code") or "not recorded" for r in records.values()})
    lines = [f"# {args.dataset} {' '.join(args.splits)}{' ' + args.tag if args.tag else ''}", "",
             f"config {args.config or f'config/{args.dataset}.yaml'}" + (f", --set {' '.join(args.set)}" if args.set else "")
             + "; measured " + "; ".join(measured) + "; code " + ", ".join(c[:12] + c[40:] for c in codes), ""]  # short hash, "-dirty" kept
    for split_name in ("test", "val"):
        cols = [m for m, _ in METHODS]
        lines += [f"## mIoU (%) on {split_name}", "",
                  "| experiment | " + " | ".join(cols) + " | ST - SupOnly | ST++ final - ST |",
                  "|---|" + "---|" * (len(cols) + 2)]
        groups = {}
        for row in rows:
            values = [row[f"{split_name} {m}"] for m in cols]
            lines.append(f"| {row['experiment']} | " + " | ".join(fmt([v]) for v in values)
                         + f" | {fmt([values[1] - values[0]], True)} | {fmt([values[3] - values[1]], True)} |")
            groups.setdefault(row["experiment"].split("_seed")[0], []).append(values)
        for group, members in groups.items():
            if len(members) > 1:
                cells = [fmt([v[i] for v in members]) for i in range(len(cols))]
                cells += [fmt([v[1] - v[0] for v in members], True), fmt([v[3] - v[1] for v in members], True)]
                lines.append(f"| **{group}, mean ± std of {len(members)}** | " + " | ".join(cells) + " |")
        lines.append("")
    lines += ["## Teacher pseudo-masks against the true masks of the unlabeled images", "",
              "| experiment | mIoU all | reliable half | unreliable half | unreliable, relabeled by student 1 "
              "| Spearman(score, image mIoU) |",
              "|---|---|---|---|---|---|"]
    for row in rows:
        if "pseudo all" in row and not math.isnan(row["pseudo all"]):
            spearman_cell = "-" if math.isnan(row["pseudo spearman"]) else f"{row['pseudo spearman']:.2f}"
            lines.append(f"| {row['experiment']} | " + " | ".join(fmt([row[f"pseudo {k}"]]) for k in
                         ("all", "reliable", "unreliable", "relabeled")) + f" | {spearman_cell} |")
    stage_cols = [c for c, _ in STAGES]
    lines += ["", "## Wall time per stage (minutes)", "",
              "| experiment | " + " | ".join(stage_cols) + " | total |", "|---|" + "---|" * (len(stage_cols) + 1)]
    for row in rows:
        values = [row.get(f"min {c}", float("nan")) for c in stage_cols]
        lines.append(f"| {row['experiment']} | " + " | ".join(fmt([v]) for v in values) + f" | {fmt([sum(values)])} |")
    if sources:
        lines += ["", "(t) transcribed into a record by hand from the run's log; its work directory is lost:", ""]
        lines += [f"- {source}" for source in sources]
    return "\n".join(lines).rstrip() + "\n"


def main(argv=None) -> None:
    args = parse_args(argv)
    workdir = Path(args.workdir).resolve()
    workdir.mkdir(parents=True, exist_ok=True)
    config, experiments = make_config(args, workdir)
    records_dir = Path(args.records)
    if args.from_records:
        records = load_records(records_dir, experiments)
    else:
        if args.reuse_teacher:
            reuse_teacher(args, experiments, workdir)
        run([sys.executable, "-m", "snakemake", "--snakefile", str(REPO / "Snakefile"), "--directory", str(workdir),
             "--cores", str(args.cores), "--configfile", str(config), "--rerun-incomplete", *args.snakemake_args], REPO)
        methods = yaml.safe_load(config.read_text())["methods"]
        records = {}
        for name, e in experiments.items():
            evaluate_on_test(name, e, workdir, args.cores)
            records[name] = make_record(name, e, workdir, methods)
            write_json(records_dir / f"{name}.json", records[name])
            print(f"wrote {records_dir / f'{name}.json'}")
    table = tables(args, records)
    out = workdir / f"semisup_{args.dataset}{'_' + args.tag if args.tag else ''}.md"
    out.write_text(table)
    print(table)
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
