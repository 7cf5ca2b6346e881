"""Apply a review to the pseudo-labeled training sets: exclusions and corrected masks.

    python -m stages.review --unlabeled unlabeled.txt [--review-exclude review/exclude.txt] \\
        [--review-masks review/masks/] --num-classes C [--ignore-labels 11] \\
        --kept kept_ids.txt --corrected corrected_ids.txt --corrected-masks corrected_masks.h5

Writes three files that every student and the ST++ split read instead of the unlabeled list:

- ``kept_ids.txt``: the unlabeled list less the excluded and the corrected images. ST trains on
  these with the teacher's masks; ST++ splits these into reliable and unreliable.
- ``corrected_ids.txt`` and ``corrected_masks.h5``: each corrected image (its unlabeled-list
  line) and its mask as the reviewer drew it (ignore labels become 255). Every student trains on
  them as on reliable images: a mask a person checked is not relabeled by student 1.

The data check has checked every file already (``review.digest``); this stage only applies them,
so a changed exclusion or mask re-runs it and the students, never the teacher.
"""

from __future__ import annotations

import logging

from .seg import cli
from .seg.images import decode_mask
from .seg.maskstore import MaskStoreWriter
from .seg.splits import corrected_masks, read_split_list, write_split_list

log = logging.getLogger("stpp")


def build_parser():
    p = cli.parser(__doc__.split("\n\n")[0])
    p.add_argument("--unlabeled", required=True, help="the unlabeled split list")
    # the data check's names for the same two keys (--exclude and --masks: the names of before)
    p.add_argument(
        "--review-exclude",
        "--exclude",
        dest="exclude",
        default=None,
        help="review.exclude: images no student trains on",
    )
    p.add_argument(
        "--review-masks", "--masks", dest="masks", default=None, help="review.masks: corrected masks (<image path>.png)"
    )
    cli.add_label_args(p)
    p.add_argument("--kept", required=True, help="kept_ids.txt to write")
    p.add_argument("--corrected", required=True, help="corrected_ids.txt to write")
    p.add_argument("--corrected-masks", required=True, help="corrected_masks.h5 to write")
    p.add_argument("--verbose", action="store_true", help="debug logging")
    return p


def review(args) -> None:
    samples = read_split_list(args.unlabeled)
    excluded = {s.id for s in read_split_list(args.exclude)} if args.exclude else set()
    masks, unknown = corrected_masks(args.masks, [s.id for s in samples]) if args.masks else ({}, [])
    if unknown or excluded - {s.id for s in samples}:
        raise ValueError("the review has files the data check refuses; run the data check (snakemake runs it first)")
    with MaskStoreWriter(args.corrected_masks, {"source": str(args.masks)}) as store:
        for image_id, path in masks.items():
            mask = decode_mask(path, args.num_classes, cli.mask_labels(args), f"review.masks {args.masks}")
            store.write(image_id, mask)
    write_split_list(args.kept, [s for s in samples if s.id not in excluded and s.id not in masks])
    write_split_list(args.corrected, [s for s in samples if s.id in masks])
    log.info(
        "review: %d of %d unlabeled images excluded, %d corrected, %d kept for the teacher's masks",
        len(excluded),
        len(samples),
        len(masks),
        len(samples) - len(excluded) - len(masks),
    )


def main(argv=None) -> None:
    cli.run(review, build_parser(), argv)


if __name__ == "__main__":
    main()
