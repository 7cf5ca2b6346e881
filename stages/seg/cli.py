"""Command-line arguments that several stages share, declared once, and the run wrapper.

Free of torch at import (torch is imported where a stage needs it), so that a stage without a
model, such as the data check, starts in a fraction of a second.
"""

from __future__ import annotations

import argparse
import dataclasses
import logging
import os
import sys
from typing import Callable, Sequence

from .files import CheckpointError
from .images import LabelMap
from .palettes import palette
from .preemption import EXIT_PREEMPTED, Preempted
from .splits import DataError

# The paper's TTA scales (also the default of inference.tta_probabilities).
DEFAULT_TTA_SCALES = (0.5, 0.75, 1.0, 1.5, 2.0)

# label.tta_geometry: how TTA resizes. rounded: each scaled side rounded, bilinear resizes with
# align_corners=False (this workflow's, as its models resize); reference: each scaled side
# truncated (int(h * scale)), both resizes with align_corners=True, as the ST++ reference code.
TTA_GEOMETRIES = ("rounded", "reference")

log = logging.getLogger("stpp")


def parser(description: str) -> argparse.ArgumentParser:
    return argparse.ArgumentParser(description=description, formatter_class=argparse.ArgumentDefaultsHelpFormatter)


class _LabelMapAction(argparse.Action):
    """--label-map tokens, parsed into a LabelMap at once (a bad token is a usage error)."""

    def __call__(self, parser, namespace, values, option_string=None):
        try:
            setattr(namespace, self.dest, LabelMap.parse(values))
        except ValueError as err:
            parser.error(str(err))


def add_data_args(p: argparse.ArgumentParser, labels: bool = True) -> None:
    p.add_argument("--data-root", default=".", help="folder the split-list paths are relative to")
    if labels:
        add_label_args(p)


def add_label_args(p: argparse.ArgumentParser) -> None:
    """How stored mask values become classes: --num-classes, --ignore-labels, --label-map."""
    p.add_argument("--num-classes", type=int, required=True, help="number of classes C")
    p.add_argument(
        "--ignore-labels",
        type=int,
        nargs="*",
        default=[],
        help="mask values to ignore (mapped to 255), e.g. 11 for CamVid's void",
    )
    p.add_argument(
        "--label-map",
        nargs="*",
        action=_LabelMapAction,
        default=LabelMap(),
        metavar="STORED:CLASS",
        help="data.label_map: stored mask values to classes (255:1 for 0/255 masks; CLASS 'ignore' ignores "
        "the value), or a built-in table: cityscapes (label ids to the 19 train ids)",
    )
    p.add_argument(
        "--mask-colors",
        default=None,
        help="data.mask_colors: read colour (RGB) masks by this palette (pascal, camvid, msrc21, or a file of "
        "one 'R G B' line per class): a pixel of class c's colour is class c, of index 255's colour ignored",
    )


def mask_labels(args: argparse.Namespace) -> LabelMap:
    """How this stage reads a mask's values: --mask-colors, --label-map and --ignore-labels."""
    colours, name = (), getattr(args, "mask_colors", None)
    if name:
        full = palette(name)
        values = sorted({*range(args.num_classes), *args.ignore_labels, 255})
        colours = tuple((*full[v], v) for v in values if v < len(full))
    return dataclasses.replace(
        args.label_map, ignore=tuple(args.ignore_labels), colours=colours, colours_name=name or ""
    )


def add_runtime_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--device", default="auto", help="auto (CUDA when present), cpu or cuda[:N]")
    p.add_argument("--threads", type=int, default=None, help="torch CPU threads (the job's threads)")
    p.add_argument("--workers", type=int, default=0, help="DataLoader worker processes")
    p.add_argument("--batch-size", type=int, default=8, help="images per forward pass")
    p.add_argument("--verbose", action="store_true", help="debug logging")


def add_speed_args(p: argparse.ArgumentParser, training: bool) -> None:
    """The switches of ``seg.speed`` (config ``speed:``): none changes the method."""
    s = p.add_argument_group("speed (seg.speed)")
    s.add_argument(
        "--channels-last",
        choices=("auto", "on", "off"),
        default="auto",
        help="NHWC memory format; auto: where it was measured faster",
    )
    s.add_argument(
        "--cudnn-benchmark",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="let cuDNN pick the fastest convolution algorithm per input shape (CUDA only)",
    )
    s.add_argument("--prefetch-factor", type=int, default=2, help="batches each DataLoader worker loads ahead")
    s.add_argument(
        "--adapt-threads",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="on a CPU, use as many torch threads as other processes leave cores free (checked every second)",
    )
    if training:
        s.add_argument(
            "--compile",
            action=argparse.BooleanOptionalAction,
            default=False,
            help="torch.compile the model (minutes of compiling before the first step)",
        )
    else:
        s.add_argument(
            "--fold-batch-norm",
            action=argparse.BooleanOptionalAction,
            default=True,
            help="fold batch norms into the convolutions before them",
        )
        s.add_argument(
            "--amp",
            choices=("none", "bf16", "fp16", "auto"),
            default="none",
            help="mixed-precision inference: bf16 (CUDA, a CPU), fp16 (CUDA), auto (bf16 on a CPU with AMX-BF16)",
        )


def add_shard_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--shard", type=int, default=0, help="which shard of the list, 0-based")
    p.add_argument("--num-shards", type=int, default=1, help="every n-th image from the --shard-th")


def shard_of(samples: Sequence, args: argparse.Namespace) -> list:
    """The samples of shard ``--shard`` of ``--num-shards``: every n-th one from the i-th, so that
    each shard gets images from the whole list."""
    if not 0 <= args.shard < args.num_shards:
        raise ValueError(f"--shard must be in [0, {args.num_shards}), got {args.shard}")
    return list(samples)[args.shard :: args.num_shards]


def add_tta_args(p: argparse.ArgumentParser, default_on: bool) -> None:
    p.add_argument(
        "--tta",
        action=argparse.BooleanOptionalAction,
        default=default_on,
        help="test-time augmentation over --scales (and --flip)",
    )
    p.add_argument("--scales", type=float, nargs="+", default=list(DEFAULT_TTA_SCALES), help="TTA input scales")
    p.add_argument("--flip", action=argparse.BooleanOptionalAction, default=True, help="TTA horizontal flip")
    p.add_argument(
        "--resize-logits",
        action=argparse.BooleanOptionalAction,
        default=False,
        help="resize each pass's class scores from the model's output resolution straight to the "
        "image's size, softmax there (one resize a pass, faster); default: the paper's softmax at "
        "the scaled size, then a resize back",
    )
    p.add_argument(
        "--tta-geometry",
        choices=TTA_GEOMETRIES,
        default="rounded",
        help="rounded scaled sizes and align_corners=False resizes, or the reference code's truncated "
        "sizes and align_corners=True (label.tta_geometry)",
    )


def tta_settings(args: argparse.Namespace) -> dict:
    """The TTA actually applied, for mask-store attributes and ``predict``."""
    if not args.tta:
        return {"scales": None, "flip": False, "resize_logits": False, "geometry": "rounded"}
    return {
        "scales": list(args.scales),
        "flip": bool(args.flip),
        "resize_logits": bool(args.resize_logits),
        "geometry": args.tta_geometry,
    }


def setup_logging(verbose: bool = False) -> None:
    """Timestamped progress lines on stderr; Snakemake rules redirect them to ``log:``."""
    logging.basicConfig(
        level=logging.DEBUG if verbose else logging.INFO,
        format="%(asctime)s %(levelname)s %(message)s",
        datefmt="%Y-%m-%d %H:%M:%S",
        stream=sys.stderr,
        force=True,
    )


def usable_cores() -> int:
    """The cores this process may run on (its affinity: a SLURM job's, a taskset's), not the
    machine's."""
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1


def set_num_threads(threads: int | None, adapt: bool = False) -> None:
    """Respect the job's ``threads:`` so parallel Snakemake jobs do not oversubscribe cores; never
    more threads than the cores the process may use (more only wait on each other). ``adapt``:
    the stage's loops follow the cores other processes leave free (``speed.SharedCores``)."""
    if threads:
        import torch

        torch.set_num_threads(max(1, min(threads, usable_cores())))
    if adapt:
        from . import speed

        speed.adapt_threads = True


def out_of_memory_advice(args: argparse.Namespace) -> str:
    """What to change when a GPU ran out of memory, from the command's own sizes."""
    sizes = [f"batch size {args.batch_size}"] if hasattr(args, "batch_size") else []
    if getattr(args, "crop_size", None):
        sizes.append(f"crop {args.crop_size}")
    if getattr(args, "window", None):
        sizes.append(f"window {args.window}")
    return (
        f"out of GPU memory with {', '.join(sizes) or 'these settings'}: lower the batch size (train.batch_size, "
        "label.batch_size) or the crop (train.crop_size), set evaluate.window for large images, or use "
        "train.amp: bf16"
    )


def run(main: Callable[[argparse.Namespace], None], p: argparse.ArgumentParser, argv: Sequence[str] | None) -> None:
    """Parse, set up logging and threads, run. Bad input ends with one line naming the file or
    key and the fix (exit 1) rather than a traceback."""
    args = p.parse_args(argv)
    setup_logging(getattr(args, "verbose", False))
    set_num_threads(getattr(args, "threads", None), getattr(args, "adapt_threads", False))
    try:
        main(args)
    except Preempted as err:  # not an error: the job saved its state and a re-run continues
        log.warning("%s", err)
        sys.exit(EXIT_PREEMPTED)
    except (DataError, CheckpointError, FloatingPointError) as err:
        if getattr(args, "verbose", False):
            raise
        log.error("%s", err)
        sys.exit(1)
    except Exception as err:
        torch = sys.modules.get("torch")  # imported by any stage that can run out of GPU memory
        if torch is not None and isinstance(err, torch.OutOfMemoryError):
            raise MemoryError(out_of_memory_advice(args)) from err
        raise
