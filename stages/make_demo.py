"""Generate the built-in synthetic segmentation data set (no downloads).

The project's default run trains on this data set, so it is small (96x96 RGB
images by default), learnable from a few labeled images but not trivially, and
fully deterministic.

Classes (``CLASS_NAMES``): 0 background, 1 circle, 2 square, 3 triangle.

Every image has a smooth greyish background (gradient or blotches) with pixel
noise, 1-3 objects and 0-2 distractors, in random order so that later ones
occlude earlier ones. An object's class fixes its shape and its texture
(``CLASS_TEXTURES``: striped circles, checkered squares, triangles under a grid
of thin lines); its colours, size, rotation and position are random. Distractors
are background: ellipses, bars and rings wearing any of the textures. So the
class is told apart by shape and texture, both luminance patterns that the
strong augmentation of the students (colour jitter, grayscale, blur, Cutout)
leaves in place, and never by colour, which it changes. Each image is drawn from
``numpy.random.default_rng([seed, split_id, index])``, so an image depends
only on (seed, split, index) and not on the counts of any split.

Output layout under ``--out``::

    images/<split>_<index:04d>.png   RGB image
    masks/<split>_<index:04d>.png    'L' PNG, pixel = class index (uint8)
    labeled.txt                      "<image path> <mask path>" per line,
    unlabeled.txt                    paths relative to --out (ST++ format;
    val.txt                          unlabeled masks are for auditing only)
    classes.txt                      one class name per line

The data set is written into a sibling ``<out>.tmp-<pid>`` directory and
renamed onto ``--out`` when complete, so a crash never leaves a half-written
data set behind.

Usage::

    python -m stages.make_demo --out data/demo [--num-labeled 8]
        [--num-unlabeled 192] [--num-val 128] [--size 64 | --height H --width W]
        [--seed 0] [--force]
"""

from __future__ import annotations

import argparse
import colorsys
import logging
import os
import shutil
import sys
from pathlib import Path
from typing import Sequence

import numpy as np
from PIL import Image

log = logging.getLogger("stages.make_demo")

CLASS_NAMES: tuple[str, ...] = ("background", "circle", "square", "triangle")
NUM_CLASSES = len(CLASS_NAMES)

# Split name -> (list file, id mixed into the per-image seed).  The ids are
# fixed forever: changing one changes every image of that split.
SPLITS: dict[str, tuple[str, int]] = {
    "labeled": ("labeled.txt", 0),
    "unlabeled": ("unlabeled.txt", 1),
    "val": ("val.txt", 2),
}

MIN_SIZE = 8  # smallest accepted image side (pixels)
MIN_SHAPES, MAX_SHAPES = 1, 3  # objects of classes 1..3 per image
MIN_CLUTTER, MAX_CLUTTER = 0, 2  # background-class distractors per image

# Each class has a shape and a texture of its own (circles striped, squares checkered,
# triangles under a grid of thin lines). Both cues are luminance patterns, so they survive the
# strong augmentation (colour jitter, grayscale, blur, Cutout); colours are random and carry no
# class information. The distractors (background class) are ellipses, bars and rings wearing
# any texture, so that texture alone is not enough; objects and distractors occlude each other,
# vary in size by a factor of three and may be cut by the border. A teacher trained on a few
# such images makes mistakes that more images, pseudo-labeled and strongly augmented, correct.
# No class wears the smooth gradient of the backgrounds: triangles shaded by one (until 0.2) were
# missed by the teacher on every image alike, those images scored as stable, and the students
# learnt to erase triangles (docs/demo.md).
CLASS_TEXTURES = {1: "stripes", 2: "checker", 3: "grid"}
CLUTTER_TEXTURES = ("stripes", "checker", "grid", "gradient", "dots")
CLUTTER_SHAPES = ("ellipse", "bar", "ring")
TEXTURE_PERIODS = {"stripes": (6.0, 10.0), "checker": (10.0, 16.0), "dots": (6.0, 10.0), "grid": (8.0, 12.0)}  # pixels
# Backgrounds are greyish (objects may be any colour): with a few labeled images a network
# otherwise takes an unseen saturated background colour for an object.
BACKGROUND_SATURATION = (0.0, 0.3)
OBJECT_SATURATION = (0.0, 0.9)


# --------------------------------------------------------------------------
# drawing helpers (pure numpy, float images in [0, 255])
# --------------------------------------------------------------------------


def _random_colour(rng: np.random.Generator, saturation: tuple[float, float]) -> np.ndarray:
    rgb = colorsys.hsv_to_rgb(rng.uniform(0.0, 1.0), rng.uniform(*saturation), rng.uniform(0.25, 0.95))
    return 255.0 * np.array(rgb)


def _direction_field(rng: np.random.Generator, yy: np.ndarray, xx: np.ndarray) -> np.ndarray:
    """Projection of the pixel grid onto a random unit direction."""
    angle = rng.uniform(0.0, 2.0 * np.pi)
    return xx * np.cos(angle) + yy * np.sin(angle)


def _pattern(rng: np.random.Generator, kind: str, yy: np.ndarray, xx: np.ndarray, scale: float) -> np.ndarray:
    """An (H, W) pattern in [0, 1]; ``scale`` (pixels) sets the period of periodic patterns."""
    h, w = yy.shape
    if kind == "stripes":
        phase = rng.uniform(0.0, 2.0 * np.pi)
        return (np.sin(2.0 * np.pi * _direction_field(rng, yy, xx) / scale + phase) > 0).astype(float)
    if kind == "checker":
        theta = rng.uniform(0.0, np.pi / 2)
        u = xx * np.cos(theta) + yy * np.sin(theta)
        v = -xx * np.sin(theta) + yy * np.cos(theta)
        return ((np.floor(u / (scale / 2)) + np.floor(v / (scale / 2))) % 2).astype(float)
    if kind == "dots":
        oy, ox = rng.uniform(0.0, scale, size=2)
        dy = (yy + oy) % scale - scale / 2
        dx = (xx + ox) % scale - scale / 2
        return (dy * dy + dx * dx <= (0.3 * scale) ** 2).astype(float)
    if kind == "grid":  # thin lines in two perpendicular directions
        theta = rng.uniform(0.0, np.pi / 2)
        u = (xx * np.cos(theta) + yy * np.sin(theta)) % scale
        v = (-xx * np.sin(theta) + yy * np.cos(theta)) % scale
        return ((u < 0.2 * scale) | (v < 0.2 * scale)).astype(float)
    if kind == "gradient":
        t = _direction_field(rng, yy, xx)
        return (t - t.min()) / max(float(t.max() - t.min()), 1e-6)
    if kind == "blotches":
        # low-resolution noise upsampled with bilinear interpolation
        gh, gw = int(rng.integers(2, 6)), int(rng.integers(2, 6))
        grid = rng.uniform(0.0, 1.0, size=(gh, gw)).astype(np.float32)
        return np.asarray(Image.fromarray(grid).resize((w, h), Image.BILINEAR), dtype=float)
    raise ValueError(kind)  # pragma: no cover - internal


def _texture(
    rng: np.random.Generator,
    kind: str,
    yy: np.ndarray,
    xx: np.ndarray,
    contrast: tuple[float, float],
    saturation: tuple[float, float],
) -> np.ndarray:
    """An (H, W, 3) texture: ``kind``'s pattern between two random colours whose brightness
    differs by ``contrast`` (range, 0..255) so that the pattern survives grayscale."""
    low = _random_colour(rng, saturation)
    step = rng.uniform(*contrast) * rng.choice([-1.0, 1.0])
    high = np.clip(low + step, 0, 255)
    if np.abs(high - low).max() < 0.5 * abs(step):  # clipped away: go the other way
        high = np.clip(low - step, 0, 255)
    t = _pattern(rng, kind, yy, xx, scale=rng.uniform(*TEXTURE_PERIODS.get(kind, (1.0, 1.0))))
    return low + t[..., None] * (high - low)


def _region(rng: np.random.Generator, kind: str, yy: np.ndarray, xx: np.ndarray) -> np.ndarray:
    """Boolean mask of one random shape ``kind`` (circle, square, triangle, ellipse, bar, ring).

    Sizes vary by a factor of three and centres may lie near the border, so that objects are
    seen at several scales and partly cut off."""
    h, w = yy.shape
    r = rng.uniform(0.10, 0.30) * min(h, w)  # circumradius-ish size
    cy, cx = rng.uniform(0.05 * h, 0.95 * h), rng.uniform(0.05 * w, 0.95 * w)
    dy, dx = yy - cy, xx - cx
    theta = rng.uniform(0.0, 2.0 * np.pi)
    u = dx * np.cos(theta) + dy * np.sin(theta)
    v = -dx * np.sin(theta) + dy * np.cos(theta)
    if kind == "circle":
        return dy * dy + dx * dx <= r * r
    if kind == "square":  # half side so the area resembles the circle's
        return (np.abs(u) <= 0.85 * r) & (np.abs(v) <= 0.85 * r)
    if kind == "triangle":  # equilateral, larger so its area matches the others
        rr = r * 1.5
        angles = theta + np.array([0.0, 2.0, 4.0]) * np.pi / 3.0
        vx, vy = rr * np.cos(angles), rr * np.sin(angles)
        inside = np.ones_like(dx, dtype=bool)
        for i in range(3):
            ax, ay = vx[i], vy[i]
            bx, by = vx[(i + 1) % 3], vy[(i + 1) % 3]
            # vertices are counter-clockwise: inside is left of every edge
            inside &= (bx - ax) * (dy - ay) - (by - ay) * (dx - ax) >= 0
        return inside
    if kind == "ellipse":  # elongated: unlike a circle, square or triangle
        a, b = 1.3 * r, rng.uniform(0.35, 0.6) * r
        return (u / a) ** 2 + (v / b) ** 2 <= 1.0
    if kind == "bar":
        return (np.abs(u) <= 1.6 * r) & (np.abs(v) <= rng.uniform(0.15, 0.3) * r)
    if kind == "ring":
        d2 = dy * dy + dx * dx
        return (d2 <= r * r) & (d2 >= (rng.uniform(0.5, 0.7) * r) ** 2)
    raise ValueError(f"not a shape: {kind}")  # pragma: no cover


def render_sample(rng: np.random.Generator, height: int, width: int) -> tuple[np.ndarray, np.ndarray]:
    """Draw one (image uint8 HxWx3, mask uint8 HxW) pair from ``rng``."""
    yy, xx = np.mgrid[0:height, 0:width].astype(float) + 0.5
    bg_kind = ["gradient", "blotches"][int(rng.integers(2))]
    img = _texture(rng, bg_kind, yy, xx, contrast=(10.0, 60.0), saturation=BACKGROUND_SATURATION)
    mask = np.zeros((height, width), dtype=np.uint8)

    # objects and distractors in random order: a later one occludes an earlier one
    n_objects = int(rng.integers(MIN_SHAPES, MAX_SHAPES + 1))
    n_clutter = int(rng.integers(MIN_CLUTTER, MAX_CLUTTER + 1))
    items = [int(rng.integers(1, NUM_CLASSES)) for _ in range(n_objects)] + [0] * n_clutter
    for cls in rng.permutation(items):
        if cls:
            shape, kind = CLASS_NAMES[cls], CLASS_TEXTURES[cls]
        else:
            shape, kind = str(rng.choice(CLUTTER_SHAPES)), str(rng.choice(CLUTTER_TEXTURES))
        region = _region(rng, shape, yy, xx)
        tex = _texture(rng, kind, yy, xx, contrast=(40.0, 140.0), saturation=OBJECT_SATURATION)
        img[region] = tex[region]
        mask[region] = cls

    img = img + rng.normal(0.0, rng.uniform(3.0, 10.0), size=img.shape)
    return np.clip(np.rint(img), 0, 255).astype(np.uint8), mask


def sample_rng(seed: int, split: str, index: int) -> np.random.Generator:
    """The generator of image ``index`` of ``split``: independent of everything else."""
    return np.random.default_rng([int(seed), SPLITS[split][1], int(index)])


# --------------------------------------------------------------------------
# data set writer
# --------------------------------------------------------------------------


def _looks_like_output(path: Path) -> bool:
    """True if ``path`` is a previous make_demo output (safe to replace with --force)."""
    if not path.is_dir():
        return False
    names = {p.name for p in path.iterdir()}
    return not names or (
        "classes.txt" in names and names <= {"images", "masks", "classes.txt", *(f for f, _ in SPLITS.values())}
    )


def make_demo(
    out: Path,
    num_labeled: int = 8,
    num_unlabeled: int = 192,
    num_val: int = 128,
    size: tuple[int, int] = (96, 96),
    seed: int = 0,
    force: bool = False,
) -> None:
    """Write the synthetic data set to ``out`` (atomically).

    ``size`` is (height, width).  Raises ``FileExistsError`` if ``out`` exists,
    unless ``force`` is set and ``out`` is a previous make_demo output (or empty).
    """
    out = Path(out)
    height, width = (int(size[0]), int(size[1]))
    counts = {"labeled": int(num_labeled), "unlabeled": int(num_unlabeled), "val": int(num_val)}
    if height < MIN_SIZE or width < MIN_SIZE:
        raise ValueError(f"image size must be at least {MIN_SIZE}x{MIN_SIZE}, got {height}x{width}")
    for split, n in counts.items():
        if n < 0:
            raise ValueError(f"number of {split} images must be >= 0, got {n}")
    if out.exists() or out.is_symlink():
        if not force:
            raise FileExistsError(f"output already exists: {out} (use --force to replace it)")
        if not _looks_like_output(out):
            raise FileExistsError(f"refusing to replace {out}: it does not look like a make_demo output")

    tmp = out.parent / f"{out.name}.tmp-{os.getpid()}"
    if tmp.exists():
        shutil.rmtree(tmp)
    log.info(
        "writing synthetic data set (%d labeled, %d unlabeled, %d val, %dx%d, seed %d) to %s",
        counts["labeled"],
        counts["unlabeled"],
        counts["val"],
        height,
        width,
        seed,
        out,
    )
    try:
        (tmp / "images").mkdir(parents=True)
        (tmp / "masks").mkdir()
        class_hist = np.zeros(NUM_CLASSES, dtype=np.int64)
        for split, n in counts.items():
            lines = []
            for i in range(n):
                img, mask = render_sample(sample_rng(seed, split, i), height, width)
                name = f"{split}_{i:04d}.png"
                Image.fromarray(img).save(tmp / "images" / name)
                Image.fromarray(mask).save(tmp / "masks" / name)
                class_hist += np.bincount(mask.ravel(), minlength=NUM_CLASSES)
                lines.append(f"images/{name} masks/{name}\n")
            list_file = SPLITS[split][0]
            (tmp / list_file).write_text("".join(lines))
            log.info("wrote %d %s images and %s", n, split, list_file)
        (tmp / "classes.txt").write_text("".join(f"{c}\n" for c in CLASS_NAMES))
        total = max(int(class_hist.sum()), 1)
        log.info(
            "class pixel shares: %s",
            ", ".join(f"{c} {100.0 * k / total:.1f}%" for c, k in zip(CLASS_NAMES, class_hist, strict=True)),
        )

        if out.exists() or out.is_symlink():
            log.info("replacing previous output %s", out)
            if out.is_dir() and not out.is_symlink():
                shutil.rmtree(out)
            else:
                out.unlink()
        os.replace(tmp, out)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    log.info("done: %s", out)


# --------------------------------------------------------------------------
# CLI
# --------------------------------------------------------------------------


def _build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="python -m stages.make_demo",
        description=(
            "Generate the deterministic synthetic segmentation data set used by the "
            "default run: RGB images with a textured background and 1-4 textured "
            "shapes (classes: "
            + ", ".join(f"{i} {c}" for i, c in enumerate(CLASS_NAMES))
            + "), masks as 'L' PNGs of class indices, ST++ split lists "
            "(labeled.txt, unlabeled.txt, val.txt: '<image> <mask>' relative to --out) "
            "and classes.txt. Written atomically via <out>.tmp-<pid>."
        ),
    )
    p.add_argument("--out", type=Path, required=True, help="output directory (must not exist unless --force)")
    p.add_argument(
        "--num-labeled",
        type=int,
        default=8,
        metavar="N",
        help="number of labeled training images (default: %(default)s)",
    )
    p.add_argument(
        "--num-unlabeled",
        type=int,
        default=192,
        metavar="N",
        help="number of unlabeled training images; their masks are written "
        "for auditing pseudo-labels only (default: %(default)s)",
    )
    p.add_argument(
        "--num-val", type=int, default=128, metavar="N", help="number of validation images (default: %(default)s)"
    )
    p.add_argument(
        "--size", type=int, default=96, metavar="PX", help="side of square images in pixels (default: %(default)s)"
    )
    p.add_argument("--height", type=int, default=None, metavar="PX", help="image height in pixels (overrides --size)")
    p.add_argument("--width", type=int, default=None, metavar="PX", help="image width in pixels (overrides --size)")
    p.add_argument(
        "--seed",
        type=int,
        default=0,
        help="random seed; image i of split s depends only on (seed, s, i) (default: %(default)s)",
    )
    p.add_argument(
        "--force", action="store_true", help="replace an existing --out if it is a previous output of this stage"
    )
    p.add_argument(
        "--log-level",
        default="INFO",
        choices=["DEBUG", "INFO", "WARNING", "ERROR"],
        help="logging level (default: %(default)s)",
    )
    return p


def main(argv: Sequence[str] | None = None) -> int:
    args = _build_parser().parse_args(argv)
    logging.basicConfig(
        level=getattr(logging, args.log_level), format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    log.setLevel(getattr(logging, args.log_level))
    height = args.height if args.height is not None else args.size
    width = args.width if args.width is not None else args.size
    try:
        make_demo(
            args.out,
            num_labeled=args.num_labeled,
            num_unlabeled=args.num_unlabeled,
            num_val=args.num_val,
            size=(height, width),
            seed=args.seed,
            force=args.force,
        )
    except (FileExistsError, ValueError) as e:
        raise SystemExit(f"make_demo: error: {e}") from None
    return 0


if __name__ == "__main__":
    sys.exit(main())
