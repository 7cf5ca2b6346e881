"""The TTA geometries against each other on one model: pixel agreement and mIoU against the truth.

    python benchmarks/tta_geometry.py --model results/demo/teacher/model.pt \\
        --list resources/demo/unlabeled.txt --data-root resources/demo --num-classes 4

Labels every image of ``--list`` twice with the paper's TTA (scales 0.5-2.0, flip): the
workflow's default geometry (``label.tta_geometry: rounded``) and the reference code's
(``reference``: truncated sizes, ``align_corners=True``). Prints the share of pixels whose class
agrees (over all pixels, and the lowest image), and, where the list has masks, each geometry's
mIoU against them with the paired 90 % interval of the difference (bootstrap over the images):
what decides whether the default should change (issue 44). Not run by the test suite.
"""

from __future__ import annotations

import argparse

import numpy as np
import torch
from common import machine

from stages.seg.cli import DEFAULT_TTA_SCALES, TTA_GEOMETRIES
from stages.seg.data import ImageDataset, read_split_list
from stages.seg.images import decode_mask
from stages.seg.inference import predict
from stages.seg.io import load_model
from stages.seg.metrics import confusion_matrix, mean_iou, paired_bootstrap_interval


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--model", required=True)
    p.add_argument("--list", required=True, help="split list; lines with masks are measured against them")
    p.add_argument("--data-root", required=True)
    p.add_argument("--num-classes", type=int, required=True)
    p.add_argument("--threads", type=int, default=2)
    return p.parse_args(argv)


def main(argv=None) -> None:
    args = parse_args(argv)
    torch.set_num_threads(args.threads)
    samples = read_split_list(args.list)
    model = load_model(args.model, torch.device("cpu"), args.num_classes).eval()
    dataset = ImageDataset(args.data_root, samples)
    agree, pixels, lowest = 0, 0, 1.0
    per_image = {g: [] for g in TTA_GEOMETRIES}
    for i, sample in enumerate(samples):
        image = dataset[i][1][None]
        masks = {g: predict(model, image, DEFAULT_TTA_SCALES, True, geometry=g)[0].numpy() for g in TTA_GEOMETRIES}
        same = masks["rounded"] == masks["reference"]
        agree, pixels, lowest = agree + int(same.sum()), pixels + same.size, min(lowest, float(same.mean()))
        if sample.mask:
            truth = decode_mask(f"{args.data_root}/{sample.mask}", args.num_classes)
            for g in TTA_GEOMETRIES:
                per_image[g].append(confusion_matrix(masks[g], truth, args.num_classes).numpy())
    m = machine()
    print(f"{len(samples)} images of {args.list}, model {args.model}; {m['cores']} cores of {m['cpu']}")
    print(
        f"pixels of the same class under both geometries: {100 * agree / pixels:.2f} % "
        f"(lowest image {100 * lowest:.2f} %)"
    )
    if per_image["rounded"]:
        cms = {g: np.stack(per_image[g]) for g in TTA_GEOMETRIES}
        for g in TTA_GEOMETRIES:
            print(f"mIoU against the masks, {g}: {100 * mean_iou(cms[g].sum(0)):.2f}")
        diff, low, high = paired_bootstrap_interval([(cms["rounded"], cms["reference"])])
        print(f"reference - rounded: {100 * diff:+.2f} [{100 * low:+.2f}, {100 * high:+.2f}] (paired 90 % interval)")


if __name__ == "__main__":
    main()
