"""Generate the built-in synthetic segmentation data set (no downloads).

The project's default run trains on this data set, so it is small (64x64 RGB
images by default), learnable but not trivial, and fully deterministic.

Classes (``CLASS_NAMES``): 0 background, 1 circle, 2 square, 3 triangle.

Every image has a textured background (gradient, stripes, checker or blotchy
noise around a random greyish colour) and 1-4 shapes of random class, position,
size, rotation and colour, each with a texture of its own (flat, stripes,
gradient or speckle).  Shape colours vary in hue, saturation and brightness
around a hue family per class (circles warm, squares green, triangles blue):
without that link a randomly initialised network only memorises the few
labeled images of a CPU-sized run instead of learning the classes, and the
demo would show nothing about pseudo-labels.  Shapes may overlap; a later shape wins in the mask.  Gaussian
pixel noise is added at the end.  Each image is drawn from
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
        [--num-unlabeled 48] [--num-val 16] [--size 64 | --height H --width W]
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

MIN_SIZE = 8          # smallest accepted image side (pixels)
MIN_SHAPES, MAX_SHAPES = 1, 4
MIN_COLOUR_DIST = 80.0  # wanted RGB distance between a shape and the background


# --------------------------------------------------------------------------
# drawing helpers (pure numpy, float images in [0, 255])
# --------------------------------------------------------------------------

# Hue family (HSV hue in [0, 1)) of each shape class; a shape's hue is drawn around it.
CLASS_HUES = {1: 0.03, 2: 0.33, 3: 0.62}
HUE_JITTER = 0.07


def _background_colour(rng: np.random.Generator) -> np.ndarray:
    """A greyish colour: a random grey level with a slight random tint."""
    return np.clip(rng.uniform(50.0, 200.0) + rng.normal(0.0, 15.0, size=3), 0, 255)


def _shape_colour(rng: np.random.Generator, cls: int) -> np.ndarray:
    hue = (CLASS_HUES[cls] + rng.uniform(-HUE_JITTER, HUE_JITTER)) % 1.0
    rgb = colorsys.hsv_to_rgb(hue, rng.uniform(0.55, 1.0), rng.uniform(0.5, 1.0))
    return 255.0 * np.array(rgb)


def _direction_field(rng: np.random.Generator, yy: np.ndarray, xx: np.ndarray) -> np.ndarray:
    """Projection of the pixel grid onto a random unit direction."""
    angle = rng.uniform(0.0, 2.0 * np.pi)
    return xx * np.cos(angle) + yy * np.sin(angle)


def _texture(rng: np.random.Generator, kind: str, base: np.ndarray,
             yy: np.ndarray, xx: np.ndarray, amount: float) -> np.ndarray:
    """An (H, W, 3) float texture around colour ``base``.

    ``amount`` scales how far the texture strays from ``base`` (0..1).
    """
    h, w = yy.shape
    other = np.clip(base + rng.normal(0.0, 110.0 * amount, size=3), 0, 255)
    if kind == "flat":
        img = np.broadcast_to(base, (h, w, 3)).copy()
    elif kind == "gradient":
        t = _direction_field(rng, yy, xx)
        t = (t - t.min()) / max(float(t.max() - t.min()), 1e-6)
        img = base + t[..., None] * (other - base)
    elif kind == "stripes":
        period = rng.uniform(3.0, max(4.0, min(h, w) / 3.0))
        phase = rng.uniform(0.0, 2.0 * np.pi)
        t = 0.5 + 0.5 * np.sin(2.0 * np.pi * _direction_field(rng, yy, xx) / period + phase)
        img = base + t[..., None] * (other - base)
    elif kind == "checker":
        cell = int(rng.integers(2, max(3, min(h, w) // 4) + 1))
        t = ((yy.astype(int) // cell + xx.astype(int) // cell) % 2).astype(float)
        img = base + t[..., None] * (other - base)
    elif kind == "blotches":
        # low-resolution noise upsampled with bilinear interpolation
        gh, gw = int(rng.integers(2, 6)), int(rng.integers(2, 6))
        grid = rng.uniform(0.0, 1.0, size=(gh, gw)).astype(np.float32)
        t = np.asarray(Image.fromarray(grid).resize((w, h), Image.BILINEAR),
                       dtype=float)
        img = base + t[..., None] * (other - base)
    elif kind == "speckle":
        t = rng.uniform(0.0, 1.0, size=(h, w))
        img = base + (t[..., None] - 0.5) * (other - base)
    else:  # pragma: no cover - internal
        raise ValueError(kind)
    return img


def _shape_mask(rng: np.random.Generator, cls: int, yy: np.ndarray, xx: np.ndarray) -> np.ndarray:
    """Boolean mask of one random shape of class ``cls``."""
    h, w = yy.shape
    side = min(h, w)
    r = rng.uniform(0.12, 0.28) * side           # circumradius-ish size
    cy = rng.uniform(0.1 * h, 0.9 * h)
    cx = rng.uniform(0.1 * w, 0.9 * w)
    dy, dx = yy - cy, xx - cx
    if cls == 1:  # circle
        return dy * dy + dx * dx <= r * r
    theta = rng.uniform(0.0, 2.0 * np.pi)
    if cls == 2:  # square, rotated; half side so the area resembles the circle's
        half = r * 0.85
        u = dx * np.cos(theta) + dy * np.sin(theta)
        v = -dx * np.sin(theta) + dy * np.cos(theta)
        return (np.abs(u) <= half) & (np.abs(v) <= half)
    if cls == 3:  # triangle, equilateral, rotated; larger so its area matches the others
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
    raise ValueError(f"not a shape class: {cls}")  # pragma: no cover


def render_sample(rng: np.random.Generator, height: int, width: int) -> tuple[np.ndarray, np.ndarray]:
    """Draw one (image uint8 HxWx3, mask uint8 HxW) pair from ``rng``."""
    yy, xx = np.mgrid[0:height, 0:width].astype(float) + 0.5

    bg_colour = _background_colour(rng)
    bg_kind = ["gradient", "stripes", "checker", "blotches"][int(rng.integers(4))]
    img = _texture(rng, bg_kind, bg_colour, yy, xx, amount=rng.uniform(0.15, 0.35))
    mask = np.zeros((height, width), dtype=np.uint8)

    for _ in range(int(rng.integers(MIN_SHAPES, MAX_SHAPES + 1))):
        cls = int(rng.integers(1, NUM_CLASSES))
        shape = _shape_mask(rng, cls, yy, xx)
        # a colour of the class's hue family that stands out from the background (bounded tries)
        colour = _shape_colour(rng, cls)
        for _try in range(20):
            if np.linalg.norm(colour - bg_colour) >= MIN_COLOUR_DIST:
                break
            colour = _shape_colour(rng, cls)
        kind = ["flat", "stripes", "gradient", "speckle"][int(rng.integers(4))]
        tex = _texture(rng, kind, colour, yy, xx, amount=rng.uniform(0.1, 0.35))
        img[shape] = tex[shape]
        mask[shape] = cls

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
    return not names or ("classes.txt" in names and names <= {
        "images", "masks", "classes.txt", *(f for f, _ in SPLITS.values())})


def make_demo(out: Path, num_labeled: int = 8, num_unlabeled: int = 48, num_val: int = 16,
              size: tuple[int, int] = (64, 64), seed: int = 0, force: bool = False) -> None:
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
            raise FileExistsError(
                f"refusing to replace {out}: it does not look like a make_demo output")

    tmp = out.parent / f"{out.name}.tmp-{os.getpid()}"
    if tmp.exists():
        shutil.rmtree(tmp)
    log.info("writing synthetic data set (%d labeled, %d unlabeled, %d val, %dx%d, seed %d) to %s",
             counts["labeled"], counts["unlabeled"], counts["val"], height, width, seed, out)
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
        log.info("class pixel shares: %s", ", ".join(
            f"{c} {100.0 * k / total:.1f}%" for c, k in zip(CLASS_NAMES, class_hist)))

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
            "shapes (classes: " + ", ".join(f"{i} {c}" for i, c in enumerate(CLASS_NAMES))
            + "), masks as 'L' PNGs of class indices, ST++ split lists "
            "(labeled.txt, unlabeled.txt, val.txt: '<image> <mask>' relative to --out) "
            "and classes.txt. Written atomically via <out>.tmp-<pid>."),
    )
    p.add_argument("--out", type=Path, required=True,
                   help="output directory (must not exist unless --force)")
    p.add_argument("--num-labeled", type=int, default=8, metavar="N",
                   help="number of labeled training images (default: %(default)s)")
    p.add_argument("--num-unlabeled", type=int, default=48, metavar="N",
                   help="number of unlabeled training images; their masks are written "
                        "for auditing pseudo-labels only (default: %(default)s)")
    p.add_argument("--num-val", type=int, default=16, metavar="N",
                   help="number of validation images (default: %(default)s)")
    p.add_argument("--size", type=int, default=64, metavar="PX",
                   help="side of square images in pixels (default: %(default)s)")
    p.add_argument("--height", type=int, default=None, metavar="PX",
                   help="image height in pixels (overrides --size)")
    p.add_argument("--width", type=int, default=None, metavar="PX",
                   help="image width in pixels (overrides --size)")
    p.add_argument("--seed", type=int, default=0,
                   help="random seed; image i of split s depends only on (seed, s, i) "
                        "(default: %(default)s)")
    p.add_argument("--force", action="store_true",
                   help="replace an existing --out if it is a previous output of this stage")
    p.add_argument("--log-level", default="INFO",
                   choices=["DEBUG", "INFO", "WARNING", "ERROR"],
                   help="logging level (default: %(default)s)")
    return p


def main(argv: Sequence[str] | None = None) -> int:
    args = _build_parser().parse_args(argv)
    logging.basicConfig(level=getattr(logging, args.log_level),
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    log.setLevel(getattr(logging, args.log_level))
    height = args.height if args.height is not None else args.size
    width = args.width if args.width is not None else args.size
    try:
        make_demo(args.out, num_labeled=args.num_labeled, num_unlabeled=args.num_unlabeled,
                  num_val=args.num_val, size=(height, width), seed=args.seed, force=args.force)
    except (FileExistsError, ValueError) as e:
        raise SystemExit(f"make_demo: error: {e}") from None
    return 0


if __name__ == "__main__":
    sys.exit(main())
