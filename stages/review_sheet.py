"""Write a review sheet: what a reviewer needs to exclude or correct pseudo-masks, in one folder.

    python -m stages.review_sheet --list unlabeled.txt --data-root ROOT --num-classes C \\
        --teacher-masks teacher/pseudo_masks_unlabeled.h5 --scores stability_scores.tsv \\
        --reliable reliable_ids.txt [--audit audit.json] [--size 16] [--class-names ...] \\
        [--palette pascal] --out results/<experiment>/review_sheet

The images chosen are the ``--size`` least stable ones and every reliable image whose true mask
(where the list has one) shows a class the audit flags (``under_predicted_classes`` of
audit.json: MSRC-21's cats that the teacher calls dogs). For each, under its image path with .png
(the names of export_masks and of ``review.masks``):

- ``images/``: the image;
- ``masks/``: the teacher's pseudo-mask, a palette PNG of class indices. Edit one in any image
  editor that keeps the palette, put it in the ``review.masks`` folder, and every student trains
  on it instead of the teacher's;
- ``overlays/``: the image with the mask's colours over it, half and half, and a legend below it
  (a swatch and the name of each class the mask holds);

and ``review.tsv``: id, score, reliable (1/0), why it was chosen, and each class's share of the
pseudo-mask's pixels. Rows deleted down to the images to drop, its id column is an exclusion
list: ``tail -n +2 review.tsv | cut -f1 > review/exclude.txt`` (config key review.exclude).
"""

from __future__ import annotations

import csv
import json
import logging
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw, ImageFont

from .export_masks import save_palette_png
from .figures import select_ids
from .seg import cli
from .seg.files import atomic_path
from .seg.images import IGNORE_INDEX, decode_image, decode_mask, overlay
from .seg.maskstore import MaskStore
from .seg.palettes import flat, palette
from .seg.splits import png_name, read_scores, read_split_list

log = logging.getLogger("stpp")


def build_parser():
    p = cli.parser(__doc__.split("\n\n")[0])
    p.add_argument("--list", required=True, help="the unlabeled split list")
    p.add_argument("--teacher-masks", required=True, help="the teacher's pseudo_masks_unlabeled.h5")
    p.add_argument("--scores", required=True, help="stability_scores.tsv")
    p.add_argument("--reliable", required=True, help="reliable_ids.txt")
    p.add_argument("--audit", default=None, help="audit.json, for the classes it flags")
    p.add_argument("--corrected", default=None, help="the review's corrected_ids.txt: those images are reliable")
    p.add_argument("--size", type=int, default=16, help="review.sheet_size: the least stable images shown")
    p.add_argument("--class-names", nargs="*", default=None, help="one name per class (default: 0..C-1)")
    p.add_argument("--palette", default="pascal", help="data.palette")
    p.add_argument("--out", required=True, help="the review sheet's folder")
    cli.add_data_args(p)
    p.add_argument("--verbose", action="store_true", help="debug logging")
    return p


def choose(args, samples, scores: dict, reliable: set, flagged: list[str], names: list[str]) -> dict[str, str]:
    """{image id: why it is on the sheet}, the least stable first, in score order."""
    why = {
        i: f"least stable ({rank})"
        for rank, i in enumerate(select_ids(list(scores), scores, "least_stable", args.size), 1)
    }
    flagged_ids, labels = {names.index(n) for n in flagged}, cli.mask_labels(args)
    for s in samples:
        if s.id in reliable and s.mask and flagged_ids:
            present = set(
                np.unique(decode_mask(Path(args.data_root) / s.mask, args.num_classes, labels, s.origin)).tolist()
            )
            shown = [names[k] for k in sorted(present & flagged_ids)]
            if shown:
                why[s.id] = "; ".join(filter(None, [why.get(s.id), f"reliable, shows flagged {', '.join(shown)}"]))
    return why


def review_sheet(args) -> None:
    names = args.class_names or [str(k) for k in range(args.num_classes)]
    samples = {s.id: s for s in read_split_list(args.list)}
    scores = read_scores(args.scores)
    reliable = {s.id for s in read_split_list(args.reliable)}
    if args.corrected:  # a corrected image counts as reliable (every student trains on its mask)
        reliable |= {s.id for s in read_split_list(args.corrected, allow_empty=True)}
    flagged = json.loads(Path(args.audit).read_text()).get("under_predicted_classes", []) if args.audit else []
    why = choose(args, samples.values(), scores, reliable, flagged, names)
    store, colours, out = MaskStore(args.teacher_masks), palette(args.palette), Path(args.out)
    rows = []
    for image_id, reason in why.items():
        s, mask = samples[image_id], store[image_id]
        image = decode_image(Path(args.data_root) / s.image, s.origin)
        name = png_name(image_id)
        shown = with_legend(overlay(image, mask, colours), mask, colours, names)
        for folder, array in (("images", image), ("overlays", shown)):
            with atomic_path(out / folder / name) as tmp:
                Image.fromarray(array).save(tmp, format="PNG")
        save_palette_png(out / "masks" / name, mask, flat(colours))
        counts = np.bincount(mask[mask != IGNORE_INDEX].ravel(), minlength=args.num_classes)
        share = counts / max(1, counts.sum())
        rows.append(
            {
                "id": image_id,
                "score": f"{scores[image_id]:.6f}",
                "reliable": "1" if image_id in reliable else "0",
                "why": reason,
                **{f"share_{n}": f"{v:.3f}" for n, v in zip(names, share, strict=True)},
            }
        )
    columns = ["id", "score", "reliable", "why", *(f"share_{n}" for n in names)]
    with atomic_path(out / "review.tsv") as tmp, open(tmp, "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=columns, delimiter="\t", lineterminator="\n")
        writer.writeheader()
        writer.writerows(rows)
    log.info(
        "review sheet: %d images (%d least stable; flagged classes: %s) -> %s",
        len(rows),
        min(args.size, len(scores)),
        ", ".join(flagged) or "none",
        out,
    )


def with_legend(overlaid: np.ndarray, mask: np.ndarray, colours, names: list[str]) -> np.ndarray:
    """The overlay with a strip below it: a swatch and the name of each class the mask holds,
    so that a reviewer reads the colours without a palette at hand (masks/ stay the image's size)."""
    present = [int(c) for c in np.unique(mask) if c != IGNORE_INDEX]
    font = ImageFont.load_default()
    line_height, pad = 14, 4
    width = max(overlaid.shape[1], 160)  # a small image's legend still shows a name a line
    lines, line = [], []
    for c in present:  # as many entries a line as fit
        entry_width = line_height + pad + int(font.getlength(names[c])) + 2 * pad
        if line and sum(w for _, w in line) + entry_width > width:
            lines.append(line)
            line = []
        line.append((c, entry_width))
    lines += [line] if line else []
    strip = Image.new("RGB", (width, max(1, len(lines)) * (line_height + pad) + pad), "white")
    draw = ImageDraw.Draw(strip)
    for row, entries in enumerate(lines):
        x, y = pad, pad + row * (line_height + pad)
        for c, entry_width in entries:
            draw.rectangle([x, y, x + line_height - 1, y + line_height - 1], fill=tuple(colours[c]), outline="black")
            draw.text((x + line_height + pad, y), names[c], fill="black", font=font)
            x += entry_width
    top = np.full((overlaid.shape[0], width, 3), 255, np.uint8)
    top[:, : overlaid.shape[1]] = overlaid
    return np.concatenate([top, np.asarray(strip)], axis=0)


def main(argv=None) -> None:
    cli.run(review_sheet, build_parser(), argv)


if __name__ == "__main__":
    main()
