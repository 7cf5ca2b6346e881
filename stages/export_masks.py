"""Export masks from an HDF5 mask store as palette PNGs that open in any image viewer.

    python -m stages.export_masks --store results/x/teacher/pseudo_masks_unlabeled.h5 --out DIR \\
        [--ids train/0001.png ...] [--palette camvid|pascal|msrc21|FILE]

One PNG per image, at ``DIR/<id>`` with the extension replaced by ``.png`` (an id's folders
become folders). The pixel values stay the class indices; the palette only colours them.
A store of the K checkpoints' masks (``checkpoint_masks.h5``, one (K, H, W) stack per id) gives
``<id stem>_checkpoint_<j>.png`` for j = 1..K.
"""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
from PIL import Image

from .seg import cli
from .seg.files import atomic_path
from .seg.maskstore import MaskStore
from .seg.palettes import BUILT_IN, flat, palette
from .seg.splits import png_name

log = logging.getLogger("stpp")


def build_parser():
    p = cli.parser(__doc__.split("\n\n")[0])
    p.add_argument("--store", required=True, help="HDF5 mask store (pseudo_masks_*.h5, checkpoint_masks.h5)")
    p.add_argument("--out", required=True, help="folder to write the PNGs into")
    p.add_argument("--ids", nargs="*", default=None, help="image ids to export (default: all)")
    p.add_argument("--palette", default="pascal", help=f"one of {', '.join(BUILT_IN)}, or a file of 'R G B' lines")
    p.add_argument("--verbose", action="store_true", help="debug logging")
    return p


def save_palette_png(path: Path, mask: np.ndarray, colours: list[int]) -> None:
    image = Image.fromarray(np.asarray(mask, dtype=np.uint8), mode="P")
    image.putpalette(colours)
    with atomic_path(path) as tmp:
        image.save(tmp, format="PNG")


def export(args) -> None:
    store = MaskStore(args.store)
    colours = flat(palette(args.palette))
    ids = list(store.ids()) if args.ids is None else args.ids
    missing = store.missing(ids)
    if missing:
        raise ValueError(
            f"{args.store} has no mask for {missing[:3]} ({len(missing)} of {len(ids)} ids); "
            "ids are the image paths of the split list"
        )
    out = Path(args.out)
    written = 0
    for image_id in ids:
        mask = store[image_id]
        stem = out / Path(image_id).with_suffix("")
        if mask.ndim == 3:  # one mask per teacher checkpoint
            for j, m in enumerate(mask, start=1):
                save_palette_png(stem.with_name(f"{stem.name}_checkpoint_{j}.png"), m, colours)
                written += 1
        else:
            save_palette_png(out / png_name(image_id), mask, colours)
            written += 1
    log.info("wrote %d PNGs of %d ids from %s to %s (palette %s)", written, len(ids), args.store, out, args.palette)


def main(argv=None) -> None:
    cli.run(export, build_parser(), argv)


if __name__ == "__main__":
    main()
