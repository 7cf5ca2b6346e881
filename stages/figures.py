"""Figures of an experiment as PNG files, for people who would rather look than read.

    python -m stages.figures scores --scores stability_scores.tsv --reliable reliable_ids.txt \\
        [--per-image per_image.tsv] --out F.png
    python -m stages.figures contact --list unlabeled.txt --data-root ROOT --teacher-masks T.h5 \\
        [--checkpoint-masks K.h5 --scores S.tsv --relabeled R.h5] --select most_stable --out F.png
    python -m stages.figures curves --logs NAME=train_log.tsv ... --out F.png
    python -m stages.figures summary --summary summary.tsv --out F.png

- ``scores``: the stability-score histogram of the reliable and the unreliable half as the split
  made them (the cut marked where a score separates them: not under ``selection: random``) and, with the audit's
  ``per_image.tsv``, score against per-image pseudo-mask mIoU (the paper's Figure 3 as a scatter).
- ``contact``: a contact sheet, one row per image: the image, the teacher's TTA pseudo-mask,
  each checkpoint's mask, student 1's relabel, the ground truth, in the data set's palette with
  a legend of class names. ``--select`` picks the most stable, the least stable or a fixed random
  sample (seed 0).
- ``curves``: loss, learning rate and validation mIoU (where computed) per epoch of every model.
- ``summary``: the summary table's mIoU per method as a bar chart.
"""

from __future__ import annotations

import argparse
import csv
import logging
import math
import random
from pathlib import Path

import matplotlib

matplotlib.use("Agg")  # files only, no display
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
from matplotlib.patches import Patch  # noqa: E402

from .seg import cli  # noqa: E402
from .seg.files import atomic_path  # noqa: E402
from .seg.images import IGNORE_INDEX, colour, decode_image, decode_mask  # noqa: E402
from .seg.maskstore import MaskStore  # noqa: E402
from .seg.palettes import palette  # noqa: E402
from .seg.splits import read_scores, read_split_list, score_threshold  # noqa: E402

log = logging.getLogger("stpp")
SELECTIONS = ("most_stable", "least_stable", "random")


def read_tsv(path: str) -> list[dict]:
    with open(path, newline="") as f:
        return list(csv.DictReader(f, delimiter="\t"))


def save(fig, path: str, dpi: int = 100) -> None:
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png", dpi=dpi, bbox_inches="tight")
    plt.close(fig)
    log.info("wrote %s", path)


def histogram_edges(values: list[float], cut: float | None) -> np.ndarray:
    """The score histogram's bin edges, one of them at the split's cut: no bar straddles it, so
    the reliable colour never stands below the cut line (it did where a bin held both halves)."""
    edges = np.histogram_bin_edges(values, bins=min(30, max(5, len(values) // 4)))
    if cut is None:
        return edges
    return np.unique(np.append(edges, cut))


def scores_figure(args) -> None:
    scores = read_scores(args.scores)
    reliable = [s.id for s in read_split_list(args.reliable)]
    chosen = set(reliable)
    per_image = [r for r in read_tsv(args.per_image) if r["teacher_miou"] and r["score"]] if args.per_image else []
    fig, axes = plt.subplots(1, 2 if per_image else 1, figsize=(11 if per_image else 5.5, 4), squeeze=False)
    ax = axes[0][0]
    halves = [[v for i, v in scores.items() if i in chosen], [v for i, v in scores.items() if i not in chosen]]
    threshold = score_threshold(scores, reliable)
    edges = histogram_edges(list(scores.values()), threshold)
    ax.hist(
        halves,
        bins=edges,
        stacked=True,
        color=["#55a868", "#c44e52"],
        label=[f"reliable ({len(halves[0])})", f"unreliable ({len(halves[1])})"],
    )
    if threshold is not None:
        ax.axvline(threshold, color="black", linestyle="--", label="the split's cut")
    ax.legend()
    ax.set(xlabel="stability score", ylabel="images", title=f"Stability scores of {len(scores)} unlabeled images")
    if per_image:
        ax = axes[0][1]
        for flag, colour, name in (("1", "#55a868", "reliable"), ("0", "#c44e52", "unreliable")):
            rows = [r for r in per_image if r["reliable"] == flag]
            ax.scatter(
                [float(r["score"]) for r in rows],
                [100 * float(r["teacher_miou"]) for r in rows],
                s=12,
                color=colour,
                label=f"{name} ({len(rows)})",
            )
        ax.set(xlabel="stability score", ylabel="pseudo-mask mIoU (%)", title="Score vs pseudo-mask quality")
        ax.legend()
    save(fig, args.out)


def select_ids(ids: list[str], scores: dict[str, float], how: str, n: int) -> list[str]:
    if how == "random" or not scores:
        return sorted(random.Random(0).sample(ids, min(n, len(ids))), key=ids.index)
    ranked = sorted(ids, key=lambda i: -scores[i])  # stable: ties keep list order, as the split does
    return ranked[:n] if how == "most_stable" else ranked[::-1][:n]


def contact_figure(args) -> None:
    samples = {s.id: s for s in read_split_list(args.list)}
    ids = list(samples)
    scores = read_scores(args.scores) if args.scores else {}
    chosen = select_ids(ids, scores, args.select, args.rows)
    teacher = MaskStore(args.teacher_masks)
    checkpoints = MaskStore(args.checkpoint_masks) if args.checkpoint_masks else None
    relabeled = MaskStore(args.relabeled) if args.relabeled else None
    colours, labels = palette(args.palette), cli.mask_labels(args)
    names = args.class_names or [str(c) for c in range(args.num_classes)]

    columns = ["image", "teacher (TTA)"]
    k = checkpoints[chosen[0]].shape[0] if checkpoints is not None else 0
    columns += [f"checkpoint {j}" for j in range(1, k + 1)]
    if relabeled is not None:
        columns.append("student 1 relabel")
    columns.append("ground truth")
    fig, axes = plt.subplots(
        len(chosen), len(columns), figsize=(2.2 * len(columns), 2.0 * len(chosen) + 0.8), squeeze=False
    )
    for row, image_id in enumerate(chosen):
        s = samples[image_id]
        mask = teacher[image_id]
        # An empty cell has the image's shape (the rows stay aligned) and says why it is empty.
        empty = (np.full((*mask.shape, 3), 240, np.uint8),)
        cells = [decode_image(Path(args.data_root) / s.image, s.origin), colour(mask, colours)]
        if checkpoints is not None:
            cells += [colour(m, colours) for m in checkpoints[image_id]]
        if relabeled is not None:
            cells.append(
                colour(relabeled[image_id], colours) if image_id in relabeled else (*empty, "reliable:\nnot relabeled")
            )
        if s.mask:
            truth = decode_mask(Path(args.data_root) / s.mask, args.num_classes, labels, s.origin)
            cells.append(colour(truth, colours))
        else:
            cells.append((*empty, "no mask\nin the list"))
        for col, cell in enumerate(cells):
            ax = axes[row][col]
            if isinstance(cell, tuple):
                cell, note = cell
                ax.text(0.5, 0.5, note, ha="center", va="center", fontsize=8, color="0.35", transform=ax.transAxes)
            ax.imshow(cell, interpolation="nearest")
            ax.set_xticks([])
            ax.set_yticks([])
            if row == 0:
                ax.set_title(columns[col], fontsize=9)
        label = image_id if len(image_id) <= 28 else "..." + image_id[-25:]
        axes[row][0].set_ylabel(f"{label}\n{'score %.2f' % scores[image_id] if image_id in scores else ''}", fontsize=7)
    handles = [Patch(color=np.asarray(colours[c]) / 255, label=n) for c, n in enumerate(names)]
    handles.append(Patch(color=np.asarray(colours[IGNORE_INDEX]) / 255, label="ignore"))
    fig.legend(handles=handles, loc="lower center", ncol=min(len(handles), 8), fontsize=8, frameon=False)
    title = {
        "most_stable": "the most stable images",
        "least_stable": "the least stable images",
        "random": "a fixed random sample",
    }[args.select if scores else "random"]
    fig.suptitle(f"Pseudo-masks of {title} ({len(chosen)} of {len(ids)})", fontsize=11)
    fig.subplots_adjust(bottom=0.06 + 0.04 * math.ceil(len(handles) / 8) / max(1, len(chosen) / 4))
    save(fig, args.out)


def curves_figure(args) -> None:
    fig, axes = plt.subplots(1, 3, figsize=(15, 4))
    for item in args.logs:
        name, _, path = item.partition("=")
        rows = read_tsv(path)
        epochs = [int(r["epoch"]) for r in rows]
        axes[0].plot(epochs, [float(r["loss"]) for r in rows], label=name)
        axes[1].plot(epochs, [float(r["lr"]) for r in rows], label=name)
        val = [(int(r["epoch"]), 100 * float(r["val_miou"])) for r in rows if r.get("val_miou")]
        if val:
            axes[2].plot(*zip(*val, strict=True), marker="o", label=name)
    for ax, what in zip(axes, ("training loss", "backbone learning rate", "validation mIoU (%)"), strict=True):
        ax.set(xlabel="epoch", title=what)
        if ax.lines:
            ax.legend(fontsize=8)
    if not axes[2].lines:
        axes[2].text(
            0.5, 0.5, "not computed\n(train.val_every: 0)", ha="center", va="center", transform=axes[2].transAxes
        )
        axes[2].set(xticks=[], yticks=[])  # an empty panel: no 0..1 scale that reads as data
    save(fig, args.out)


def summary_figure(args) -> None:
    rows = read_tsv(args.summary)
    methods, miou = [r["method"] for r in rows], [float(r["miou"]) for r in rows]
    fig, ax = plt.subplots(figsize=(1.3 * len(rows) + 2, 4))
    bars = ax.bar(methods, miou, color=["#4c72b0", "#dd8452", "#55a868", "#8172b3", "#937860"][: len(rows)])
    ax.bar_label(bars, fmt="%.1f")
    ax.set(
        ylabel="mIoU (%)",
        title=f"{Path(args.summary).parent.name}: mIoU on the val list",
        ylim=(0, max(miou + [1]) * 1.15),
    )
    save(fig, args.out)


def build_parser():
    p = cli.parser(__doc__.split("\n\n")[0])
    p.add_argument("--verbose", action="store_true", help="debug logging")
    sub = p.add_subparsers(dest="figure", required=True)
    s = sub.add_parser("scores", help="stability-score histogram (and score vs mIoU)")
    s.add_argument("--scores", required=True)
    s.add_argument("--reliable", required=True, help="reliable_ids.txt of the split: the figure shows that split")
    s.add_argument("--per-image", default=None, help="the audit's per_image.tsv")
    c = sub.add_parser("contact", help="a contact sheet of images and their masks")
    c.add_argument("--list", required=True)
    c.add_argument("--teacher-masks", required=True)
    c.add_argument("--checkpoint-masks", default=None)
    c.add_argument("--scores", default=None)
    c.add_argument("--relabeled", default=None)
    c.add_argument("--select", choices=SELECTIONS, default="random")
    c.add_argument("--rows", type=int, default=6)
    c.add_argument("--palette", default="pascal")
    c.add_argument("--class-names", nargs="*", default=None)
    cli.add_data_args(c)
    k = sub.add_parser("curves", help="training curves of every model")
    k.add_argument("--logs", nargs="+", required=True, metavar="NAME=train_log.tsv")
    m = sub.add_parser("summary", help="mIoU per method as bars")
    m.add_argument("--summary", required=True)
    for q in (s, c, k, m):
        q.add_argument("--out", required=True, help="PNG to write")
    return p


def figures(args: argparse.Namespace) -> None:
    {"scores": scores_figure, "contact": contact_figure, "curves": curves_figure, "summary": summary_figure}[
        args.figure
    ](args)


def main(argv=None) -> None:
    cli.run(figures, build_parser(), argv)


if __name__ == "__main__":
    main()
