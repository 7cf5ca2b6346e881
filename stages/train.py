"""Train a teacher (labeled images only) or a student (labeled + pseudo-labeled images).

    python -m stages.train --labeled labeled.txt --num-classes 11 --out-dir results/x/teacher \\
        [--pseudo reliable_ids.txt pseudo_masks.h5]... [--checkpoints 3] [--resume-state PATH]

Writes into ``--out-dir``:

- ``model.pt``: the final weights (the K-th checkpoint);
- ``checkpoints/checkpoint_{j}.pt`` for j = 1..K-1, at the end of epoch floor(j * E / K);
- ``train_log.tsv``: one row per epoch (iterations, mean loss, lr, seconds, images/s, val mIoU);
- ``best.pt`` with ``--val``: the best-on-validation weights (the reference code's choice).

Recipe (docs/method.md): cross-entropy with ignore index 255; SGD, momentum 0.9, weight decay
1e-4; backbone lr = ``--lr`` x batch / 16, head lr x ``--head-lr-multiplier``; poly decay every
iteration. Labeled images get weak augmentation, pseudo-labeled ones weak + strong.

Resume: with ``--resume-state`` the full training state (model, optimizer, scaler, RNG, epoch
and iteration) is written atomically after every epoch, every ``--save-every-minutes`` within
one, and at once on SIGTERM or SIGUSR1 (preemption, SLURM's time-limit warning), after which the
job exits with code 75 (``seg.preemption``). A re-run with the same inputs and settings
continues from it; other inputs or settings start afresh. Checkpoints and ``best.pt`` are kept
beside the resume state until training ends: Snakemake deletes a failed job's declared outputs,
and the resumed run still needs the checkpoints of epochs it will not repeat. At the end they
are hard-linked (or copied) into ``--out-dir``, ``model.pt`` is written, and only then are the
resume state and the staged files removed, so a kill at any moment leaves a state that the next
run resumes or restarts from; a resume state whose staged checkpoints are gone is ignored, with
a warning. A loss that is NaN or infinite stops training with an error and keeps the last
epoch's resume state. Each epoch's data order comes from a generator seeded by (seed, epoch) and
each sample's augmentation from a seed of (epoch seed, index), so a run resumed at any
iteration, or run with any number of DataLoader workers, ends on CPU with the same weights as an
uninterrupted one.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import logging
import math
import time
from dataclasses import dataclass, field
from pathlib import Path

import torch
import torch.nn.functional as F
from torch.utils.data import DataLoader

from .seg import cli, distributed, speed
from .seg.data import DataError, EvalDataset, SeededSamples, epoch_batches, read_split_list, repeats, training_set
from .seg.files import write_text
from .seg.inference import accumulate_confusion
from .seg.io import resolve_device
from .seg.metrics import mean_iou
from .seg.models import ARCHS, BACKBONES, build_model, default_head_lr_multiplier, param_groups
from .seg.preemption import Preempted, StopRequests, ignore_stop_signals
from .seg.training_files import Progress, Trained, TrainingFiles
from .seg.transforms import IGNORE_INDEX, STRONG_OPS, StrongAugment, WeakAugment

log = logging.getLogger("stpp")

# data_wait_share: the part of the epoch's time the training loop waited for the DataLoader.
LOG_COLUMNS = ("epoch", "iterations", "loss", "lr", "seconds", "images_per_s", "data_wait_share", "val_miou")


def build_parser() -> argparse.ArgumentParser:
    p = cli.parser(__doc__.split("\n\n")[0])
    p.add_argument("--labeled", required=True, help="labeled split list (image and mask per line)")
    p.add_argument(
        "--pseudo",
        nargs=2,
        action="append",
        default=[],
        metavar=("LIST", "STORE"),
        help="pseudo-labeled split list and its HDF5 mask store; repeatable",
    )
    cli.add_data_args(p)
    p.add_argument(
        "--data-digests",
        nargs="*",
        default=[],
        help="the data check's <list>.digest files of these lists: their content (the images' and "
        "masks' hashes) joins the resume fingerprint",
    )
    p.add_argument("--out-dir", required=True, help="where model.pt, checkpoints and train_log.tsv go")
    p.add_argument(
        "--resume-state",
        default=None,
        help="resume file, written every epoch, every --save-every-minutes and on SIGTERM/SIGUSR1 (none: no resume)",
    )
    p.add_argument(
        "--save-every-minutes",
        type=float,
        default=10.0,
        help="also write the resume state mid-epoch this often (0: at epoch ends only)",
    )
    _model_args(p)
    _optimisation_args(p)
    _augmentation_and_validation_args(p)
    cli.add_runtime_args(p)
    cli.add_speed_args(p, training=True)
    p.set_defaults(batch_size=16, workers=2)  # the schema's train.batch_size and train.workers
    return p


def json_object(text: str) -> str:
    """A JSON object's canonical text (sorted keys), or a usage error."""
    try:
        value = json.loads(text)
    except json.JSONDecodeError as err:
        raise argparse.ArgumentTypeError(f"not JSON: {err}") from None
    if not isinstance(value, dict):
        raise argparse.ArgumentTypeError("a JSON object ({...}) of the factory's keyword arguments")
    return json.dumps(value, sort_keys=True)


def _model_args(p: argparse.ArgumentParser) -> None:
    m = p.add_argument_group("model")
    m.add_argument("--arch", choices=ARCHS, default="deeplabv3plus")
    m.add_argument("--backbone", choices=BACKBONES, default="resnet50")
    m.add_argument("--output-stride", type=int, choices=(8, 16), default=8)
    m.add_argument(
        "--pretrained",
        default=None,
        help="'imagenet' (efficientnet_lite0's packaged weights) or a local ImageNet weights file (none: random init)",
    )
    m.add_argument(
        "--head-channels", type=int, default=None, help="ASPP/decoder (PSP) width; default: the paper's 256 (512)"
    )
    m.add_argument(
        "--class-names", nargs="*", default=None, help="recorded in the checkpoints for stages.predict (not learned)"
    )
    m.add_argument("--palette", default=None, help="recorded in the checkpoints for stages.predict (data.palette)")
    m.add_argument(
        "--factory",
        default=None,
        help="--arch custom: package.module:function or path/file.py:function (model.factory)",
    )
    m.add_argument(
        "--model-kwargs", type=json_object, default=None, help="--arch custom: the factory's further arguments, JSON"
    )
    m.add_argument(
        "--sync-bn",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="with several processes (torchrun), batch norm statistics over the global batch",
    )


def _optimisation_args(p: argparse.ArgumentParser) -> None:
    o = p.add_argument_group("optimisation")
    o.add_argument("--epochs", type=int, default=80)
    o.add_argument("--lr", type=float, default=0.001, help="backbone lr for a total batch of 16")
    o.add_argument("--head-lr-multiplier", type=float, default=None, help="default: 10 (1 for deeplabv2)")
    o.add_argument("--momentum", type=float, default=0.9)
    o.add_argument("--weight-decay", type=float, default=1e-4)
    o.add_argument("--poly-power", type=float, default=0.9)
    o.add_argument("--checkpoints", type=int, default=1, help="K: checkpoints at epochs floor(jE/K), j=1..K")
    o.add_argument(
        "--seed",
        type=int,
        default=0,
        help="train.seed: data order, augmentation and (with --model-name) the model's initialisation",
    )
    o.add_argument(
        "--model-name",
        default=None,
        help="the model's name in the run (teacher, st_student, stpp_student1, ...): its random "
        "initialisation is drawn from a seed of (--seed, this name), so that no student starts "
        "where the teacher did (none: from --seed itself, one start shared by every model)",
    )
    o.add_argument(
        "--teacher-epochs",
        type=int,
        default=None,
        help="a student's labeled-passes schedule: train at least as many epochs as it takes to see "
        "every labeled image as often as a teacher of this many epochs (over-sampled to "
        "--min-labeled) did, and at least that teacher's iterations (none: --epochs, the paper's "
        "equal-epochs rule)",
    )
    o.add_argument("--amp", choices=("none", "bf16", "fp16"), default="none", help="mixed precision (fp16: CUDA only)")


def _augmentation_and_validation_args(p: argparse.ArgumentParser) -> None:
    a = p.add_argument_group("augmentation")
    a.add_argument("--crop-size", type=int, default=321)
    a.add_argument("--base-size", type=int, default=None, help="long side before rescale (none: the image's own)")
    a.add_argument("--scale-range", type=float, nargs=2, default=(0.5, 2.0))
    a.add_argument(
        "--strong",
        choices=STRONG_ON,
        nargs="?",
        const="pseudo_labeled",
        default="pseudo_labeled",
        help="which images get strong augmentation: the pseudo-labeled (the paper's ST), all (the "
        "labeled too) or none (Table 5's ablations)",
    )
    a.add_argument("--no-strong", dest="strong", action="store_const", const="none", help="--strong none")
    a.add_argument(
        "--strong-ops",
        nargs="+",
        choices=STRONG_OPS,
        default=list(STRONG_OPS),
        help="which strong augmentations (Figure 2: each alone)",
    )
    a.add_argument(
        "--labeled-cutout",
        action="store_true",
        help="Cutout alone on the labeled images too (Figure 2's grey column)",
    )
    a.add_argument(
        "--min-labeled",
        type=int,
        default=200,
        help="without pseudo-labels, repeat the labeled list to at least this many images per epoch",
    )
    v = p.add_argument_group("validation (optional)")
    v.add_argument(
        "--val", default=None, help="validation split list: evaluate every --eval-every epochs, keep best.pt"
    )
    v.add_argument("--eval-every", type=int, default=1)


def checkpoint_epochs(epochs: int, k: int) -> dict[int, int]:
    """{epoch: j} for the K checkpoints at the end of epochs floor(j * E / K)."""
    if not 1 <= k <= epochs:
        raise ValueError(f"--checkpoints must be between 1 and --epochs ({epochs}), got {k}")
    return {math.floor(j * epochs / k): j for j in range(1, k + 1)}


def init_seed(seed: int, model_name: str | None) -> int:
    """The seed of a model's random initialisation: ``seed`` itself without a name, else one drawn
    from (seed, name), so that each model of a run starts from its own random head (the paper
    re-initialises the student; the reference code draws each from its running RNG) while a
    re-run of the same model starts where it did before."""
    if model_name is None:
        return seed
    digest = hashlib.sha256(f"{seed}:{model_name}".encode()).digest()
    return int.from_bytes(digest[:8], "little") & (2**63 - 1)


def schedule_epochs(
    epochs: int, num_labeled: int, num_pseudo: int, batch_size: int, min_labeled: int, teacher_epochs: int | None
) -> int:
    """A student's epochs. ``teacher_epochs`` None: ``epochs`` (the paper: as many epochs as the
    teacher). Otherwise the labeled-passes rule: enough epochs that the student sees each labeled
    image at least as often as the teacher did (teacher_epochs x its repeats up to ``min_labeled``)
    and trains at least the teacher's iterations. Under the equal-epochs rule a student whose
    pseudo-labeled set is small (ST++ student 1: the reliable half) repeats the labeled list fewer
    times per epoch than the teacher, and so sees each labeled image less often than the teacher."""
    if teacher_epochs is None or not num_pseudo:
        return epochs
    teacher_repeats, student_repeats = repeats(num_labeled, min_labeled), repeats(num_labeled, num_pseudo)
    teacher_iters = teacher_epochs * (num_labeled * teacher_repeats // batch_size)
    student_iters = (num_labeled * student_repeats + num_pseudo) // batch_size
    return max(
        epochs,
        math.ceil(teacher_epochs * teacher_repeats / student_repeats),
        math.ceil(teacher_iters / max(1, student_iters)),
    )


def poly_lr(base_lr: float, iteration: int, total: int, power: float) -> float:
    return base_lr * (1 - iteration / total) ** power


def mixed_precision(amp: str, device: torch.device) -> tuple[torch.dtype | None, torch.amp.GradScaler]:
    """Autocast dtype (None: float32) and grad scaler for ``--amp`` (fp16 CUDA only; bf16 on a CPU too)."""
    dtype = speed.amp_dtype(amp, device)
    return dtype, torch.amp.GradScaler("cuda", enabled=dtype is torch.float16)


def segmentation_loss(logits: torch.Tensor, masks: torch.Tensor) -> torch.Tensor:
    """Cross-entropy averaged over the pixels that are not ignored (255): PyTorch's mean, except
    that a batch with no such pixel (pixel-level selection's unconfident crops, Cutout over the
    rest) gives 0 and zero gradients instead of 0 / 0 = nan. Without a host sync."""
    total = F.cross_entropy(logits, masks, ignore_index=IGNORE_INDEX, reduction="sum")
    return total / (masks != IGNORE_INDEX).sum().clamp(min=1)


def train_step(model, optimizer, scaler, images, masks, device, amp_dtype=None) -> float:
    """One SGD step of cross-entropy (ignore index 255); returns the loss."""
    images, masks = images.to(device, non_blocking=True), masks.to(device, non_blocking=True)
    with torch.autocast(device.type, dtype=amp_dtype or torch.float32, enabled=amp_dtype is not None):
        loss = segmentation_loss(model(images), masks)
    optimizer.zero_grad(set_to_none=True)
    scaler.scale(loss).backward()
    scaler.step(optimizer)
    scaler.update()
    return loss.item()


def _write_log(path: Path, rows: list[dict]) -> None:
    lines = ["\t".join(LOG_COLUMNS)]
    lines += ["\t".join(str(row.get(c, "")) for c in LOG_COLUMNS) for row in rows]
    write_text(path, "\n".join(lines) + "\n")


@dataclass(frozen=True)
class Schedule:
    """How long a job trains: its epochs (a student's set by its schedule), iterations per epoch
    and in all, and {epoch: j} of the K checkpoints."""

    epochs: int
    iters_per_epoch: int
    checkpoint_at: dict

    @property
    def total_iters(self) -> int:
        return self.epochs * self.iters_per_epoch


@dataclass
class EpochMeter:
    """The running figures of one epoch: what its log row is made of, and what the resume state
    keeps of an epoch in progress."""

    loss_sum: float = 0.0
    prior_seconds: float = 0.0  # of the epoch's part before a resume
    data_wait: float = 0.0
    lr: float = 0.0
    started: float = field(default_factory=time.time)

    @classmethod
    def resumed(cls, running: dict) -> EpochMeter:
        return cls(running.get("loss_sum", 0.0), running.get("epoch_seconds", 0.0), running.get("data_wait", 0.0))

    def seconds(self) -> float:
        return self.prior_seconds + time.time() - self.started

    def state(self) -> dict:
        return {"loss_sum": self.loss_sum, "epoch_seconds": self.seconds(), "data_wait": self.data_wait}

    def row(self, epoch: int, schedule: Schedule, batch_size: int) -> dict:
        seconds, n = self.seconds(), schedule.iters_per_epoch
        return {
            "epoch": epoch + 1,
            "iterations": (epoch + 1) * n,
            "loss": round(self.loss_sum / n, 6),
            "lr": f"{self.lr:.6g}",
            "seconds": round(seconds, 3),
            "images_per_s": round(n * batch_size / seconds, 3),
            "data_wait_share": round(self.data_wait / seconds, 4),
            "val_miou": "",
        }


@dataclass
class TrainingData:
    dataset: SeededSamples
    schedule: Schedule
    val_set: EvalDataset | None


# train.strong_augmentation's values: which images get strong augmentation (the paper's Table 5)
STRONG_ON = ("pseudo_labeled", "all", "none")


def strong_augmentation(args: argparse.Namespace) -> tuple[StrongAugment | None, StrongAugment | None]:
    """(the pseudo-labeled images', the labeled images') strong augmentation. Without
    pseudo-labels (the teacher) there is none: the ablations change the students alone."""
    if not args.pseudo or args.strong == "none":
        strong = None
    else:
        strong = StrongAugment(ops=args.strong_ops)
    if not args.pseudo:
        labeled = None
    elif args.strong == "all":
        labeled = StrongAugment(ops=args.strong_ops)
    elif args.labeled_cutout:
        labeled = StrongAugment(ops=("cutout",))
    else:
        labeled = None
    return strong, labeled


def build_data(args: argparse.Namespace, world: distributed.World, device: torch.device) -> TrainingData:
    """The training set, its schedule (a student's epochs set by stpp.student_schedule) and the
    validation set."""
    labeled = read_split_list(args.labeled, need_masks=True)
    pseudo = [(read_split_list(lst), store) for lst, store in args.pseudo]
    num_pseudo = sum(len(s) for s, _ in pseudo)
    epochs = schedule_epochs(
        args.epochs, len(labeled), num_pseudo, args.batch_size, args.min_labeled, args.teacher_epochs
    )
    if epochs != args.epochs:
        log.info(
            "labeled-passes schedule: %d epochs instead of %d, to see each labeled image as often as the "
            "teacher's %d epochs did",
            epochs,
            args.epochs,
            args.teacher_epochs,
        )
    weak = WeakAugment(args.crop_size, args.base_size, tuple(args.scale_range))
    strong, labeled_strong = strong_augmentation(args)
    dataset = SeededSamples(
        training_set(
            args.data_root,
            labeled,
            pseudo,
            weak,
            strong,
            args.num_classes,
            cli.mask_labels(args),
            args.min_labeled,
            labeled_strong,
        )
    )
    iters_per_epoch = len(dataset) // args.batch_size
    if iters_per_epoch == 0:
        raise DataError(
            f"{len(dataset)} training images are fewer than one batch of {args.batch_size}: lower "
            "--batch-size (train.batch_size) or raise --min-labeled (train.min_labeled)"
        )
    if args.batch_size % world.size:
        raise DataError(
            f"the batch of {args.batch_size} (train.batch_size) does not split over {world.size} "
            "processes (train.gpus): make it a multiple"
        )
    log.info(
        "training set: %d labeled (%d after over-sampling) + %d pseudo-labeled; %d iterations/epoch on %s%s",
        len(labeled),
        len(dataset) - num_pseudo,
        num_pseudo,
        iters_per_epoch,
        device,
        f" and {world.size - 1} more processes" if world.size > 1 else "",
    )
    val_set = None
    if args.val:
        val_list = read_split_list(args.val, need_masks=True)
        val_set = EvalDataset(args.data_root, val_list, args.num_classes, cli.mask_labels(args))
    return TrainingData(
        dataset, Schedule(epochs, iters_per_epoch, checkpoint_epochs(epochs, args.checkpoints)), val_set
    )


@dataclass
class Model:
    """The trained weights and their optimizer (``trained``, what the resume state and the
    checkpoints hold), the module that trains (``net`` itself, or its DDP or compiled wrapper),
    the base learning rate and the precision."""

    trained: Trained
    module: torch.nn.Module
    base_lr: float
    amp_dtype: torch.dtype | None


def build_trained_model(args: argparse.Namespace, world: distributed.World, device: torch.device) -> Model:
    """The model from its own initial seed, its DDP or compiled wrapper, the optimizer and the precision."""
    spec = {
        "arch": args.arch,
        "backbone": args.backbone,
        "num_classes": args.num_classes,
        "output_stride": args.output_stride,
        "head_channels": args.head_channels,
        "factory": args.factory,
        "kwargs": args.model_kwargs,
    }
    torch.manual_seed(init_seed(args.seed, args.model_name))
    net = build_model(pretrained=args.pretrained, **spec).to(device)
    speed.configure_backends(device, args.cudnn_benchmark)
    if speed.channels_last_wanted(args.channels_last, device, args.backbone, training=True):
        net.use_channels_last()
    module = net
    if world.size > 1:
        if args.sync_bn and device.type == "cuda":
            net = module = torch.nn.SyncBatchNorm.convert_sync_batchnorm(net)
        elif args.sync_bn:
            log.warning("SyncBatchNorm needs CUDA: on %s each process keeps its own batch norm statistics", device)
        module = torch.nn.parallel.DistributedDataParallel(
            net, device_ids=[device.index] if device.type == "cuda" else None
        )
    if args.compile:  # shares its parameters with net, whose state is saved
        log.info("torch.compile: the first iteration compiles the model")
        module = torch.compile(module)
    head_mult = args.head_lr_multiplier
    if head_mult is None:
        head_mult = default_head_lr_multiplier(args.arch)
    base_lr = args.lr * args.batch_size / 16
    optimizer = torch.optim.SGD(
        param_groups(net, base_lr, head_mult), lr=base_lr, momentum=args.momentum, weight_decay=args.weight_decay
    )
    amp_dtype, scaler = mixed_precision(args.amp, device)
    labels = {key: value for key in ("class_names", "palette") if (value := getattr(args, key, None))}
    return Model(Trained(net, optimizer, scaler, spec, labels), module, base_lr, amp_dtype)


def epoch_loader(args, dataset: SeededSamples, epoch: int, skip: int, world, device) -> DataLoader:
    """Epoch ``epoch``'s batches after the first ``skip``. Per-epoch seeds make the epoch
    reproducible wherever training (re)starts; each sample's augmentation has its own seed
    (SeededSamples), so a run resumed mid-epoch skips the batches done and continues with the
    model's RNG as it was saved. With several processes each takes its share of every batch."""
    epoch_seed = args.seed * 1_000_003 + epoch
    if not skip:
        torch.manual_seed(epoch_seed + 7919 * world.rank)  # each process's own dropout
    dataset.set_epoch_seed(epoch_seed)
    batches = [world.share(b) for b in epoch_batches(len(dataset), args.batch_size, epoch_seed)]
    return DataLoader(
        dataset,
        batch_sampler=batches[skip:],
        num_workers=args.workers,
        pin_memory=device.type == "cuda",
        prefetch_factor=args.prefetch_factor if args.workers else None,
        generator=torch.Generator().manual_seed(epoch_seed),  # not the model's RNG
        worker_init_fn=ignore_stop_signals if args.workers else None,
    )


@dataclass
class Job:
    """What every step of one training job takes: its options, its processes and device, its
    files (resume state, staged checkpoints) and the stop signals it has received."""

    args: argparse.Namespace
    world: distributed.World
    device: torch.device
    files: TrainingFiles
    stop: StopRequests
    cores: speed.SharedCores = field(default_factory=lambda: speed.SharedCores(1, enabled=False))

    def preempted(self, model: Model, progress: Progress) -> Preempted:
        """Save the state at ``progress`` (unless just saved) and say where a re-run continues."""
        signal_name, files = self.stop.received or "a stop signal", self.files
        if not files.resume_path:
            return Preempted(f"stopped by {signal_name}; without --resume-state a re-run starts afresh")
        if files.saved_at != (progress.epoch, progress.iteration):
            files.save(model.trained, progress, self.device)
        return Preempted(f"stopped by {signal_name}: {files.kept()}; a re-run (Snakemake's retry) continues from it")


def train_one_epoch(
    job: Job, model: Model, loader, epoch: int, skip: int, schedule: Schedule, meter: EpochMeter, progress: Progress
) -> None:
    """Train epoch ``epoch`` from its batch ``skip`` on, the poly learning rate set every
    iteration. A stop signal saves the state at once and raises Preempted; every
    --save-every-minutes the state is saved; a loss that is not finite stops training."""
    args, world, device, files = job.args, job.world, job.device, job.files
    model.module.train()
    optimizer = model.trained.optimizer
    meter.lr = model.base_lr
    ready = time.time()
    for i, (images, masks) in enumerate(loader, start=skip):
        meter.data_wait += time.time() - ready
        iteration = epoch * schedule.iters_per_epoch + i
        for group in optimizer.param_groups:
            group["lr"] = poly_lr(group["base_lr"], iteration, schedule.total_iters, args.poly_power)
        meter.lr = optimizer.param_groups[0]["lr"]
        loss = world.mean(
            train_step(model.module, optimizer, model.trained.scaler, images, masks, device, model.amp_dtype)
        )
        job.cores.adapt()
        if not math.isfinite(loss):
            raise FloatingPointError(
                f"training diverged: the loss is {loss} at epoch {epoch + 1} iteration {i + 1}; {files.kept()}. "
                f"Lower train.lr (now {args.lr}){', or use amp: bf16 or none' if args.amp == 'fp16' else ''} "
                "and re-run"
            )
        meter.loss_sum += loss
        n = schedule.iters_per_epoch
        if (i + 1) % max(1, n // 5) == 0 or i + 1 == n:
            log.info(
                "epoch %d/%d iteration %d/%d loss %.4f lr %.2e",
                epoch + 1,
                schedule.epochs,
                i + 1,
                n,
                meter.loss_sum / (i + 1),
                meter.lr,
            )
        if i + 1 == n:  # the epoch's end saves and checks for a stop signal
            break
        # Every process must take the same decision: a stop signal may reach one alone.
        stopping, timed = world.flags(job.stop.received is not None, files.save_due())
        mid_epoch = Progress(epoch, i + 1, progress.rows, progress.best_miou, meter.state())
        if stopping:
            raise job.preempted(model, mid_epoch)
        if files.resume_path and timed:
            files.save(model.trained, mid_epoch, device)
            log.info("wrote the resume state at epoch %d iteration %d", epoch + 1, i + 1)
        ready = time.time()


def end_epoch(
    job: Job, model: Model, data: TrainingData, epoch: int, meter: EpochMeter, progress: Progress
) -> Progress:
    """The epoch's log row and validation, its checkpoint, the log file, the resume state, and
    a stop signal that came during the epoch, in that order; returns the progress after it."""
    args, world, device, files = job.args, job.world, job.device, job.files
    row = meter.row(epoch, data.schedule, args.batch_size)
    best_miou, net = progress.best_miou, model.trained.net
    if (
        world.main
        and data.val_set is not None
        and ((epoch + 1) % args.eval_every == 0 or epoch + 1 == data.schedule.epochs)
    ):
        cm = accumulate_confusion(net.eval(), data.val_set, args.num_classes, 1, args.workers, device)
        row["val_miou"] = round(mean_iou(cm), 6)
        log.info("epoch %d validation mIoU %.4f", epoch + 1, row["val_miou"])
        if row["val_miou"] > best_miou:
            best_miou = row["val_miou"]
            files.stage("best", model.trained, epoch=epoch + 1, val_miou=best_miou)
    log.info(
        "epoch %d/%d done: loss %.4f, %.1f s, %.2f images/s, %.0f%% of the time waiting for data",
        epoch + 1,
        data.schedule.epochs,
        row["loss"],
        row["seconds"],
        row["images_per_s"],
        100 * row["data_wait_share"],
    )
    done = Progress(epoch + 1, 0, [*progress.rows, row], best_miou, {})
    j = data.schedule.checkpoint_at.get(epoch + 1)
    if world.main and j is not None and j < args.checkpoints:
        files.stage(j, model.trained, epoch=epoch + 1)
    if world.main:
        _write_log(files.log_path, done.rows)
    if files.resume_path:
        files.save(model.trained, done, device)
    if world.any(job.stop.received is not None):
        raise job.preempted(model, done)
    return done


def train(args: argparse.Namespace) -> None:
    world, device = distributed.start(resolve_device(args.device))
    if not world.main:  # one log: rank 0's
        log.setLevel(logging.WARNING)
    try:
        _train(args, world, device)
    finally:
        distributed.stop(world)


def _train(args: argparse.Namespace, world: distributed.World, device: torch.device) -> None:
    """Build, restore, run the epochs (saving, checkpointing and stopping as they go), publish."""
    data = build_data(args, world, device)
    model = build_trained_model(args, world, device)
    files = TrainingFiles(args, world, args.checkpoints, validating=data.val_set is not None)
    progress = files.restore(model.trained, device, data.schedule.checkpoint_at)
    if progress.iteration:
        log.info(
            "resuming from %s at epoch %d/%d iteration %d/%d",
            files.resume_path,
            progress.epoch + 1,
            data.schedule.epochs,
            progress.iteration,
            data.schedule.iters_per_epoch,
        )
    elif progress.epoch:
        log.info("resuming from %s after epoch %d/%d", files.resume_path, progress.epoch, data.schedule.epochs)
    with StopRequests() as stop:
        job = Job(args, world, device, files, stop, speed.shared_cores(device))
        for epoch in range(progress.epoch, data.schedule.epochs):
            skip = progress.iteration if epoch == progress.epoch else 0
            meter = EpochMeter.resumed(progress.running) if skip else EpochMeter()
            loader = epoch_loader(args, data.dataset, epoch, skip, world, device)
            train_one_epoch(job, model, loader, epoch, skip, data.schedule, meter, progress)
            progress = end_epoch(job, model, data, epoch, meter, progress)
    world.barrier()
    if world.main:
        files.publish(model.trained, data.schedule.epochs)


def main(argv=None) -> None:
    cli.run(train, build_parser(), argv)


if __name__ == "__main__":
    main()
