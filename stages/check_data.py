"""Check an experiment's data before any training: every list, image and mask (stage 0).

    python -m stages.check_data --data-root ROOT --labeled labeled.txt --unlabeled unlabeled.txt \\
        --val val.txt [--test test.txt] --num-classes C [--ignore-labels 11] \\
        [--batch-size 16 --min-labeled 200] [--workers 2] --out-dir results/<experiment>/data_check

Reports every problem at once, one line each (the list file and line, the file, what is wrong,
how to fix it), and exits non-zero if there is any error:

- a list that is missing, empty, or has a malformed line, a duplicate id, or (labeled, val and
  test lists) a line without a mask;
- an image or mask that is missing, undecodable or truncated: every file is decoded in full by
  the same code that training and labeling use, so what passes here reads there;
- a colour mask, a mask whose size differs from its image's, mask values outside [0, C) after
  the label map (``--label-map``) that are not an ignore label (each mask named, then one line
  with how many and the largest value);
- a class with no pixel in any labeled mask and none in any val mask (with 0/255 binary masks:
  the label map that fixes them);
- the same image in two lists (by id, or by identical bytes under another name): labeled or
  unlabeled images in val or test is test leakage, and so is an image in both val and test (a
  figure tuned on val is then no test figure); labeled images in the unlabeled list are an error
  unless ``--allow-labeled-in-unlabeled`` (then a warning);
- a teacher epoch (the labeled list, repeated to ``--min-labeled``) smaller than one batch;
- the review (``--review-exclude``, ``--review-masks``): an excluded image that is not in the
  unlabeled list, a corrected mask that names no unlabeled image, is checked as any mask is (mode,
  values, its image's size), or belongs to an excluded image.

Warnings, not errors: a training crop (``--crop-size``) that would be mostly padding; a class
absent from the labeled masks but present in val (a real split may lack a rare class).

When all is well it writes into ``--out-dir``: ``manifest.tsv`` (per file: list, line, kind,
path, bytes, SHA-256, width, height) and one ``<list>.digest`` per list, the SHA-256 of that
list and of its files' contents (without ``--test``, ``test.digest`` says that there is no test
list, so that adding one later re-runs only what reads it), and ``review.digest`` of the
review (or "no review"), which only the review's rule reads: editing an exclusion or a corrected
mask re-runs the students, never the teacher. The workflow's rules take the digests of the lists they read
as inputs, so a changed image or mask re-runs exactly the jobs that read it, and a file that was
only touched (same bytes) re-runs nothing.
"""

from __future__ import annotations

import hashlib
import logging
import sys
import time
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from .seg import cli
from .seg.files import write_text
from .seg.images import IGNORE_INDEX, LabelRangeError, decode_image, decode_mask
from .seg.splits import DataError, Sample, corrected_masks, parse_split_list, repeats

log = logging.getLogger("stpp")

LISTS = ("labeled", "unlabeled", "val", "test")
NO_TEST_LIST = "no test list"
NO_REVIEW = "no review"  # review.digest without review.exclude or review.masks
MANIFEST_COLUMNS = ("list", "line", "kind", "path", "bytes", "sha256", "width", "height")


def build_parser():
    p = cli.parser(__doc__.split("\n\n")[0])
    p.add_argument("--labeled", required=True, help="labeled split list (image and mask per line)")
    p.add_argument("--unlabeled", required=True, help="unlabeled split list (masks optional, audit only)")
    p.add_argument("--val", required=True, help="evaluation split list (image and mask per line)")
    p.add_argument("--test", default=None, help="optional held-out test list (image and mask per line), checked as val")
    cli.add_data_args(p)
    p.add_argument("--min-labeled", type=int, default=200, help="train.min_labeled: the teacher's epoch size")
    p.add_argument(
        "--allow-labeled-in-unlabeled",
        action="store_true",
        help="labeled images also in the unlabeled list are a warning, not an error",
    )
    p.add_argument("--out-dir", required=True, help="where manifest.tsv and <list>.digest go")
    p.add_argument("--workers", type=int, default=1, help="decoding processes")
    p.add_argument("--batch-size", type=int, default=16, help="train.batch_size, checked against the teacher's epoch")
    p.add_argument("--review-exclude", default=None, help="review.exclude: unlabeled images no student trains on")
    p.add_argument("--review-masks", default=None, help="review.masks: a folder of corrected pseudo-masks")
    p.add_argument("--crop-size", type=int, default=321, help="train.crop_size, checked against the labeled images")
    p.add_argument("--base-size", type=int, default=None, help="train.base_size (null: each image's own long side)")
    p.add_argument("--scale-range", type=float, nargs=2, default=[0.5, 2.0], help="train.scale_range")
    p.add_argument("--class-names", nargs="*", default=None, help="data.class_names, to name a class in a finding")
    p.add_argument("--verbose", action="store_true", help="debug logging")
    return p


@dataclass
class FileCheck:
    """What decoding one file found: its bytes, hash and size, or the error."""

    bytes: int = 0
    sha256: str = ""
    width: int = 0
    height: int = 0
    error: str = ""
    classes: int = 0  # a mask's classes, as bits (bit c: class c has a pixel)
    ignored: bool = False  # a mask with ignored pixels
    bad_labels: tuple = ()  # a mask's values outside [0, C) after its label map


def check_file(root: str, path: str, kind: str, origin: str, num_classes: int, labels) -> FileCheck:
    """Read one file once: hash its bytes and decode them in full (a worker process's task)."""
    full = Path(root) / path
    try:
        data = full.read_bytes()
    except FileNotFoundError:
        hint = (
            "; a list line names each file with its folder and extension, relative to data.root "
            "(`python -m stages.make_lists` writes lists from a folder layout such as Pascal VOC's)"
            if not Path(path).suffix
            else ""
        )
        return FileCheck(error=f"{kind} not found: {full} ({origin}); check data.root and the split list{hint}")
    except OSError as err:
        return FileCheck(error=f"{kind} {full} ({origin}) cannot be read: {err}")
    found = FileCheck(bytes=len(data), sha256=hashlib.sha256(data).hexdigest())
    try:
        if kind == "image":
            found.height, found.width = decode_image(full, origin, data).shape[:2]
        else:
            mask = decode_mask(full, num_classes, labels, origin, data)
            found.height, found.width = mask.shape
            values = np.unique(mask)
            found.ignored = bool(values[-1] == IGNORE_INDEX)
            found.classes = sum(1 << int(c) for c in values if c != IGNORE_INDEX)
    except LabelRangeError as err:
        found.error, found.bad_labels = str(err), tuple(err.labels)
    except DataError as err:
        found.error = str(err)
    return found


def check_files(root, files: dict[tuple[str, str], str], num_classes: int, labels, workers: int):
    """{(kind, path): FileCheck} for every file, decoded by ``workers`` processes, with progress."""
    keys = list(files)
    args = [(str(root), path, kind, files[(kind, path)], num_classes, labels) for kind, path in keys]
    results, t0, step = {}, time.time(), max(1, len(keys) // 10)

    def collect(found_iter):
        for i, (key, found) in enumerate(zip(keys, found_iter, strict=True), start=1):
            results[key] = found
            if i % step == 0 or i == len(keys):
                log.info("checked %d/%d files (%.0f files/s)", i, len(keys), i / max(time.time() - t0, 1e-9))

    if workers > 1 and len(keys) > 1:
        with ProcessPoolExecutor(workers) as pool:
            collect(
                pool.map(check_file, *zip(*args, strict=True), chunksize=max(1, min(64, len(keys) // (4 * workers))))
            )
    else:
        collect(check_file(*a) for a in args)
    return results


def check(args) -> tuple[list[str], list[str], list[list[str]], dict[str, str]]:
    """(errors, warnings, manifest rows, {list name: digest}) for the experiment's lists."""
    errors, warnings = [], []
    lists: dict[str, list[Sample]] = {}
    names = [name for name in LISTS if getattr(args, name) is not None]
    for name in names:
        samples, problems = parse_split_list(getattr(args, name), need_masks=name != "unlabeled")
        lists[name] = samples
        errors += [f"{name} list: {p}" for p in problems]

    # The same image in two lists, by id.
    ids = {name: {s.id: s for s in samples} for name, samples in lists.items()}
    pairs = [("labeled", "val"), ("unlabeled", "val"), ("labeled", "unlabeled")]
    pairs += [("labeled", "test"), ("unlabeled", "test"), ("val", "test")]
    for a, b in (pair for pair in pairs if set(pair) <= set(names)):
        for image_id in sorted(ids[a].keys() & ids[b].keys()):
            _overlap(
                args,
                errors,
                warnings,
                a,
                b,
                f"{image_id} is in the {a} and the {b} list ({ids[a][image_id].origin} and {ids[b][image_id].origin})",
            )

    # Every file once, however many lines name it.
    files: dict[tuple[str, str], str] = {}
    for name in names:
        for s in lists[name]:
            files.setdefault(("image", s.image), s.origin)
            if s.mask:
                files.setdefault(("mask", s.mask), s.origin)
    excluded, corrected = review_files(args, ids.get("unlabeled", {}), errors)
    for path in corrected.values():
        files.setdefault(("mask", str(path.resolve())), f"review.masks {args.review_masks}")
    found = check_files(args.data_root, files, args.num_classes, cli.mask_labels(args), args.workers)
    errors += sorted({f.error for f in found.values() if f.error})
    if not label_range_problem(args, found, errors):  # the classes mean something once the values fit
        class_problems(args, lists, found, errors, warnings)

    rows, digests, first_by_hash = [], {}, {}
    for name in names:
        digest = hashlib.sha256(Path(getattr(args, name)).read_bytes() if Path(getattr(args, name)).is_file() else b"")
        for s in lists[name]:
            image = found[("image", s.image)]
            mask = found[("mask", s.mask)] if s.mask else None
            if mask and not image.error and not mask.error and (mask.width, mask.height) != (image.width, image.height):
                errors.append(
                    f"mask {Path(args.data_root) / s.mask} ({s.origin}) is {mask.width}x{mask.height} but "
                    f"its image {s.image} is {image.width}x{image.height}; a mask must have its image's size"
                )
            if image.sha256:  # the same image under another name
                first_name, first = first_by_hash.setdefault(image.sha256, (name, s))
                if first.id != s.id:
                    _overlap(
                        args,
                        errors,
                        warnings,
                        first_name,
                        name,
                        f"{s.image} ({s.origin}) has the same bytes as {first.image} ({first.origin})",
                    )
            line = s.origin.rsplit(":", 1)[-1]
            for kind, path, f in (("image", s.image, image), ("mask", s.mask, mask)):
                if f is not None:
                    row = [name, line, kind, path, str(f.bytes), f.sha256, str(f.width), str(f.height)]
                    rows.append(row)
                    digest.update(("\t".join(row) + "\n").encode())
        digests[name] = digest.hexdigest()

    digests["review"], review_rows = review_digest(args, excluded, corrected, ids.get("unlabeled", {}), found, errors)
    rows += review_rows

    training_problems(args, lists["labeled"], found, errors, warnings)
    return errors, warnings, rows, digests


def label_range_problem(args, found: dict, errors: list) -> bool:
    """After each mask with values outside [0, C) (named by its own error), one line: how many
    masks, the largest value and the fix. Whether there was any."""
    out_of_range = [f for f in found.values() if f.bad_labels]
    if out_of_range:
        largest = max(max(f.bad_labels) for f in out_of_range)
        errors.append(
            f"in all, {len(out_of_range)} mask(s) have labels outside [0, {args.num_classes}) (data.num_classes), "
            f"the largest {largest}: set data.num_classes to at least {largest + 1} if those are classes, or map "
            "them with data.label_map (cityscapes for Cityscapes' label ids) or data.ignore_labels"
        )
    return bool(out_of_range)


def class_problems(args, lists: dict, found: dict, errors: list, warnings: list) -> None:
    """A class with no pixel in any labeled mask and no pixel in any val mask is an error (no
    model learns it, no evaluation judges it: a run would print a number for nothing); masks of
    0 and 255 with two classes get the label map that fixes them. A class absent from the
    labeled masks only is a warning: a real split may lack a rare class."""
    names = args.class_names or [str(c) for c in range(args.num_classes)]

    def present(name: str) -> tuple[int, bool]:
        masks = [found[("mask", s.mask)] for s in lists.get(name, []) if s.mask]
        classes = ignored = 0
        for f in masks:
            classes, ignored = classes | f.classes, ignored or f.ignored
        return classes, bool(ignored)

    (labeled, labeled_ignored), (val, val_ignored) = present("labeled"), present("val")
    absent = [c for c in range(args.num_classes) if not (labeled | val) >> c & 1]
    binary = args.num_classes == 2 and absent == [1] and (labeled_ignored or val_ignored)
    if binary and not args.label_map.table:
        errors.append(
            f"class 1 ({names[1]}) has no pixel in any labeled or val mask: they hold only 0 and ignored pixels "
            "(255). Binary masks stored as 0/255 need data.label_map: {255: 1} in the config"
        )
    elif absent:
        errors += [
            f"class {c} ({names[c]}) has no pixel in any labeled mask ({args.labeled}) nor in any val mask "
            f"({args.val}): no model would learn it and no evaluation judge it; check data.num_classes, "
            "data.label_map and data.ignore_labels"
            for c in absent
        ]
    warnings += [
        f"class {c} ({names[c]}) has no pixel in any labeled mask ({args.labeled}), only in val: the teacher "
        "cannot learn it, and its IoU will be 0 unless the students pick it up"
        for c in range(args.num_classes)
        if c not in absent and not labeled >> c & 1
    ]


def training_problems(args, labeled: list[Sample], found: dict, errors: list, warnings: list) -> None:
    """What the labeled images mean for training: a teacher epoch under one batch (an error), a
    crop that is mostly padding (a warning)."""
    n = len(labeled)
    epoch = n * repeats(n, args.min_labeled) if n else 0  # the teacher's epoch (data.oversample)
    if n and epoch < args.batch_size:
        errors.append(
            f"the teacher's epoch has {epoch} images ({n} labeled, repeated to train.min_labeled "
            f"{args.min_labeled}), fewer than one batch (train.batch_size {args.batch_size}): "
            "lower train.batch_size or raise train.min_labeled"
        )
    sizes = [(f.width, f.height) for f in (found[("image", s.image)] for s in labeled) if not f.error]
    if sizes and (w := crop_warning(sizes, args.crop_size, args.base_size, args.scale_range)):
        warnings.append(w)


def review_files(args, unlabeled: dict[str, Sample], errors: list) -> tuple[list[Sample], dict]:
    """The review's excluded images and {id: corrected mask file}, each checked against the
    unlabeled list; problems go to ``errors``, naming the file and the fix."""
    excluded, corrected = [], {}
    if args.review_exclude:
        samples, problems = parse_split_list(args.review_exclude)
        errors += [f"review.exclude: {p}" for p in problems]
        for s in samples:
            if s.id not in unlabeled:
                errors.append(
                    f"review.exclude {s.origin}: {s.id} is not in the unlabeled list {args.unlabeled}; "
                    "write each image as the unlabeled list writes it (its path, as in review.tsv's id column)"
                )
            else:
                excluded.append(s)
    if args.review_masks:
        folder = Path(args.review_masks)
        if not folder.is_dir():
            errors.append(f"review.masks folder not found: {folder}; create it or set review.masks to null")
        corrected, unknown = corrected_masks(folder, unlabeled)
        others = sorted(p for p in folder.rglob("*") if p.is_file() and p.suffix != ".png") if folder.is_dir() else []
        errors += [
            f"review.masks: {path} is not a .png file and would be ignored; save each corrected mask as a PNG "
            "named as its image path with .png (a lossy format such as JPEG changes class indices at every edge)"
            for path in others
            if not path.name.startswith(".")  # an editor's or a file manager's hidden files
        ]
        errors += [
            f"review.masks: {path} names no image of the unlabeled list {args.unlabeled}; name a corrected mask "
            "as its image path with .png, as the review sheet's masks/ are named"
            for path in unknown
        ]
        for s in excluded:
            if s.id in corrected:
                errors.append(
                    f"review: {s.id} is both excluded ({s.origin}) and corrected ({corrected[s.id]}); "
                    "keep one of the two"
                )
    return excluded, corrected


def review_digest(args, excluded, corrected: dict, unlabeled: dict, found: dict, errors: list) -> tuple[str, list]:
    """review.digest (the excluded ids and the corrected masks' contents, or that there is no
    review) and the corrected masks' manifest rows; a corrected mask of another size than its
    image is an error."""
    if not (args.review_exclude or args.review_masks):
        return NO_REVIEW, []
    digest, rows = hashlib.sha256(), []
    for s in excluded:
        digest.update(f"exclude\t{s.id}\n".encode())
    for image_id, path in sorted(corrected.items()):
        mask, image = found[("mask", str(path.resolve()))], found[("image", unlabeled[image_id].image)]
        if not mask.error and not image.error and (mask.width, mask.height) != (image.width, image.height):
            errors.append(
                f"corrected mask {path} (review.masks) is {mask.width}x{mask.height} but its image {image_id} is "
                f"{image.width}x{image.height}; a corrected mask must have its image's size"
            )
        row = ["review", "", "mask", str(path), str(mask.bytes), mask.sha256, str(mask.width), str(mask.height)]
        rows.append(row)
        digest.update((image_id + "\t" + "\t".join(row) + "\n").encode())
    return digest.hexdigest(), rows


def crop_warning(sizes, crop: int, base_size: int | None, scale_range) -> str | None:
    """A warning where a training crop would be mostly padding: at the middle of the rescale
    range, the median labeled image covers under half of a crop. The model then computes on
    padding (a crop of 4x an image's area trains about 4x slower for the same pixels); it is
    correct, so a warning, not an error."""
    scale = sum(scale_range) / 2
    covered, short_sides = [], []
    for w, h in sizes:
        factor = scale * (base_size or max(w, h)) / max(w, h)
        rw, rh = w * factor, h * factor
        covered.append(min(rw, crop) * min(rh, crop) / crop**2)
        short_sides.append(min(rw, rh))
    median = sorted(covered)[len(covered) // 2]
    if median >= 0.5:
        return None
    suggest = int(sorted(short_sides)[len(short_sides) // 2])
    return (
        f"train.crop_size {crop} is large for the labeled images: at the middle of train.scale_range the median "
        f"image covers {median:.0%} of a crop and the rest is padding, which costs {1 / median:.1f}x the "
        f"computation of the image alone; lower train.crop_size to about {suggest}"
    )


def _overlap(args, errors: list, warnings: list, a: str, b: str, what: str) -> None:
    """File an image found in lists ``a`` and ``b`` as an error or a warning."""
    if a == b:
        warnings.append(what)
    elif {a, b} == {"val", "test"}:
        errors.append(
            f"{what}: settings tuned on val would be judged on an image they saw; remove it from one of the lists"
        )
    elif {"val", "test"} & {a, b}:
        errors.append(f"{what}: evaluating on a training image inflates mIoU; remove it from one of the lists")
    elif args.allow_labeled_in_unlabeled:
        warnings.append(what)
    else:
        errors.append(
            f"{what}: a labeled image is also unlabeled; remove it from the unlabeled list, or set "
            "data.allow_labeled_in_unlabeled: true if you mean it"
        )


def check_data(args) -> None:
    t0 = time.time()
    errors, warnings, rows, digests = check(args)
    for w in warnings:
        log.warning("%s", w)
    if errors:
        for e in errors:
            log.error("%s", e)
        log.error("data check failed: %d problem(s) above; nothing was written to %s", len(errors), args.out_dir)
        sys.exit(1)
    out = Path(args.out_dir)
    write_text(out / "manifest.tsv", "\n".join(["\t".join(MANIFEST_COLUMNS), *("\t".join(r) for r in rows)]) + "\n")
    for name, digest in digests.items():
        write_text(out / f"{name}.digest", digest + "\n")
    if "test" not in digests:
        write_text(out / "test.digest", NO_TEST_LIST + "\n")
    images = sum(1 for r in rows if r[2] == "image")
    log.info(
        "data check passed: %d lines, %d files in %.1f s (%d warnings) -> %s",
        images,
        len(rows),
        time.time() - t0,
        len(warnings),
        out / "manifest.tsv",
    )


def main(argv=None) -> None:
    cli.run(check_data, build_parser(), argv)


if __name__ == "__main__":
    main()
