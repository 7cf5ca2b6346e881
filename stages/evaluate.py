"""Evaluate a model on a labeled list (stage 8): mIoU, per-class IoU, pixel accuracy.

    python -m stages.evaluate --model model.pt --list val.txt --num-classes C \\
        [--class-names a b ...] [--ignore-labels 11] --out metrics.json [--window 321]

One confusion matrix over the whole list; ground-truth pixels outside [0, C) are skipped;
IoU_c = TP / (TP + FP + FN) and mIoU is the nan-mean over classes. Whole image, single scale by
default (the reference code); ``--window`` turns on sliding-window inference (stride 2/3 of it).

``--per-image`` also writes every image's own confusion matrix, compressed (``numpy.savez_compressed``:
``ids``, the list's image ids in order, and ``confusion``, an (N, C, C) int64 array, rows = truth):
what a paired bootstrap over images needs to compare two models (benchmarks/semisup.py).
"""

from __future__ import annotations

import logging

import numpy as np
import torch

from .seg import cli, speed
from .seg.data import EvalDataset, read_split_list
from .seg.files import atomic_path, write_json
from .seg.inference import accumulate_confusion
from .seg.io import load_model, resolve_device
from .seg.metrics import iou_per_class, mean_iou, pixel_accuracy

log = logging.getLogger("stpp")


def build_parser():
    p = cli.parser(__doc__.split("\n\n")[0])
    p.add_argument("--model", required=True, help="model checkpoint")
    p.add_argument("--list", required=True, help="split list with ground-truth masks")
    p.add_argument("--out", required=True, help="metrics.json to write")
    p.add_argument("--per-image", default=None, help="per_image_confusion.npz to write (see above)")
    p.add_argument("--class-names", nargs="*", default=None, help="one name per class (default: 0..C-1)")
    p.add_argument("--window", type=int, default=None, help="sliding-window size (none: whole image)")
    p.add_argument("--stride", type=int, default=None, help="sliding-window stride (default: 2/3 of the window)")
    cli.add_data_args(p)
    cli.add_runtime_args(p)
    cli.add_speed_args(p, training=False)
    p.set_defaults(batch_size=1)
    return p


def metrics_from_confusion(cm, class_names) -> dict:
    iou = iou_per_class(cm)
    return {
        "miou": mean_iou(cm),
        "pixel_accuracy": pixel_accuracy(cm),
        "iou": {name: (None if v != v else float(v)) for name, v in zip(class_names, iou, strict=True)},  # NaN -> null
        "class_names": list(class_names),
        "confusion_matrix": cm.tolist(),
    }


def write_per_image_confusion(path, per_image: dict) -> None:
    ids = list(per_image)
    with atomic_path(path) as tmp:
        with open(tmp, "wb") as f:
            np.savez_compressed(f, ids=np.array(ids), confusion=torch.stack([per_image[i] for i in ids]).numpy())


def read_per_image_confusion(path) -> tuple[list[str], np.ndarray]:
    """(ids, (N, C, C) confusion matrices) of a --per-image file."""
    with np.load(path) as data:
        return [str(i) for i in data["ids"]], data["confusion"]


def evaluate(args) -> None:
    names = args.class_names or [str(c) for c in range(args.num_classes)]
    if len(names) != args.num_classes:
        raise ValueError(f"--class-names has {len(names)} names for {args.num_classes} classes")
    device = resolve_device(args.device)
    model = speed.for_inference(load_model(args.model, device, args.num_classes), device, args)
    dataset = EvalDataset(
        args.data_root, read_split_list(args.list, need_masks=True), args.num_classes, cli.mask_labels(args)
    )
    log.info("evaluating %s on %d images of %s", args.model, len(dataset), args.list)
    per_image = {} if args.per_image else None
    cm = accumulate_confusion(
        model,
        dataset,
        args.num_classes,
        args.batch_size,
        args.workers,
        device,
        args.window,
        args.stride,
        speed.amp_dtype(args.amp, device),
        args.prefetch_factor,
        per_image,
    )
    metrics = {"model": str(args.model), "list": str(args.list), **metrics_from_confusion(cm, names)}
    if per_image is not None:
        write_per_image_confusion(args.per_image, per_image)
    write_json(args.out, metrics)
    log.info("mIoU %.4f, pixel accuracy %.4f -> %s", metrics["miou"], metrics["pixel_accuracy"], args.out)


def main(argv=None) -> None:
    cli.run(evaluate, build_parser(), argv)


if __name__ == "__main__":
    main()
