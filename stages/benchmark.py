"""Measure training and labeling speed and memory on real images; prints the figures.

    python -m stages.benchmark --list ../shared/data/camvid/splits/1_8/labeled.txt \\
        --data-root ../shared/data/camvid --num-classes 11 --ignore-labels 11 \\
        --backbone resnet18 --crop-size 160 --batch-size 8

Training: ``--train-iterations`` SGD steps (after ``--warmup`` untimed ones) of the real
training step on weakly augmented crops of the list, data loading included. Labeling: the
first ``--label-images`` images of the list at full size, plain prediction and the TTA of
``stages.label`` (``--scales`` x flip). Memory: the process's peak resident set (and peak
CUDA memory on a GPU). Speed is measured here, never in tests.
"""

from __future__ import annotations

import itertools
import logging
import resource
import time

import torch
from torch.utils.data import DataLoader, Subset

from .seg import cli
from .seg.data import ImageDataset, read_split_list, training_set
from .seg.inference import batches_by_size, predict
from .seg.io import resolve_device
from .seg.models import ARCHS, BACKBONES, build_model, param_groups
from .seg.transforms import WeakAugment
from .train import mixed_precision, train_step

log = logging.getLogger("stpp")


def build_parser():
    p = cli.parser(__doc__.split("\n\n")[0])
    p.add_argument("--list", required=True, help="split list with masks (images to train and label on)")
    cli.add_data_args(p)
    p.add_argument("--arch", choices=ARCHS, default="deeplabv3plus")
    p.add_argument("--backbone", choices=BACKBONES, default="resnet18")
    p.add_argument("--output-stride", type=int, choices=(8, 16), default=8)
    p.add_argument("--head-channels", type=int, default=None, help="ASPP/decoder width (default: the paper's)")
    p.add_argument("--crop-size", type=int, default=321)
    p.add_argument("--train-iterations", type=int, default=10)
    p.add_argument("--warmup", type=int, default=2)
    p.add_argument("--label-images", type=int, default=16)
    p.add_argument("--amp", choices=("none", "bf16", "fp16"), default="none")
    cli.add_tta_args(p, default_on=True)
    cli.add_runtime_args(p)
    return p


def _peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # Linux: kilobytes


def _sync(device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def benchmark(args) -> None:
    device = resolve_device(args.device)
    torch.manual_seed(0)
    samples = read_split_list(args.list, need_masks=True)
    model = build_model(args.arch, args.backbone, args.num_classes, args.output_stride,
                        head_channels=args.head_channels).to(device)
    optimizer = torch.optim.SGD(param_groups(model, 0.001, 10.0), lr=0.001, momentum=0.9, weight_decay=1e-4)
    amp, scaler = mixed_precision(args.amp, device)
    steps = args.warmup + args.train_iterations
    dataset = training_set(args.data_root, samples, [], WeakAugment(args.crop_size), None, args.num_classes,
                           args.ignore_labels, min_labeled=steps * args.batch_size)
    loader = DataLoader(dataset, args.batch_size, shuffle=True, drop_last=True, num_workers=args.workers)
    print(f"device {device}, torch threads {torch.get_num_threads()}, {args.arch} {args.backbone} "
          f"OS {args.output_stride}, head {args.head_channels or 'default'}, crop {args.crop_size}, batch {args.batch_size}, workers {args.workers}")

    model.train()
    batches = iter(loader)
    for images, masks in itertools.islice(batches, args.warmup):
        train_step(model, optimizer, scaler, images, masks, device, amp)
    _sync(device)
    t0 = time.perf_counter()
    for images, masks in itertools.islice(batches, args.train_iterations):
        train_step(model, optimizer, scaler, images, masks, device, amp)
    _sync(device)
    seconds = time.perf_counter() - t0
    print(f"train: {args.train_iterations} iterations in {seconds:.2f} s = "
          f"{args.train_iterations * args.batch_size / seconds:.2f} images/s ({seconds / args.train_iterations:.3f} s/iteration)")

    model.eval()
    images = Subset(ImageDataset(args.data_root, samples), range(min(args.label_images, len(samples))))
    tta = cli.tta_settings(args)
    for name, settings in (("plain", {}), (f"TTA {tta['scales']} flip {tta['flip']}", tta)):
        _sync(device)
        t0 = time.perf_counter()
        for _, batch, _ in batches_by_size(images, args.batch_size, args.workers, device):
            predict(model, batch, **settings)
        _sync(device)
        seconds = time.perf_counter() - t0
        print(f"label ({name}): {len(images)} images in {seconds:.2f} s = {len(images) / seconds:.2f} images/s")
    print(f"peak resident memory {_peak_rss_mb():.0f} MB")
    if device.type == "cuda":
        print(f"peak CUDA memory {torch.cuda.max_memory_allocated(device) / 2**20:.0f} MB")


def main(argv=None) -> None:
    cli.run(benchmark, build_parser(), argv)


if __name__ == "__main__":
    main()
