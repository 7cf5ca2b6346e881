"""Join the shards of a stability-scoring job into the files one job would have written.

    python -m stages.merge_scores --list unlabeled.txt --scores stability_scores.tsv \\
        --masks checkpoint_masks.h5 --shards shard_0_of_3 shard_1_of_3 shard_2_of_3

Each shard ``S`` is the pair ``S.tsv`` and ``S.h5`` that ``stages.score --shard`` wrote. The rows
of ``stability_scores.tsv`` come back in list order, byte for byte as an unsharded job writes
them; every image must be in exactly one shard.
"""

from __future__ import annotations

import logging

from .seg import cli
from .seg.files import write_text
from .seg.maskstore import merge_stores
from .seg.splits import DataError, read_split_list

log = logging.getLogger("stpp")


def build_parser():
    p = cli.parser(__doc__.split("\n\n")[0])
    p.add_argument("--list", required=True, help="the split list that was scored (gives the row order)")
    p.add_argument("--scores", required=True, help="stability_scores.tsv to write")
    p.add_argument("--masks", required=True, help="checkpoint_masks.h5 to write")
    p.add_argument("--shards", nargs="+", required=True, help="shard paths without the .tsv / .h5 suffix")
    return p


def merge(args) -> None:
    header, rows = None, {}
    for shard in args.shards:
        with open(f"{shard}.tsv") as f:
            lines = f.read().splitlines()
        if header not in (None, lines[0]):
            raise DataError(
                f"{shard}.tsv: its header differs from the other shards' (other checkpoints?); re-run the scoring"
            )
        header = lines[0]
        for line in lines[1:]:
            image_id = line.split("\t", 1)[0]
            if image_id in rows:
                raise DataError(f"{shard}.tsv: {image_id} is in more than one shard; re-run the scoring")
            rows[image_id] = line
    ids = [s.id for s in read_split_list(args.list)]
    missing = [i for i in ids if i not in rows]
    if missing or len(rows) != len(ids):
        raise DataError(
            f"the shards {', '.join(args.shards)} do not cover {args.list} exactly "
            f"({len(missing)} of its images missing, {len(rows)} rows for {len(ids)} images); "
            "re-run the scoring"
        )
    count = merge_stores([f"{shard}.h5" for shard in args.shards], args.masks)
    write_text(args.scores, "\n".join([header, *(rows[i] for i in ids)]) + "\n")
    log.info(
        "merged %d scores and %d mask sets from %d shards into %s and %s",
        len(ids),
        count,
        len(args.shards),
        args.scores,
        args.masks,
    )


def main(argv=None) -> None:
    cli.run(merge, build_parser(), argv)


if __name__ == "__main__":
    main()
