"""Segment new images with a trained model: masks, colour masks and overlays you can look at.

    python -m stages.predict --model results/demo/stpp_student2/model.pt --images photos/ \\
        --out predictions/ [--class-names a b ...] [--palette pascal] [--tta] [--window 512]

``--images``: folders (searched recursively for .jpg, .jpeg, .png, .bmp, .tif, .tiff), split
lists (``.txt``: the first path of each line, relative to ``--data-root``) or image files, any
mix. Writes under ``--out``, for each image at its path relative to its folder (a list's line
path; a file's name) with ``.png``:

- ``masks/``: the class indices (single-channel PNG, what the workflow's lists take as masks);
- ``color/``: the same as a palette PNG in ``--palette``'s colours;
- ``overlays/``: the image with the colours over it, half and half;

and ``predictions.tsv``: image, width, height and each class's share of the pixels. Images are
read as the data check reads them (EXIF orientation refused, grayscale and RGBA made RGB), one
batch of same-size images at a time, so memory stays flat in the number of images. Each file is
written atomically. An image that cannot be read is named and skipped; the stage then ends with
exit 1 and the list of them, after writing every other image's files.
"""

from __future__ import annotations

import csv
import logging
import time
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from .export_masks import save_palette_png
from .seg import cli
from .seg.files import atomic_path
from .seg.images import IMAGE_SUFFIXES, decode_image
from .seg.palettes import BUILT_IN, flat
from .seg.predictor import Predictor
from .seg.splits import DataError, parse_split_list

log = logging.getLogger("stpp")


def build_parser():
    p = cli.parser(__doc__.split("\n\n")[0])
    p.add_argument("--model", required=True, help="a model.pt written by the workflow (stages.train)")
    p.add_argument("--images", nargs="+", required=True, help="folders, split lists (.txt) or image files")
    p.add_argument("--data-root", default=".", help="what a split list's paths are relative to")
    p.add_argument("--out", required=True, help="the folder masks/, color/, overlays/ and predictions.tsv go to")
    p.add_argument("--num-classes", type=int, default=None, help="refuse a model for another number of classes")
    p.add_argument(
        "--class-names", nargs="*", default=None, help="one name per class (default: those the checkpoint records)"
    )
    p.add_argument(
        "--palette", default=None, help=f"{', '.join(BUILT_IN)}, or a file of 'R G B' lines (default: the checkpoint's)"
    )
    p.add_argument("--window", type=int, default=None, help="sliding-window size (none: whole image)")
    p.add_argument("--stride", type=int, default=None, help="sliding-window stride (default: 2/3 of the window)")
    cli.add_tta_args(p, default_on=False)
    cli.add_runtime_args(p)
    cli.add_speed_args(p, training=False)
    p.set_defaults(batch_size=1)
    return p


def find_images(sources: list[str], data_root: str) -> list[tuple[Path, str]]:
    """(image file, its name under --out without suffix) of every source, in order."""
    found: list[tuple[Path, str]] = []
    for source in map(Path, sources):
        if source.is_dir():
            files = sorted(p for p in source.rglob("*") if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES)
            if not files:
                raise DataError(
                    f"--images {source} holds no image ({', '.join(IMAGE_SUFFIXES)}, in any subfolder); "
                    "name the folder the images are in"
                )
            found += [(p, str(p.relative_to(source).with_suffix(""))) for p in files]
        elif source.suffix.lower() == ".txt":
            samples, problems = parse_split_list(source)
            if problems:
                raise DataError("\n".join(problems))
            found += [(Path(data_root) / s.image, str(Path(s.image).with_suffix(""))) for s in samples]
        elif source.is_file():
            found.append((source, source.stem))
        else:
            raise DataError(f"--images {source}: no such folder, list or file")
    names = [name for _, name in found]
    twice = sorted({n for n in names if names.count(n) > 1})
    if twice:
        raise DataError(
            f"two images would be written as {twice[0]}.png (and {len(twice) - 1} more); predict them apart"
        )
    return found


def batches(images: list[tuple[Path, str]], size: int, failures: list[str]):
    """Batches of (names, uint8 (N, 3, H, W)) of consecutive same-size images; an unreadable
    image goes to ``failures`` (its message) and is skipped."""
    names, arrays = [], []
    for path, name in images:
        try:
            array = decode_image(path, "")
        except DataError as err:
            failures.append(str(err))
            log.error("%s", err)
            continue
        if arrays and (array.shape != arrays[0].shape or len(arrays) == size):
            yield names, torch.from_numpy(np.stack(arrays)).permute(0, 3, 1, 2)
            names, arrays = [], []
        names.append(name)
        arrays.append(array)
    if arrays:
        yield names, torch.from_numpy(np.stack(arrays)).permute(0, 3, 1, 2)


def save_png(path: Path, array: np.ndarray) -> None:
    with atomic_path(path) as tmp:
        Image.fromarray(array).save(tmp, format="PNG")


def load_predictor(args) -> Predictor:
    """The model, or an error naming the checkpoint and the fix."""
    try:
        return Predictor.load(
            args.model,
            args.device,
            args.class_names,
            args.palette,
            args.num_classes,
            args.amp,
            args.fold_batch_norm,
            args.channels_last,
        )
    except (ValueError, FileNotFoundError) as err:
        raise DataError(
            f"--model {args.model}: {err}; give a model.pt that the workflow wrote "
            "(results/<experiment>/<model>/model.pt)"
        ) from None


def predict_images(args) -> None:
    images = find_images(args.images, args.data_root)
    predictor = load_predictor(args)
    out, failures, rows, t0 = Path(args.out), [], [], time.time()
    names = predictor.class_names
    options = dict(
        tta=args.tta,
        scales=args.scales,
        flip=args.flip,
        window=args.window,
        stride=args.stride,
        geometry=args.tta_geometry,
    )
    log.info("segmenting %d images with %s -> %s", len(images), args.model, out)
    for batch_names, batch in batches(images, args.batch_size, failures):
        for name, image, mask in zip(batch_names, batch, predictor.predict_batch(batch, **options), strict=True):
            mask, rgb = mask.numpy(), image.permute(1, 2, 0).numpy()
            save_png(out / "masks" / f"{name}.png", mask)
            save_palette_png(out / "color" / f"{name}.png", mask, flat(predictor.colours))
            save_png(out / "overlays" / f"{name}.png", predictor.overlay(rgb, mask))
            counts = np.bincount(mask.ravel(), minlength=len(names) if names else int(mask.max()) + 1)
            rows.append((name, mask.shape[1], mask.shape[0], counts / counts.sum()))
        done = len(rows) + len(failures)
        if done % max(1, len(images) // 10) < len(batch_names) or done == len(images):
            log.info("segmented %d/%d images (%.2f images/s)", done, len(images), done / (time.time() - t0))
    classes = max((len(r[3]) for r in rows), default=0)
    columns = names or [str(c) for c in range(classes)]
    with atomic_path(out / "predictions.tsv") as tmp, open(tmp, "w", newline="") as f:
        writer = csv.writer(f, delimiter="\t", lineterminator="\n")
        writer.writerow(["image", "width", "height", *(f"share_{c}" for c in columns)])
        for name, width, height, share in rows:
            padded = np.pad(share, (0, len(columns) - len(share)))
            writer.writerow([name, width, height, *(f"{v:.4f}" for v in padded)])
    log.info("wrote %d masks, colour masks and overlays and %s", len(rows), out / "predictions.tsv")
    if failures:
        raise DataError(
            f"{len(failures)} image(s) could not be read (the others were written):\n" + "\n".join(failures)
        )


def main(argv=None) -> None:
    cli.run(predict_images, build_parser(), argv)


if __name__ == "__main__":
    main()
