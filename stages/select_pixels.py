"""Pixel-level selective re-training's masks (stpp.selection: pixel, the paper's Table 8).

    python -m stages.select_pixels --teacher teacher/pseudo_masks_unlabeled.h5 --threshold 0.5 \\
        --out stpp_split/pixel_masks_confident.h5
    python -m stages.select_pixels --teacher ... --relabel stpp_student1/pseudo_masks_unreliable.h5 \\
        --threshold 0.5 --out stpp_split/pixel_masks_combined.h5

Without ``--relabel``: the teacher's masks with every pixel whose TTA confidence is below the
threshold set to 255 (ignored in the loss): what student 1 learns from. With it: the teacher's
class where it was confident, student 1's relabel elsewhere: what student 2 learns from. The
confidence is the one stages.label stored beside each mask (its winning class's mean probability
over the TTA passes); a pixel is confident where it reaches the threshold (the paper's 0.5).
"""

from __future__ import annotations

import logging

import numpy as np

from .seg import cli
from .seg.inference import confident
from .seg.maskstore import MaskStore, MaskStoreWriter
from .seg.transforms import IGNORE_INDEX

log = logging.getLogger("stpp")


def build_parser():
    p = cli.parser(__doc__.split("\n\n")[0])
    p.add_argument("--teacher", required=True, help="the teacher's mask store, with confidences (stages.label)")
    p.add_argument(
        "--relabel", default=None, help="student 1's relabels of the same images; omit for student 1's masks"
    )
    p.add_argument("--threshold", type=float, default=0.5, help="stpp.pixel_threshold: the confidence a pixel needs")
    p.add_argument("--out", required=True, help="mask store to write")
    return p


def selected_mask(mask: np.ndarray, sure: np.ndarray, relabel: np.ndarray | None) -> np.ndarray:
    """The confident pixels' classes, and elsewhere 255 (no relabel) or the relabel's."""
    if relabel is None:
        return np.where(sure, mask, IGNORE_INDEX).astype(np.uint8)
    if relabel.shape != mask.shape:
        raise ValueError(f"the relabel is {relabel.shape}, the teacher's mask {mask.shape}: not the same image")
    return np.where(sure, mask, relabel).astype(np.uint8)


def select_pixels(args) -> None:
    if not 0 < args.threshold < 1:
        raise ValueError(f"--threshold {args.threshold} is no confidence: it is in (0, 1)")
    teacher = MaskStore(args.teacher)
    if not teacher.has_confidence:
        raise ValueError(
            f"{args.teacher} holds no confidences (written before stages.label stored them): "
            "re-run the teacher's labeling"
        )
    relabel = MaskStore(args.relabel) if args.relabel else None
    ids = sorted(teacher.ids())
    missing = relabel.missing(ids) if relabel else []
    if missing:
        raise ValueError(f"{args.relabel} has no relabel of {len(missing)} images, e.g. {missing[:3]}")
    kept = total = 0
    attrs = {"teacher": args.teacher, "relabel": args.relabel, "threshold": args.threshold}
    with MaskStoreWriter(args.out, attrs) as out:
        for image_id in ids:
            sure = confident(teacher.confidence(image_id), args.threshold)
            out.write(image_id, selected_mask(teacher[image_id], sure, relabel[image_id] if relabel else None))
            kept, total = kept + int(sure.sum()), total + sure.size
    log.info(
        "%d images: %.1f%% of the pixels confident (>= %g), %s elsewhere; wrote %s",
        len(ids),
        100 * kept / max(total, 1),
        args.threshold,
        "student 1's relabel" if relabel else "ignored",
        args.out,
    )


def main(argv=None) -> None:
    cli.run(select_pixels, build_parser(), argv)


if __name__ == "__main__":
    main()
