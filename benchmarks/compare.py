"""Two experiments' models on the same images: each gap with its paired 90 % interval.

    python benchmarks/compare.py results/<a> results/<b> [results/<a2> results/<b2> ...] \\
        [--models teacher stpp_student1 ...] [--classes cat dog] [--resamples 2000]

``--models stpp_student2:stpp_student3`` puts a's student 2 against b's student 3 (an
ablation of ``stpp.rounds: 3`` that copies the first two rounds: is the third round better).

For the review loop (README, "Act on the audit"): did excluding or correcting pseudo-masks
(experiment b, with ``teacher_from: a``) change the students? For each model both experiments
evaluated, on val (``<model>/per_image_confusion.npz``) and, where the workflow scored a
``data.test`` list, on test (``<model>/test/per_image_confusion.npz``), it prints a's and b's
mIoU and b - a with the paired bootstrap interval of ``benchmarks/semisup.py`` (images resampled,
both models' mIoU recomputed from the drawn images' matrices, 2,000 resamples, fixed seed). The
two files must hold the same images in the same order; a gap whose interval spans zero is not
measurable on these images. ``--classes`` adds each named class's IoU (a -> b, from the summed
matrices, without an interval: one class on a few images is the noisiest figure there is).
Run it from the Snakemake working directory; it reads files, trains nothing.

An experiment may also be a record of ``benchmarks/semisup.py`` (``benchmarks/records/<name>.json``
with its ``.confusion.npz``), so that runs whose work directory is gone can still be paired: a
record's models are its methods (SupOnly, ST, ST++ student 1, ST++ final), and the workflow's
model names map onto them (teacher -> SupOnly, st_student -> ST, stpp_student1 -> ST++ student 1,
the last round's student -> ST++ final).

Several pairs (a b a2 b2 ..., e.g. one per split seed: equal epochs against labeled passes on
seeds 0, 1 and 2) print each pair's table and then the pooled one: the mean of the pairs' b - a
with the pooled paired bootstrap of ``benchmarks/semisup.py`` (each pair's images resampled on
their own), which says whether a change holds over seeds that each cannot resolve.
"""

from __future__ import annotations

import argparse
import functools
import json
import sys
from pathlib import Path

from common import layout, read_confusion
from semisup import METHODS, interval

from stages.evaluate import read_per_image_confusion
from stages.seg.metrics import iou_per_class, miou_of_counts, paired_bootstrap_interval

MODELS = layout.MODELS
# Where a model's per-image matrices are, in its folder of the experiment's results (rules evaluate, evaluate_test).
LISTS = {
    name: layout.OUTPUTS[rule]["per_image"].split("{model}/")[1]
    for name, rule in (("val", "evaluate"), ("test", "evaluate_test"))
}


def is_record(experiment: Path) -> bool:
    return experiment.suffix == ".json"


def record_method(record: Path, model: str) -> str:
    """The method under which ``record`` keeps ``model`` (a method name is kept as it is)."""
    rounds = json.loads(record.read_text())["settings"].get("stpp", {}).get("rounds", 2)
    names = {m: method for method, m in METHODS[:3]} | {f"stpp_student{rounds}": "ST++ final"}
    return names.get(model, model)


@functools.cache  # each pair's own table and the pooled one read the same files once
def load(path: Path, mtime_ns: int):
    """A per-image file's (ids, matrices), or a record's {"<list>/<method>": matrices}; keyed by
    the file's time too, so that a file written again is read again."""
    return read_confusion(path.parent, path.stem) if is_record(path) else read_per_image_confusion(path)


def per_image(experiment: Path, model: str, list_name: str):
    """(where they are, image ids, per-image matrices) of one model on one list, or None where
    the experiment (a results folder or a record) did not evaluate it."""
    if is_record(experiment):
        confusion = load(experiment, experiment.stat().st_mtime_ns)
        key = f"{list_name}/{record_method(experiment, model)}"
        if key not in confusion:
            return None
        return f"{experiment} ({key})", [str(i) for i in confusion[f"{list_name}/ids"]], confusion[key]
    f = experiment / model / LISTS[list_name]
    if not f.exists():
        return None
    return f, *load(f, f.stat().st_mtime_ns)


def paired_matrices(a: Path, b: Path, model: str, list_name: str):
    """(a's file, a's and b's per-image matrices) of ``model`` (A or A:B) on one list, or None
    where either experiment did not evaluate it."""
    model_a, _, model_b = model.partition(":")
    found_a, found_b = per_image(a, model_a, list_name), per_image(b, model_b or model_a, list_name)
    if found_a is None or found_b is None:
        return None
    (fa, ids_a, cm_a), (fb, ids_b, cm_b) = found_a, found_b
    if ids_a != ids_b:
        raise ValueError(
            f"{fa} and {fb} hold other images (or another order): compare experiments evaluated on the same list"
        )
    return fa, cm_a, cm_b


def compare(a: Path, b: Path, models=MODELS, classes=(), resamples: int = 2000) -> list[dict]:
    """One row per (model, list) that both experiments evaluated."""
    rows = []
    for model in models:
        for list_name in LISTS:
            found = paired_matrices(a, b, model, list_name)
            if found is None:
                continue
            fa, cm_a, cm_b = found
            diff, low, high = paired_bootstrap_interval([(cm_a, cm_b)], resamples=resamples)
            row = {
                "model": model,
                "list": list_name,
                "images": len(cm_a),
                "a": 100 * float(miou_of_counts(cm_a.sum(0))),
                "b": 100 * float(miou_of_counts(cm_b.sum(0))),
                "b - a": (100 * diff, 100 * low, 100 * high),
            }
            if classes:
                if is_record(a):
                    names = json.loads(a.read_text())["settings"]["data"]["class_names"]
                else:
                    names = json.loads((fa.parent / "metrics.json").read_text())["class_names"]
                unknown = sorted(set(classes) - set(names))
                if unknown:
                    raise ValueError(f"--classes {', '.join(unknown)}: not in {fa}'s classes {names}")
                iou_a, iou_b = iou_per_class(cm_a.sum(0)), iou_per_class(cm_b.sum(0))
                row["classes"] = {c: (100 * iou_a[names.index(c)], 100 * iou_b[names.index(c)]) for c in classes}
            rows.append(row)
    return rows


def pooled(pairs: list[tuple[Path, Path]], models=MODELS, resamples: int = 2000) -> list[dict]:
    """One row per (model, list) that every pair evaluated: the pairs' mean mIoU of a and of b
    and the mean b - a with its pooled paired bootstrap interval."""
    rows = []
    for model in models:
        for list_name in LISTS:
            found = [paired_matrices(a, b, model, list_name) for a, b in pairs]
            if any(f is None for f in found):
                continue
            matrices = [(cm_a, cm_b) for _, cm_a, cm_b in found]
            diff, low, high = paired_bootstrap_interval(matrices, resamples=resamples)
            rows.append(
                {
                    "model": model,
                    "list": list_name,
                    "images": sum(len(cm_a) for cm_a, _ in matrices),
                    "a": 100 * sum(float(miou_of_counts(cm_a.sum(0))) for cm_a, _ in matrices) / len(pairs),
                    "b": 100 * sum(float(miou_of_counts(cm_b.sum(0))) for _, cm_b in matrices) / len(pairs),
                    "b - a": (100 * diff, 100 * low, 100 * high),
                }
            )
    return rows


def table(rows: list[dict], a: Path | str, b: Path | str) -> str:
    classes = list(rows[0].get("classes", {})) if rows else []
    head = [
        "model",
        "list",
        "images",
        f"a: {getattr(a, 'name', a)}",
        f"b: {getattr(b, 'name', b)}",
        "b - a [90 %]",
        *(f"{c} a -> b" for c in classes),
    ]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for r in rows:
        cells = [r["model"], r["list"], str(r["images"]), f"{r['a']:.1f}", f"{r['b']:.1f}", interval(*r["b - a"])]
        cells += [f"{x:.1f} -> {y:.1f}" for x, y in r.get("classes", {}).values()]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def main(argv=None) -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument(
        "experiments",
        type=Path,
        nargs="+",
        metavar="a b",
        help="results/<experiment> (or a record, benchmarks/records/<experiment>.json) of the first (e.g. the "
        "unreviewed) run, then of the second (e.g. the reviewed); more pairs (a2 b2 ...) are pooled",
    )
    p.add_argument(
        "--models",
        nargs="+",
        default=list(MODELS),
        help="models to compare, those both evaluated; A:B compares a's model A with b's model B",
    )
    p.add_argument("--classes", nargs="+", default=[], help="class names whose IoU to show as well")
    p.add_argument("--resamples", type=int, default=2000)
    args = p.parse_args(argv)
    if len(args.experiments) % 2:
        p.error(f"experiments come in pairs (a b [a2 b2 ...]), got {len(args.experiments)}")
    pairs = list(zip(args.experiments[::2], args.experiments[1::2], strict=True))
    for a, b in pairs:
        rows = compare(a, b, args.models, args.classes, args.resamples)
        if not rows:
            sys.exit(f"no model of {args.models} has per-image matrices in both {a} and {b}")
        print(table(rows, a, b) + "\n")
    if len(pairs) > 1:
        print(f"Pooled over the {len(pairs)} pairs (mean mIoU; mean b - a, pooled paired bootstrap):\n")
        print(table(pooled(pairs, args.models, args.resamples), "mean", "mean"))


if __name__ == "__main__":
    main()
