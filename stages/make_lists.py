"""Write the workflow's split lists from a folder layout: images, masks, optional id lists.

    # Pascal VOC style: JPEGImages/, SegmentationClass/, ImageSets/Segmentation/{train,val}.txt
    python -m stages.make_lists --root /data/VOC2012 --images JPEGImages --masks SegmentationClass \\
        --ids ImageSets/Segmentation/train.txt --val-ids ImageSets/Segmentation/val.txt \\
        --labeled 1/8 --seed 0 --out /data/VOC2012/splits/1_8

    # a plain images + masks folder: val drawn from it too
    python -m stages.make_lists --root /data/mine --images images --masks masks \\
        --val 0.1 --labeled 100 --out /data/mine/splits/100

Writes ``labeled.txt``, ``unlabeled.txt`` and ``val.txt`` (and ``test.txt`` with ``--test-ids``)
into ``--out``, each line ``<image> <mask>`` relative to ``--root``: set ``data.root`` to
``--root`` and the lists to these files. An image is matched to the mask of the same name (its
stem) in ``--masks``; an id list names one image per line, by stem (VOC's ImageSets) or by path.
The unlabeled lines keep their masks: the workflow uses them only to audit the pseudo-masks.

The labeled part (``--labeled``: a fraction such as 1/8 or 0.125, or a count) is drawn with
``random.Random(--seed)``, as is val with ``--val`` (a fraction or a count, when there is no
``--val-ids``). Byte-identical images (the same photo under two names) are drawn together, so
that no image is both labeled and unlabeled or in both training and val. Everything is checked
before anything is written: an id without an image, an image without a mask where one is needed,
a path with white space (a list line is split at white space).
"""

from __future__ import annotations

import hashlib
import logging
import random
from fractions import Fraction
from pathlib import Path

from .seg import cli
from .seg.images import IMAGE_SUFFIXES
from .seg.splits import DataError, Sample, write_split_list

log = logging.getLogger("stpp")


def build_parser():
    p = cli.parser(__doc__.split("\n\n")[0])
    p.add_argument("--root", required=True, help="the data root: every path below is relative to it")
    p.add_argument("--images", required=True, help="the images' folder (relative to --root)")
    p.add_argument("--masks", required=True, help="the masks' folder (relative to --root)")
    p.add_argument("--image-ext", default=None, help="the images' extension (default: any of the usual ones)")
    p.add_argument("--mask-ext", default=".png", help="the masks' extension")
    p.add_argument("--ids", default=None, help="an id list of the training images (default: every image)")
    p.add_argument("--val-ids", default=None, help="an id list of the val images (VOC's val.txt)")
    p.add_argument("--test-ids", default=None, help="an id list of held-out test images")
    p.add_argument("--val", default=None, help="without --val-ids: val drawn from the images, a fraction or a count")
    p.add_argument("--labeled", required=True, help="the labeled part of the training images: 1/8, 0.125 or 100")
    p.add_argument("--seed", type=int, default=0, help="the draw's seed")
    p.add_argument("--out", required=True, help="the folder the lists go to")
    return p


def amount(text: str, total: int, what: str) -> int:
    """How many of ``total``: a fraction (1/8, 0.125) or a count (100); at least 1."""
    try:
        value = Fraction(text)
    except (ValueError, ZeroDivisionError):
        raise DataError(f"{what} {text!r}: give a fraction such as 1/8 or 0.125, or a count such as 100") from None
    n = int(value) if value.denominator == 1 and value >= 1 else round(value * total)
    if not 1 <= n < total:
        raise DataError(f"{what} {text} gives {n} of {total} images; it must leave at least one on each side")
    return n


def index_images(root: Path, folder: str, extensions) -> dict[str, str]:
    """{stem: path relative to root} of the images (or masks) of ``folder``, recursively."""
    base = root / folder
    if not base.is_dir():
        raise DataError(f"folder not found: {base}; check --root and the folder's name")
    out: dict[str, str] = {}
    for path in sorted(base.rglob("*")):
        if path.is_file() and path.suffix.lower() in extensions:
            stem = str(path.relative_to(base).with_suffix(""))
            out.setdefault(stem, str(path.relative_to(root)))
    return out


def read_ids(root: Path, path: str) -> list[str]:
    """The ids of an id list (one per line: a stem or a path; '#' comments), in order."""
    full = Path(path) if Path(path).is_absolute() else root / path
    if not full.is_file():
        raise DataError(f"id list not found: {full}")
    ids = []
    for line in full.read_text().splitlines():
        line = line.split("#", 1)[0].strip()
        if line:
            ids.append(str(Path(line.split()[0]).with_suffix("")) if "." in Path(line).name else line.split()[0])
    return ids


def samples_of(ids, images: dict, masks: dict, source: str, need_masks: bool, problems: list) -> list[Sample]:
    out = []
    for image_id in ids:
        key = image_id if image_id in images else Path(image_id).name
        if key not in images:
            problems.append(f"{source}: {image_id} has no image in --images")
            continue
        mask = masks.get(key)
        if need_masks and mask is None:
            problems.append(f"{source}: {image_id} ({images[key]}) has no mask in --masks")
            continue
        for path in (images[key], mask):
            if path and any(c.isspace() for c in path):
                problems.append(f"{source}: {path!r} has white space, which splits a list line; rename it")
        out.append(Sample(images[key], images[key], mask))
    return out


def groups_by_bytes(root: Path, samples: list[Sample]) -> list[list[Sample]]:
    """The samples, byte-identical images in one group, in the samples' order."""
    groups: dict[str, list[Sample]] = {}
    for s in samples:
        groups.setdefault(hashlib.sha256((root / s.image).read_bytes()).hexdigest(), []).append(s)
    return list(groups.values())


def draw(groups: list[list[Sample]], n: int, rng: random.Random) -> tuple[list[Sample], list[Sample]]:
    """About ``n`` samples in whole groups (drawn at random), and the rest; each in list order."""
    order = list(range(len(groups)))
    rng.shuffle(order)
    chosen, count = set(), 0
    for g in order:
        if count >= n:
            break
        chosen.add(g)
        count += len(groups[g])
    picked = [s for g, group in enumerate(groups) if g in chosen for s in group]
    rest = [s for g, group in enumerate(groups) if g not in chosen for s in group]
    return picked, rest


def make_lists(args) -> None:
    root = Path(args.root)
    images = index_images(root, args.images, (args.image_ext.lower(),) if args.image_ext else IMAGE_SUFFIXES)
    masks = index_images(root, args.masks, (args.mask_ext.lower(),))
    problems: list[str] = []
    train_ids = read_ids(root, args.ids) if args.ids else list(images)
    source = args.ids or args.images
    rng = random.Random(args.seed)
    lists: dict[str, list[Sample]] = {}
    if args.val_ids:
        lists["val"] = samples_of(read_ids(root, args.val_ids), images, masks, args.val_ids, True, problems)
    if args.test_ids:
        lists["test"] = samples_of(read_ids(root, args.test_ids), images, masks, args.test_ids, True, problems)
    held = {s.id for name in ("val", "test") for s in lists.get(name, [])}
    train_ids = [i for i in train_ids if i not in held and Path(i).name not in held]
    pool = samples_of(train_ids, images, masks, source, False, problems)
    if problems:
        raise DataError("\n".join(problems))
    groups = groups_by_bytes(root, pool)
    if "val" not in lists:
        if not args.val:
            raise DataError("no val list: give --val-ids (an id list) or --val (a fraction or count to draw)")
        with_masks = [g for g in groups if all(s.mask for s in g)]
        lists["val"], _ = draw(with_masks, amount(args.val, len(pool), "--val"), rng)
        taken = {s.id for s in lists["val"]}
        groups = [g for g in groups if not {s.id for s in g} & taken]
    masked = [g for g in groups if all(s.mask for s in g)]
    total = sum(len(g) for g in groups)
    lists["labeled"], _ = draw(masked, amount(args.labeled, total, "--labeled"), rng)
    taken = {s.id for s in lists["labeled"]}
    lists["unlabeled"] = [s for g in groups for s in g if s.id not in taken]
    out = Path(args.out)
    for name, samples in lists.items():
        write_split_list(out / f"{name}.txt", samples)
    log.info(
        "wrote %s: %s; set data.root to %s",
        out,
        ", ".join(f"{len(lists[n])} {n}" for n in ("labeled", "unlabeled", "val", "test") if n in lists),
        root,
    )


def main(argv=None) -> None:
    cli.run(make_lists, build_parser(), argv)


if __name__ == "__main__":
    main()
