"""Pseudo-label images with a trained model and test-time augmentation (docs/method.md, stage 2).

    python -m stages.label --model teacher/model.pt --list unlabeled.txt --out pseudo_masks.h5 \\
        [--scales 0.5 0.75 1.0 1.5 2.0] [--flip] [--shard i --num-shards n]

Hard argmax of the summed softmax maps, no confidence threshold, no ignore pixels. Writes an
HDF5 mask store (one compressed uint8 dataset per image id) whose attributes name the model
file and the TTA settings, with each pixel's confidence beside each mask (the winning class's
mean probability over the TTA passes, x 255: what stpp.selection: pixel selects by).
``--shard i --num-shards n`` labels every n-th image starting at the i-th, so a cluster can split
the list; ``stages.merge_masks`` joins the shards.
"""

from __future__ import annotations

import logging
from pathlib import Path

from .seg import cli, speed
from .seg.data import ImageDataset, read_split_list
from .seg.inference import batches_by_size, predict
from .seg.io import load_model, resolve_device
from .seg.maskstore import MaskStoreWriter
from .workflow.layout import BEST_FILE

log = logging.getLogger("stpp")


def build_parser():
    p = cli.parser(__doc__.split("\n\n")[0])
    p.add_argument("--model", required=True, help="model checkpoint (model.pt)")
    p.add_argument(
        "--weights",
        choices=("final", "best"),
        default="final",
        help="label.weights: --model itself, or the best-on-validation weights its training job wrote beside it",
    )
    p.add_argument("--list", required=True, help="split list of the images to label")
    p.add_argument("--out", required=True, help="HDF5 mask store to write")
    cli.add_shard_args(p)
    p.add_argument("--num-classes", type=int, default=None, help="refuse a model for another number of classes")
    cli.add_data_args(p, labels=False)
    cli.add_tta_args(p, default_on=True)
    cli.add_runtime_args(p)
    cli.add_speed_args(p, training=False)
    p.set_defaults(batch_size=4)  # the schema's label.batch_size
    return p


def label(args) -> None:
    samples = cli.shard_of(read_split_list(args.list), args)
    device = resolve_device(args.device)
    weights = Path(args.model).with_name(BEST_FILE) if args.weights == "best" else Path(args.model)
    model = speed.for_inference(load_model(weights, device, args.num_classes), device, args)
    amp = speed.amp_dtype(args.amp, device)
    tta = cli.tta_settings(args)
    log.info(
        "labeling %d images of %s (shard %d/%d) with %s, TTA %s",
        len(samples),
        args.list,
        args.shard,
        args.num_shards,
        weights,
        tta,
    )
    attrs = {
        "model": str(weights),
        "list": str(args.list),
        **{f"tta_{key}": value for key, value in tta.items()},
        "shard": args.shard,
        "num_shards": args.num_shards,
    }
    with MaskStoreWriter(args.out, attrs) as store:
        for ids, images, _ in batches_by_size(
            ImageDataset(args.data_root, samples),
            args.batch_size,
            args.workers,
            device,
            "labeled",
            args.prefetch_factor,
        ):
            masks, confidence = predict(model, images, **tta, amp_dtype=amp, confidence=True)
            for image_id, mask, conf in zip(ids, masks.cpu().numpy(), confidence.cpu().numpy(), strict=True):
                store.write(image_id, mask, conf)
    log.info("wrote %s", args.out)


def main(argv=None) -> None:
    cli.run(label, build_parser(), argv)


if __name__ == "__main__":
    main()
