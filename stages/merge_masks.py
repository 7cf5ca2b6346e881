"""Join the shard mask stores of one labeling job into one store.

python -m stages.merge_masks --out pseudo_masks.h5 shard_0.h5 shard_1.h5 ...
"""

from __future__ import annotations

import logging

from .seg import cli
from .seg.maskstore import merge_stores

log = logging.getLogger("stpp")


def build_parser():
    p = cli.parser(__doc__.split("\n\n")[0])
    p.add_argument("--out", required=True, help="merged HDF5 mask store")
    p.add_argument("shards", nargs="+", help="shard stores written by stages.label")
    return p


def merge(args) -> None:
    count = merge_stores(args.shards, args.out)
    log.info("merged %d masks from %d shards into %s", count, len(args.shards), args.out)


def main(argv=None) -> None:
    cli.run(merge, build_parser(), argv)


if __name__ == "__main__":
    main()
