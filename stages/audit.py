"""Measure the pseudo-masks against the unlabeled images' own masks (the audit; never training).

    python -m stages.audit --list unlabeled.txt --data-root ROOT --num-classes C \\
        --teacher-masks teacher/pseudo_masks_unlabeled.h5 [--scores stability_scores.tsv \\
        --reliable reliable_ids.txt --unreliable unreliable_ids.txt \\
        --relabeled stpp_student1/pseudo_masks_unreliable.h5] --out-json audit.json --out-tsv per_image.tsv

``audit.json`` holds the mIoU, per-class IoU and per-class pixel share (in the true masks and in
the pseudo-masks) of the teacher's pseudo-masks on every
unlabeled image and, with ST++'s outputs, on the reliable and the unreliable set; the
unreliable set again as ST++ student 1 relabeled it, and the gain; and the Spearman correlation
between stability score and per-image pseudo-mask mIoU (the paper's Figure 3 in numbers).
``per_image.tsv`` has one row per unlabeled image: id, score, reliable (1/0), and the per-image
mIoU of the teacher's and of student 1's mask. One confusion matrix per set, as evaluation
does; a per-image mIoU is the nan-mean over the classes present in that image's mask or
prediction. Without masks in the list the audit still writes both files and says, under
``not_measured``, what it could not measure.

``under_predicted_classes`` names the classes whose pixel share in the pseudo-masks is under half
their share in the true masks (the flags the review sheet acts on). With a review (``--kept``,
``--corrected``, ``--corrected-masks``: the outputs of ``stages.review``), ``review`` says which
images were excluded and corrected and, with true masks, the corrected masks' own quality, and
``per_image.tsv``'s ``review`` column marks them.
"""

from __future__ import annotations

import csv
import logging
import math
from pathlib import Path

import numpy as np

from .seg import cli
from .seg.files import atomic_path, write_json
from .seg.images import IGNORE_INDEX, decode_mask
from .seg.inference import confident
from .seg.maskstore import MaskStore
from .seg.metrics import confusion_matrix, iou_per_class, mean_iou, spearman
from .seg.splits import read_scores, read_split_list

log = logging.getLogger("stpp")

PER_IMAGE_COLUMNS = ("id", "score", "reliable", "teacher_miou", "student1_miou", "review")
# A class whose pseudo-mask pixel share is below this fraction of its true share is named in the log.
UNDER_PREDICTED = 0.5


def build_parser():
    p = cli.parser(__doc__.split("\n\n")[0])
    p.add_argument("--list", required=True, help="the unlabeled split list (masks, where present, are the truth)")
    p.add_argument("--teacher-masks", required=True, help="the teacher's pseudo_masks_unlabeled.h5")
    p.add_argument("--scores", default=None, help="stability_scores.tsv (ST++)")
    p.add_argument("--reliable", default=None, help="reliable_ids.txt (ST++)")
    p.add_argument("--unreliable", default=None, help="unreliable_ids.txt (ST++)")
    p.add_argument("--relabeled", default=None, help="student 1's pseudo_masks_unreliable.h5 (ST++)")
    p.add_argument("--kept", default=None, help="the review's kept_ids.txt (with a review)")
    p.add_argument("--corrected", default=None, help="the review's corrected_ids.txt (with a review)")
    p.add_argument("--corrected-masks", default=None, help="the review's corrected_masks.h5 (with a review)")
    p.add_argument("--class-names", nargs="*", default=None, help="one name per class (default: 0..C-1)")
    p.add_argument(
        "--pixel-threshold",
        type=float,
        default=0.5,
        help="stpp.pixel_threshold: the teacher's confident pixels (confidence at least this) are "
        "measured apart from the rest, where its mask store holds confidences",
    )
    p.add_argument("--out-json", required=True, help="audit.json to write")
    p.add_argument("--out-tsv", required=True, help="per_image.tsv to write")
    cli.add_data_args(p)
    p.add_argument("--verbose", action="store_true", help="debug logging")
    return p


# The confusion matrices the audit sums: whole images of each set, and pixels by the teacher's
# confidence (stpp.pixel_threshold)
SETS = ("teacher_all", "teacher_reliable", "teacher_unreliable", "student1_unreliable", "corrected")
PIXEL_SETS = ("teacher_confident", "teacher_unconfident", "student1_unconfident")


def quality(cm: np.ndarray, names: list[str]) -> dict:
    """mIoU and per-class IoU (JSON: NaN as null) of one confusion matrix, and each class's share
    of the pixels in the true masks and in the pseudo-masks: a class that pseudo-labels
    under-predict (a rare, thin one) reaches a student rarer than it is."""
    cm = np.asarray(cm)
    iou = iou_per_class(cm)
    miou = mean_iou(cm)
    total = int(cm.sum())

    def shares(counts: np.ndarray) -> dict:
        return {n: (float(v) / total if total else None) for n, v in zip(names, counts, strict=True)}

    # rows of the matrix are the truth, columns the pseudo-mask
    return {
        "miou": None if math.isnan(miou) else miou,
        "iou": {n: (None if math.isnan(v) else float(v)) for n, v in zip(names, iou, strict=True)},
        "pixels": total,
        "pixel_share": {"truth": shares(cm.sum(1)), "pseudo_masks": shares(cm.sum(0))},
    }


def audit(args) -> None:
    names = args.class_names or [str(k) for k in range(args.num_classes)]
    if len(names) != args.num_classes:
        raise ValueError(f"--class-names has {len(names)} names for {args.num_classes} classes")
    samples = read_split_list(args.list)
    scores = read_scores(args.scores) if args.scores else {}
    reliable = {s.id for s in read_split_list(args.reliable)} if args.reliable else set()
    unreliable = {s.id for s in read_split_list(args.unreliable)} if args.unreliable else set()
    review = review_of(args, samples)
    rows, cms = per_image(args, samples, scores, reliable, unreliable, review)
    result = summarise(args, samples, names, scores, reliable, unreliable, rows, cms)
    if review:
        result["review"] = {
            "excluded": len(review["excluded"]),
            "corrected": len(review["corrected"]),
            "excluded_ids": sorted(review["excluded"]),
            "corrected_ids": sorted(review["corrected"]),
        }
        if result["ground_truth"]:
            result["review"]["corrected_masks"] = quality(cms["corrected"], names)
    with atomic_path(args.out_tsv) as tmp, open(tmp, "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=PER_IMAGE_COLUMNS, delimiter="\t", lineterminator="\n")
        writer.writeheader()
        writer.writerows(rows)
    write_json(args.out_json, result)
    log_findings(result)
    log.info("wrote %s and %s", args.out_json, args.out_tsv)


def review_of(args, samples) -> dict[str, set]:
    """{"excluded": ids, "corrected": ids} of the review, or {} without one."""
    if not args.kept:
        return {}
    kept = {s.id for s in read_split_list(args.kept, allow_empty=True)}
    corrected = {s.id for s in read_split_list(args.corrected, allow_empty=True)}
    return {"excluded": {s.id for s in samples} - kept - corrected, "corrected": corrected}


def per_image(args, samples, scores: dict, reliable: set, unreliable: set, review: dict) -> tuple[list[dict], dict]:
    """The per-image rows (id, score, reliable, the teacher's and student 1's mask mIoU, what
    the review did) and the confusion matrices of each set, where the list has true masks."""
    c = args.num_classes
    teacher = MaskStore(args.teacher_masks)
    relabeled = MaskStore(args.relabeled) if args.relabeled else None
    has_truth = all(s.mask for s in samples)
    stpp = bool(args.reliable and args.unreliable)
    cms = {key: np.zeros((c, c), np.int64) for key in (*SETS, *PIXEL_SETS)}
    corrected_masks = MaskStore(args.corrected_masks) if review.get("corrected") else None
    pixel_sets = teacher.has_confidence  # looked up once, not per image
    status = {i: what for what in ("excluded", "corrected") for i in review.get(what, ())}
    labels = cli.mask_labels(args)  # how the true masks' values read, made once
    rows = []
    for n, s in enumerate(samples, start=1):
        row = {
            "id": s.id,
            "score": f"{scores[s.id]:.6f}" if s.id in scores else "",
            # a corrected image is reliable: every student trains on its mask as on a reliable one
            "reliable": ("1" if s.id in reliable or status.get(s.id) == "corrected" else "0") if stpp else "",
            "teacher_miou": "",
            "student1_miou": "",
            "review": status.get(s.id, ""),
        }
        if has_truth:
            truth = decode_mask(Path(args.data_root) / s.mask, c, labels, s.origin)
            cm = confusion_matrix(teacher[s.id], truth, c).numpy()
            row["teacher_miou"] = f"{mean_iou(cm):.6f}"
            cms["teacher_all"] += cm
            if corrected_masks is not None and s.id in review["corrected"]:
                corrected = corrected_masks[s.id]
                painted = corrected != IGNORE_INDEX  # 255 in a corrected mask: the reviewer left it out
                cms["corrected"] += confusion_matrix(corrected[painted], truth[painted], c).numpy()
            if s.id in reliable:
                cms["teacher_reliable"] += cm
            if s.id in unreliable:  # both with stpp.selection pixel: every image
                cms["teacher_unreliable"] += cm
                if relabeled is not None:
                    cm1 = confusion_matrix(relabeled[s.id], truth, c).numpy()
                    cms["student1_unreliable"] += cm1
                    row["student1_miou"] = f"{mean_iou(cm1):.6f}"
            if pixel_sets:
                add_pixel_sets(cms, teacher, relabeled, s.id, truth, args.pixel_threshold, c)
        rows.append(row)
        if n % max(1, len(samples) // 10) == 0 or n == len(samples):
            log.info("audited %d/%d images", n, len(samples))
    return rows, cms


def add_pixel_sets(cms: dict, teacher: MaskStore, relabeled, image_id: str, truth, threshold: float, c: int) -> None:
    """The teacher's confident and unconfident pixels of one image against the truth, and
    student 1's relabel of the unconfident ones where it relabeled the image."""
    mask = teacher[image_id]
    sure = confident(teacher.confidence(image_id), threshold)
    cms["teacher_confident"] += confusion_matrix(mask[sure], truth[sure], c).numpy()
    cms["teacher_unconfident"] += confusion_matrix(mask[~sure], truth[~sure], c).numpy()
    if relabeled is not None and image_id in relabeled:
        cms["student1_unconfident"] += confusion_matrix(relabeled[image_id][~sure], truth[~sure], c).numpy()


def pixel_quality(result: dict, cms: dict, names: list[str], threshold: float) -> None:
    """audit.json's pixel-level view (the paper's Table 8): the teacher's confident and
    unconfident pixels' quality, and student 1's relabel of the unconfident ones."""
    confident_pixels, unconfident_pixels = int(cms["teacher_confident"].sum()), int(cms["teacher_unconfident"].sum())
    result["pixel_threshold"] = threshold
    result["confident_pixel_share"] = confident_pixels / max(confident_pixels + unconfident_pixels, 1)
    result["teacher"]["confident_pixels"] = quality(cms["teacher_confident"], names)
    result["teacher"]["unconfident_pixels"] = quality(cms["teacher_unconfident"], names)
    if cms["student1_unconfident"].sum():
        relabel = quality(cms["student1_unconfident"], names)
        result.setdefault("student1_relabel", {})["unconfident_pixels"] = relabel
        before = result["teacher"]["unconfident_pixels"]["miou"]
        result["pixel_relabel_gain"] = None if before is None or relabel["miou"] is None else relabel["miou"] - before


def summarise(args, samples, names, scores, reliable, unreliable, rows, cms) -> dict:
    """audit.json: each set's quality, the relabel gain, Spearman, and what was not measured."""
    has_truth = all(s.mask for s in samples)
    stpp = bool(args.reliable and args.unreliable)
    not_measured = []
    result: dict = {
        "list": str(args.list),
        "images": len(samples),
        "ground_truth": has_truth,
        "reliable_images": len(reliable),
        "unreliable_images": len(unreliable),
        "class_names": names,
    }
    if not has_truth:
        missing = sum(1 for s in samples if not s.mask)
        not_measured.append(
            f"pseudo-mask quality: {missing} of {len(samples)} lines of {args.list} have no mask; "
            "add '<image> <mask>' lines to measure it (the masks are never used for training)"
        )
    else:
        result["teacher"] = {"all": quality(cms["teacher_all"], names)}
        result["under_predicted_classes"] = under_predicted(result["teacher"]["all"])
        if stpp:
            result["teacher"]["reliable"] = quality(cms["teacher_reliable"], names)
            result["teacher"]["unreliable"] = quality(cms["teacher_unreliable"], names)
        else:
            not_measured.append("reliable vs unreliable quality: no ST++ split (ST++ is not among the methods)")
        if args.relabeled:
            result["student1_relabel"] = {"unreliable": quality(cms["student1_unreliable"], names)}
            before, after = result["teacher"]["unreliable"]["miou"], result["student1_relabel"]["unreliable"]["miou"]
            result["relabel_gain"] = None if before is None or after is None else after - before
        elif stpp:
            not_measured.append("relabel gain: no student-1 relabeling of the unreliable images")
        if MaskStore(args.teacher_masks).has_confidence:
            pixel_quality(result, cms, names, args.pixel_threshold)
        else:
            not_measured.append("confident vs unconfident pixels: the teacher's masks hold no confidences")
    if has_truth and scores:
        pairs = [
            (float(r["score"]), float(r["teacher_miou"]))
            for r in rows
            if r["score"] and math.isfinite(float(r["teacher_miou"]))
        ]
        rho = spearman([p[0] for p in pairs], [p[1] for p in pairs]) if pairs else float("nan")
        result["spearman_score_vs_miou"] = None if math.isnan(rho) else rho
    elif has_truth:
        not_measured.append("Spearman(score, mIoU): no stability scores (ST++ is not among the methods)")
    result["not_measured"] = not_measured
    return result


def under_predicted(q: dict) -> list[str]:
    """The classes (the audit's flags) whose pixel share in the pseudo-masks is under
    UNDER_PREDICTED of their share in the true masks: a class mistaken for another (MSRC-21's cats
    called dogs) or too thin to survive. The review sheet shows the reliable images that have them."""
    share = q["pixel_share"]
    return [n for n, t in share["truth"].items() if t and share["pseudo_masks"][n] < UNDER_PREDICTED * t]


def log_findings(result: dict) -> None:
    for subset, q in result.get("teacher", {}).items():
        log.info("teacher pseudo-masks, %s images: mIoU %s", subset, q["miou"])
    if result.get("under_predicted_classes"):
        share = result["teacher"]["all"]["pixel_share"]
        rare = [f"{n} {share['pseudo_masks'][n] / share['truth'][n]:.2f}x" for n in result["under_predicted_classes"]]
        what = "classes the teacher's pseudo-masks under-predict (pixel share against the truth)"
        log.info("%s: %s", what, ", ".join(rare))
    if "review" in result:
        log.info("review: %d excluded, %d corrected", result["review"]["excluded"], result["review"]["corrected"])
    for what in result["not_measured"]:
        log.info("not measured: %s", what)


def main(argv=None) -> None:
    cli.run(audit, build_parser(), argv)


if __name__ == "__main__":
    main()
