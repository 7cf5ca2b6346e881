"""Two experiments' models on the same images: each gap with its paired 90 % interval.

    python benchmarks/compare.py results/<a> results/<b> [--models teacher stpp_student1 ...] \\
        [--classes cat dog] [--resamples 2000]

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
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from semisup import interval

from stages.evaluate import read_per_image_confusion
from stages.seg.metrics import iou_per_class, miou_of_counts, paired_bootstrap_interval

MODELS = ("teacher", "st_student", "stpp_student1", "stpp_student2", "stpp_student3")
LISTS = {"val": "per_image_confusion.npz", "test": "test/per_image_confusion.npz"}


def compare(a: Path, b: Path, models=MODELS, classes=(), resamples: int = 2000) -> list[dict]:
    """One row per (model, list) that both experiments evaluated."""
    rows = []
    for model in models:
        model_a, _, model_b = model.partition(":")
        for list_name, file in LISTS.items():
            fa, fb = a / model_a / file, b / (model_b or model_a) / file
            if not (fa.exists() and fb.exists()):
                continue
            ids_a, cm_a = read_per_image_confusion(fa)
            ids_b, cm_b = read_per_image_confusion(fb)
            if ids_a != ids_b:
                raise ValueError(
                    f"{fa} and {fb} hold other images (or another order): compare experiments "
                    "evaluated on the same list"
                )
            diff, low, high = paired_bootstrap_interval([(cm_a, cm_b)], resamples=resamples)
            row = {
                "model": model,
                "list": list_name,
                "images": len(ids_a),
                "a": 100 * float(miou_of_counts(cm_a.sum(0))),
                "b": 100 * float(miou_of_counts(cm_b.sum(0))),
                "b - a": (100 * diff, 100 * low, 100 * high),
            }
            if classes:
                names = json.loads((fa.parent / "metrics.json").read_text())["class_names"]
                unknown = sorted(set(classes) - set(names))
                if unknown:
                    raise ValueError(f"--classes {', '.join(unknown)}: not in {fa.parent / 'metrics.json'}'s {names}")
                iou_a, iou_b = iou_per_class(cm_a.sum(0)), iou_per_class(cm_b.sum(0))
                row["classes"] = {c: (100 * iou_a[names.index(c)], 100 * iou_b[names.index(c)]) for c in classes}
            rows.append(row)
    return rows


def table(rows: list[dict], a: Path, b: Path) -> str:
    classes = list(rows[0].get("classes", {})) if rows else []
    head = [
        "model",
        "list",
        "images",
        f"a: {a.name}",
        f"b: {b.name}",
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
    p.add_argument("a", type=Path, help="results/<experiment> of the first (e.g. the unreviewed) run")
    p.add_argument("b", type=Path, help="results/<experiment> of the second (e.g. the reviewed) run")
    p.add_argument(
        "--models",
        nargs="+",
        default=list(MODELS),
        help="models to compare, those both evaluated; A:B compares a's model A with b's model B",
    )
    p.add_argument("--classes", nargs="+", default=[], help="class names whose IoU to show as well")
    p.add_argument("--resamples", type=int, default=2000)
    args = p.parse_args(argv)
    rows = compare(args.a, args.b, args.models, args.classes, args.resamples)
    if not rows:
        sys.exit(f"no model of {args.models} has per-image matrices in both {args.a} and {args.b}")
    print(table(rows, args.a, args.b))


if __name__ == "__main__":
    main()
