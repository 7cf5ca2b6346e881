"""Run the built-in demo for several data seeds and tabulate SupOnly, ST and ST++ (not run by tests).

    python benchmarks/demo.py                 # demo seeds 0-4, the default config
    python benchmarks/demo.py --seeds 0 --set train.epochs=10 demo.num_unlabeled=96

For each seed S it writes ``<workdir>/seed<S>/config.yaml`` (``config/config.yaml`` with
``demo.seed: S`` and the ``--set`` overrides: keys under ``demo.`` go to the data generator,
every other key to the experiment), runs ``snakemake --cores N`` in ``<workdir>/seed<S>`` as a
user's default run would (data generation included) and times it. A seed whose summary exists
is not run again (``--force`` deletes its folder first). Then it prints, and writes to
``<workdir>/demo_seeds.md``, one row per seed and the mean ± std: mIoU of the four models on the
demo's val list, the two gains the targets are about, the teacher's pseudo-masks against the
(never trained on) true masks of the unlabeled images, and the wall time of the run; then each
difference with its 90 % intervals (per seed a paired bootstrap over the val images, over the
seeds the mean's t-interval and the pooled bootstrap).

Targets (the demo's design, docs/demo.md): over 5 seeds ST - SupOnly >= +3 on the mean and > 0
on every seed, ST++ final >= ST on the mean, ST++ student 1 >= SupOnly on every seed; the
default run (seed 0) within 6 minutes on 2 cores.
"""

from __future__ import annotations

import argparse
import csv
import shutil
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import yaml
from common import REPO, layout, machine, workflow_plan
from semisup import difference_cells, difference_header, fmt, parse_setting, pseudo_mask_audit, seeds_cells, set_key

from stages.evaluate import read_per_image_confusion

COLUMNS = ("SupOnly", "ST", "ST++ student 1", "ST++ final")


def parse_args(argv=None):
    p = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0], formatter_class=argparse.ArgumentDefaultsHelpFormatter
    )
    p.add_argument("--seeds", nargs="+", type=int, default=[0, 1, 2, 3, 4], help="demo data seeds")
    p.add_argument(
        "--set",
        nargs="*",
        default=[],
        metavar="KEY=VALUE",
        help="overrides (YAML values): demo.<key> for the data, any other key for the experiment",
    )
    p.add_argument("--workdir", default=str(REPO / "runs" / "demo"), help="one sub-folder per seed")
    p.add_argument("--cores", type=int, default=2)
    p.add_argument("--force", action="store_true", help="delete and re-run seeds that already ran")
    return p.parse_args(argv)


def seed_config(seed: int, overrides: list[str]) -> dict:
    config = yaml.safe_load((REPO / "config" / "config.yaml").read_text())
    config.setdefault("demo", {})["seed"] = seed
    (experiment,) = config["experiments"].values()
    for item in overrides:
        key, value = parse_setting(item)
        set_key(config if key.startswith("demo.") else experiment, key, value)
    return config


def run_seed(seed: int, args) -> dict:
    folder = Path(args.workdir).resolve() / f"seed{seed}"
    if args.force and folder.exists():
        shutil.rmtree(folder)
    folder.mkdir(parents=True, exist_ok=True)
    config = seed_config(seed, args.set)
    (name,) = config["experiments"]
    summary = folder / layout.fill(layout.SUMMARY, experiment=name)
    timing = folder / "wall_seconds.txt"
    if not summary.exists():
        (folder / "config.yaml").write_text(yaml.safe_dump(config, sort_keys=False))
        cmd = [
            sys.executable,
            "-m",
            "snakemake",
            "--snakefile",
            str(REPO / "Snakefile"),
            "--directory",
            str(folder),
            "--cores",
            str(args.cores),
            "--configfile",
            str(folder / "config.yaml"),
        ]
        print("+", " ".join(cmd), flush=True)
        start = time.monotonic()
        with open(folder / "snakemake.log", "w") as log:
            subprocess.run(cmd, cwd=REPO, check=True, stdout=log, stderr=subprocess.STDOUT)
        timing.write_text(f"{time.monotonic() - start:.1f}\n")
    with open(summary, newline="") as f:
        miou = {row["method"]: float(row["miou"]) for row in csv.DictReader(f, delimiter="\t")}
    audit = pseudo_mask_audit(name, folder)  # the run's own audit/audit.json
    pseudo = {k: float("nan") if v is None else v if k == "spearman" else 100 * v for k, v in audit.items()}
    return {
        "seed": seed,
        "miou": miou,
        "confusion": val_confusion(folder, name, workflow_plan(config).method_models(name)),
        "pseudo": pseudo,
        "wall": float(timing.read_text()) if timing.exists() else float("nan"),
    }


def val_confusion(folder: Path, name: str, models: list[tuple[str, str]]) -> dict:
    """Each model's per-image confusion matrices on the demo's val list, by method; ``models``:
    the workflow's (method, trained model) rows (ST++ final is the last round's student)."""
    found = {}
    for method, model in models:
        path = folder / layout.fill(layout.PER_IMAGE, experiment=name, model=model)
        if path.exists():
            found[method] = read_per_image_confusion(path)[1].astype(np.int64)
    return found


def interval_table(rows: list[dict]) -> list[str]:
    """The differences of the targets with 90 % intervals: per seed a paired bootstrap over the
    val images, over seeds the mean's t-interval and the pooled paired bootstrap."""
    lines = [
        "",
        "Differences in mIoU points with 90 % intervals: per seed a paired bootstrap over the val images (2,000 "
        "resamples); over seeds the mean's t-interval and the pooled paired bootstrap. An interval that contains 0: "
        "not measurable at this size.",
        "",
        *difference_header("seed"),
    ]

    for row in rows:
        lines.append(f"| {row['seed']} | " + " | ".join(difference_cells(row["miou"], row["confusion"])) + " |")
    if len(rows) > 1:
        t_cells, pooled = seeds_cells([r["miou"] for r in rows], [r["confusion"] for r in rows])
        lines.append(f"| **mean of {len(rows)}, t-interval** | " + " | ".join(t_cells) + " |")
        lines.append("| **pooled paired bootstrap** | " + " | ".join(pooled) + " |")
    return lines


def table(rows: list[dict], args) -> str:
    head = [
        "seed",
        *COLUMNS,
        "ST - SupOnly",
        "ST++ final - ST",
        "pseudo-masks all",
        "reliable",
        "unreliable",
        "Spearman",
        "wall s",
    ]

    def cells(values: list[list[float]]) -> list[str]:
        return [fmt(v, signed=i in (4, 5)) for i, v in enumerate(values)]

    def columns(row: dict) -> list[float]:
        m, p = row["miou"], row["pseudo"]
        nan = float("nan")
        return [
            *(m.get(c, nan) for c in COLUMNS),
            m.get("ST", nan) - m.get("SupOnly", nan),
            m.get("ST++ final", nan) - m.get("ST", nan),
            *(p.get(k, nan) for k in ("all", "reliable", "unreliable", "spearman")),
            row["wall"],
        ]

    per_seed = [columns(r) for r in rows]
    m = machine()
    lines = [
        "demo, config/config.yaml"
        + (f" --set {' '.join(args.set)}" if args.set else "")
        + f"; {time.strftime('%Y-%m-%d')}, {m['cores']} cores of {m['cpu']} ({m['cpu_capability']})",
        "",
        "mIoU (%) on the demo's val list; pseudo-masks: the teacher's against the true masks of the unlabeled images",
        "",
        "| " + " | ".join(head) + " |",
        "|" + "---|" * len(head),
    ]
    for row, values in zip(rows, per_seed, strict=True):
        lines.append(f"| {row['seed']} | " + " | ".join(cells([[v] for v in values])) + " |")
    if len(rows) > 1:
        lines.append(
            f"| **mean ± std of {len(rows)}** | "
            + " | ".join(cells([[v[i] for v in per_seed] for i in range(len(head) - 1)]))
            + " |"
        )
    return "\n".join(lines + interval_table(rows)) + "\n"


def main(argv=None) -> None:
    args = parse_args(argv)
    rows = [run_seed(seed, args) for seed in args.seeds]
    text = table(rows, args)
    out = Path(args.workdir).resolve() / "demo_seeds.md"
    out.write_text(text)
    print(text)
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
