"""Split the unlabeled list into reliable and unreliable images by stability score (stage 4).

    python -m stages.split --scores stability_scores.tsv --list unlabeled.txt --ratio 0.5 \\
        --reliable reliable_ids.txt --unreliable unreliable_ids.txt

Sorts by score, highest first; ties keep list order (a stable sort). The top floor(N * R) are
reliable. Both outputs are lines of the unlabeled list, so each is itself a valid split list.

``--selection random`` is the paper's ablation (Table 7, "random"): the same number of images,
drawn uniformly with ``--seed`` instead of by score; the scores are still read and checked.
``--selection pixel`` (Table 8, pixel-level selective re-training) selects pixels, not images:
every image is in both lists (student 1 learns from each one's confident pixels, then relabels
each one's other pixels: stages.select_pixels).
"""

from __future__ import annotations

import logging
import random

from .seg import cli
from .seg.splits import read_scores, read_split_list, reliable_count, write_split_list

log = logging.getLogger("stpp")


def build_parser():
    p = cli.parser(__doc__.split("\n\n")[0])
    p.add_argument("--scores", required=True, help="stability_scores.tsv from stages.score")
    p.add_argument("--list", required=True, help="the unlabeled split list that was scored")
    p.add_argument("--ratio", type=float, default=0.5, help="R: share of images that are reliable")
    p.add_argument("--reliable", required=True, help="reliable_ids.txt to write")
    p.add_argument("--unreliable", required=True, help="unreliable_ids.txt to write")
    p.add_argument(
        "--selection",
        choices=("stability", "random", "pixel"),
        default="stability",
        help="rank by stability score, draw the reliable set at random (the ablation), or pixel: "
        "every image in both lists (pixel-level selection)",
    )
    p.add_argument("--seed", type=int, default=0, help="seed of --selection random")
    return p


def rank(samples: list, scores: dict[str, float], ratio: float, shuffle_seed: int | None = None) -> tuple[list, list]:
    """(reliable, unreliable), each in descending score order; or, with ``shuffle_seed``, in a
    random order drawn with that seed (the random-selection ablation)."""
    missing = [s.id for s in samples if s.id not in scores]
    if missing:
        raise ValueError(f"no stability score for {len(missing)} listed images, e.g. {missing[:3]}")
    if shuffle_seed is None:
        ordered = sorted(samples, key=lambda s: -scores[s.id])  # sorted() is stable
    else:
        ordered = random.Random(shuffle_seed).sample(samples, len(samples))
    cut = reliable_count(len(ordered), ratio)
    return ordered[:cut], ordered[cut:]


def split(args) -> None:
    samples = read_split_list(args.list)
    seed = args.seed if args.selection == "random" else None
    reliable, unreliable = rank(samples, read_scores(args.scores), args.ratio, seed)
    if args.selection == "pixel":
        reliable = unreliable = samples
    write_split_list(args.reliable, reliable)
    write_split_list(args.unreliable, unreliable)
    log.info(
        "%d reliable, %d unreliable of %d (R = %g, selection %s)",
        len(reliable),
        len(unreliable),
        len(samples),
        args.ratio,
        args.selection,
    )


def main(argv=None) -> None:
    cli.run(split, build_parser(), argv)


if __name__ == "__main__":
    main()
