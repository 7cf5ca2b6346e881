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
import os
import shutil
import time
from pathlib import Path

import torch
import torch.nn.functional as F
from torch.utils.data import DataLoader

from .seg import cli, distributed, speed
from .seg.data import DataError, EvalDataset, SeededSamples, epoch_batches, read_split_list, repeats, training_set
from .seg.files import atomic_path, load_torch, remove_stale_temporaries, save_torch, write_text
from .seg.inference import accumulate_confusion
from .seg.io import resolve_device, save_model
from .seg.metrics import mean_iou
from .seg.models import ARCHS, BACKBONES, build_model, default_head_lr_multiplier, param_groups, resolve_pretrained
from .seg.preemption import Preempted, StopRequests, ignore_stop_signals
from .seg.transforms import IGNORE_INDEX, StrongAugment, WeakAugment

log = logging.getLogger("stpp")

# data_wait_share: the part of the epoch's time the training loop waited for the DataLoader.
LOG_COLUMNS = ("epoch", "iterations", "loss", "lr", "seconds", "images_per_s", "data_wait_share", "val_miou")
# Settings that change neither the data order nor the method: a job may resume across them.
# (channels_last changes the memory order in which dropout draws its mask: a run resumed with
# another setting is as valid, not bit-identical.)
NOT_FINGERPRINTED = {
    "out_dir",
    "resume_state",
    "save_every_minutes",
    "device",
    "threads",
    "workers",
    "verbose",
    "channels_last",
    "cudnn_benchmark",
    "prefetch_factor",
    "compile",
}


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
        action=argparse.BooleanOptionalAction,
        default=True,
        help="strong augmentation on pseudo-labeled images (--no-strong: the ablation)",
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


def train_step(model, optimizer, scaler, images, masks, device, amp_dtype=None) -> float:
    """One SGD step of cross-entropy (ignore index 255); returns the loss."""
    images, masks = images.to(device, non_blocking=True), masks.to(device, non_blocking=True)
    with torch.autocast(device.type, dtype=amp_dtype or torch.float32, enabled=amp_dtype is not None):
        loss = F.cross_entropy(model(images), masks, ignore_index=IGNORE_INDEX)
    optimizer.zero_grad(set_to_none=True)
    scaler.scale(loss).backward()
    scaler.step(optimizer)
    scaler.update()
    return loss.item()


def _file_digest(path: str) -> str:
    p = Path(path)
    st = p.stat()
    if st.st_size <= 2**20:  # lists and data digests: the content
        return hashlib.sha256(p.read_bytes()).hexdigest()
    return f"{st.st_size}:{st.st_mtime_ns}"  # stores and weights are large: their size and time stand for them


# The figures of an epoch in progress, as the resume state keeps them.
EPOCH_START = {"loss_sum": 0.0, "epoch_seconds": 0.0, "data_wait": 0.0}
STATE_FORMAT = 2  # resume states of format 1 (one RNG state, no iteration) are not resumed


def fingerprint(args: argparse.Namespace, world_size: int = 1) -> str:
    settings = {k: v for k, v in sorted(vars(args).items()) if k not in NOT_FINGERPRINTED}
    settings.update(world_size=world_size, state_format=STATE_FORMAT)
    files = [args.labeled, *(f for pair in args.pseudo for f in pair), *args.data_digests]
    files += [f for f in (resolve_pretrained(args.backbone, args.pretrained), args.val) if f]
    blob = json.dumps({"settings": settings, "files": {f: _file_digest(f) for f in files}}, sort_keys=True, default=str)
    return hashlib.sha256(blob.encode()).hexdigest()


def _write_log(path: Path, rows: list[dict]) -> None:
    lines = ["\t".join(LOG_COLUMNS)]
    lines += ["\t".join(str(row.get(c, "")) for c in LOG_COLUMNS) for row in rows]
    write_text(path, "\n".join(lines) + "\n")


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
    job = TrainingJob(args, world, device)
    job.restore()
    with StopRequests() as stop:
        for epoch in range(job.start_epoch, args.epochs):
            job.run_epoch(epoch, stop)
    world.barrier()
    if world.main:
        job.publish()


class TrainingJob:
    """One training job's data, model, optimizer and resume state, and its steps: ``restore``,
    ``run_epoch`` (with ``save_state`` and ``preempted``) and ``publish``."""

    def __init__(self, args: argparse.Namespace, world: distributed.World, device: torch.device):
        self.args, self.world, self.device = args, world, device
        self.out_dir = Path(args.out_dir)
        self.spec = {
            "arch": args.arch,
            "backbone": args.backbone,
            "num_classes": args.num_classes,
            "output_stride": args.output_stride,
            "head_channels": args.head_channels,
        }
        self._build_data()
        self._build_model()
        self.val_set = (
            EvalDataset(
                args.data_root, read_split_list(args.val, need_masks=True), args.num_classes, args.ignore_labels
            )
            if args.val
            else None
        )
        self.fp = fingerprint(args, world.size)
        self._stage_files()
        self.start_epoch, self.start_iteration, self.rows, self.best_miou = 0, 0, [], -1.0
        self.carried = dict(EPOCH_START)  # the interrupted epoch's running figures
        self.saved_at: tuple[int, int] | None = None
        self.save_every, self.last_save = 60 * args.save_every_minutes, time.time()

    def _build_data(self) -> None:
        """The training set (the student's epochs set by its schedule) and its iterations."""
        args, world = self.args, self.world
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
            args.epochs = epochs  # from here on the epochs this job trains (the fingerprint has both inputs)
        self.ckpt_at = checkpoint_epochs(args.epochs, args.checkpoints)
        weak = WeakAugment(args.crop_size, args.base_size, tuple(args.scale_range))
        self.dataset = SeededSamples(
            training_set(
                args.data_root,
                labeled,
                pseudo,
                weak,
                StrongAugment() if args.strong else None,
                args.num_classes,
                args.ignore_labels,
                args.min_labeled,
            )
        )
        self.iters_per_epoch = len(self.dataset) // args.batch_size
        if self.iters_per_epoch == 0:
            raise DataError(
                f"{len(self.dataset)} training images are fewer than one batch of {args.batch_size}: lower "
                "--batch-size (train.batch_size) or raise --min-labeled (train.min_labeled)"
            )
        if args.batch_size % world.size:
            raise DataError(
                f"the batch of {args.batch_size} (train.batch_size) does not split over {world.size} "
                "processes (train.gpus): make it a multiple"
            )
        self.total_iters = args.epochs * self.iters_per_epoch
        log.info(
            "training set: %d labeled (%d after over-sampling) + %d pseudo-labeled; %d iterations/epoch on %s%s",
            len(labeled),
            len(self.dataset) - num_pseudo,
            num_pseudo,
            self.iters_per_epoch,
            self.device,
            f" and {world.size - 1} more processes" if world.size > 1 else "",
        )

    def _build_model(self) -> None:
        """The model from its own initial seed (``net``, whose weights are saved), its DDP or
        compiled wrapper (``model``, which trains), the optimizer and the precision."""
        args, world, device = self.args, self.world, self.device
        torch.manual_seed(init_seed(args.seed, args.model_name))
        net = build_model(pretrained=args.pretrained, **self.spec).to(device)
        speed.configure_backends(device, args.cudnn_benchmark)
        if speed.channels_last_wanted(args.channels_last, device, args.backbone, training=True):
            net.use_channels_last()
        model = net
        if world.size > 1:
            if args.sync_bn and device.type == "cuda":
                net = model = torch.nn.SyncBatchNorm.convert_sync_batchnorm(net)
            elif args.sync_bn:
                log.warning("SyncBatchNorm needs CUDA: on %s each process keeps its own batch norm statistics", device)
            model = torch.nn.parallel.DistributedDataParallel(
                net, device_ids=[device.index] if device.type == "cuda" else None
            )
        if args.compile:  # shares its parameters with net, whose state is saved
            log.info("torch.compile: the first iteration compiles the model")
            model = torch.compile(model)
        self.net, self.model = net, model
        head_mult = args.head_lr_multiplier
        if head_mult is None:
            head_mult = default_head_lr_multiplier(args.arch)
        self.base_lr = args.lr * args.batch_size / 16
        self.optimizer = torch.optim.SGD(
            param_groups(net, self.base_lr, head_mult),
            lr=self.base_lr,
            momentum=args.momentum,
            weight_decay=args.weight_decay,
        )
        self.amp_dtype, self.scaler = mixed_precision(args.amp, device)

    def _stage_files(self) -> None:
        """Where checkpoints and best.pt wait until training ends, and stale temporaries removed."""
        args, out_dir = self.args, self.out_dir
        self.resume_path = Path(args.resume_state) if args.resume_state else None
        staging = self.resume_path.parent if self.resume_path else out_dir / "checkpoints"
        self.staged = {j: staging / f"checkpoint_{j}.pt" for j in range(1, args.checkpoints)}
        self.staged["best"] = staging / "best.pt"
        outputs = [
            out_dir / "model.pt",
            out_dir / "train_log.tsv",
            out_dir / "best.pt",
            *self.staged.values(),
            *(out_dir / "checkpoints" / f"checkpoint_{j}.pt" for j in range(1, args.checkpoints)),
        ]
        if self.world.main:
            remove_stale_temporaries(*outputs, *([self.resume_path] if self.resume_path else []))

    def restore(self) -> None:
        """Continue from the resume state where it was made by these inputs and settings and the
        files it needs are still there; otherwise start afresh."""
        args, path = self.args, self.resume_path
        if path and path.exists():
            state = load_torch(path, "resume state")
            # The staged files of the epochs already done must still be there (nothing else removes
            # them, but a resume must never be stuck: without them, start afresh).
            lost = [
                str(self.staged[j])
                for e, j in self.ckpt_at.items()
                if j < args.checkpoints and e <= state.get("epoch", 0) and not self.staged[j].exists()
            ]
            if self.val_set is not None and state.get("best_miou", -1.0) >= 0 and not self.staged["best"].exists():
                lost.append(str(self.staged["best"]))
            if state.get("fingerprint") == self.fp and lost:
                log.warning("ignoring %s: the files it needs are gone (%s); starting afresh", path, ", ".join(lost))
            elif state.get("fingerprint") == self.fp:
                self._load(state)
            else:
                log.info("ignoring %s: it was made by other inputs or settings; starting afresh", path)
        if path and (self.start_epoch or self.start_iteration):
            self.saved_at = (self.start_epoch, self.start_iteration)

    def _load(self, state: dict) -> None:
        self.net.load_state_dict(state["model"])
        self.optimizer.load_state_dict(state["optimizer"])
        self.scaler.load_state_dict(state["scaler"])
        torch.set_rng_state(state["rng_cpu"][self.world.rank])
        if self.device.type == "cuda" and state.get("rng_cuda") is not None:
            torch.cuda.set_rng_state(state["rng_cuda"][self.world.rank], self.device)
        self.start_epoch, self.rows, self.best_miou = state["epoch"], json.loads(state["rows"]), state["best_miou"]
        self.start_iteration = state.get("iteration", 0)
        self.carried = {key: state.get(key, 0.0) for key in EPOCH_START}
        if self.start_iteration:
            log.info(
                "resuming from %s at epoch %d/%d iteration %d/%d",
                self.resume_path,
                self.start_epoch + 1,
                self.args.epochs,
                self.start_iteration,
                self.iters_per_epoch,
            )
        else:
            log.info("resuming from %s after epoch %d/%d", self.resume_path, self.start_epoch, self.args.epochs)

    def kept(self) -> str:
        """Where training would continue from, for the messages."""
        if self.saved_at is None:
            return "no resume state was written"
        epochs_done, iteration = self.saved_at
        when = f"at epoch {epochs_done + 1} iteration {iteration}" if iteration else f"after epoch {epochs_done}"
        return f"the resume state {when} is kept in {self.resume_path}"

    def save_state(self, epochs_done: int, iteration: int, running: dict) -> None:
        """The whole training state; ``iteration`` batches of epoch ``epochs_done + 1`` are done.
        Called by every process (each one's RNG state is gathered); rank 0 writes it."""
        world, device = self.world, self.device
        rng_cpu = world.gather(torch.get_rng_state())
        rng_cuda = world.gather(torch.cuda.get_rng_state(device)) if device.type == "cuda" else None
        if world.main:
            save_torch(
                {
                    "fingerprint": self.fp,
                    "epoch": epochs_done,
                    "iteration": iteration,
                    "model": self.net.state_dict(),
                    "optimizer": self.optimizer.state_dict(),
                    "scaler": self.scaler.state_dict(),
                    "rng_cpu": rng_cpu,
                    "rng_cuda": rng_cuda,
                    "rows": json.dumps(self.rows),
                    "best_miou": self.best_miou,
                    **running,
                },
                self.resume_path,
            )
        world.barrier()
        self.saved_at = (epochs_done, iteration)
        self.last_save = time.time()

    def preempted(self, signal_name: str, epochs_done: int, iteration: int, running: dict) -> Preempted:
        if not self.resume_path:
            return Preempted(f"stopped by {signal_name}; without --resume-state a re-run starts afresh")
        if self.saved_at != (epochs_done, iteration):
            self.save_state(epochs_done, iteration, running)
        return Preempted(f"stopped by {signal_name}: {self.kept()}; a re-run (Snakemake's retry) continues from it")

    def _loader(self, epoch: int, skip: int) -> DataLoader:
        """Epoch ``epoch``'s batches after the first ``skip``. Per-epoch seeds make the epoch
        reproducible wherever training (re)starts; each sample's augmentation has its own seed
        (SeededSamples), so a run resumed mid-epoch skips the batches done and continues with the
        model's RNG as it was saved. With several processes each takes its share of every batch."""
        args, world = self.args, self.world
        epoch_seed = args.seed * 1_000_003 + epoch
        if not skip:
            torch.manual_seed(epoch_seed + 7919 * world.rank)  # each process's own dropout
        self.dataset.set_epoch_seed(epoch_seed)
        batches = [world.share(b) for b in epoch_batches(len(self.dataset), args.batch_size, epoch_seed)]
        return DataLoader(
            self.dataset,
            batch_sampler=batches[skip:],
            num_workers=args.workers,
            pin_memory=self.device.type == "cuda",
            prefetch_factor=args.prefetch_factor if args.workers else None,
            generator=torch.Generator().manual_seed(epoch_seed),  # not the model's RNG
            worker_init_fn=ignore_stop_signals if args.workers else None,
        )

    def _running(self) -> dict:
        """The epoch in progress's figures, as the resume state keeps them."""
        return {
            "loss_sum": self.loss_sum,
            "epoch_seconds": self.prior_seconds + time.time() - self.t0,
            "data_wait": self.data_wait,
        }

    def run_epoch(self, epoch: int, stop: StopRequests) -> None:
        """Train one epoch (or its rest, after a resume mid-epoch), then end it (``_end_epoch``).
        A stop signal saves the state at once and raises Preempted; so does the timed save."""
        world = self.world
        skip = self.start_iteration if epoch == self.start_epoch else 0
        loader = self._loader(epoch, skip)
        self.model.train()
        start = self.carried if skip else EPOCH_START
        self.t0, self.lr = time.time(), self.base_lr
        self.loss_sum, self.prior_seconds, self.data_wait = (
            start["loss_sum"],
            start["epoch_seconds"],
            start["data_wait"],
        )
        ready = time.time()
        for i, (images, masks) in enumerate(loader, start=skip):
            self.data_wait += time.time() - ready
            self._step(epoch, i, images, masks)
            if i + 1 == self.iters_per_epoch:  # the epoch's end saves and checks for a stop signal
                break
            # Every process must take the same decision: a stop signal may reach one alone.
            stopping, timed = world.flags(
                stop.received is not None,
                bool(self.save_every) and time.time() - self.last_save >= self.save_every,
            )
            if stopping:
                raise self.preempted(stop.received or "a stop signal", epoch, i + 1, self._running())
            if self.resume_path and timed:
                self.save_state(epoch, i + 1, self._running())
                log.info("wrote the resume state at epoch %d iteration %d", epoch + 1, i + 1)
            ready = time.time()
        self._end_epoch(epoch, stop)

    def _step(self, epoch: int, i: int, images, masks) -> None:
        """One SGD step at the poly learning rate of its iteration; a loss that is not finite stops."""
        args = self.args
        iteration = epoch * self.iters_per_epoch + i
        for group in self.optimizer.param_groups:
            group["lr"] = poly_lr(group["base_lr"], iteration, self.total_iters, args.poly_power)
        self.lr = self.optimizer.param_groups[0]["lr"]
        loss = self.world.mean(
            train_step(self.model, self.optimizer, self.scaler, images, masks, self.device, self.amp_dtype)
        )
        if not math.isfinite(loss):
            raise FloatingPointError(
                f"training diverged: the loss is {loss} at epoch {epoch + 1} iteration {i + 1}; {self.kept()}. "
                f"Lower train.lr (now {args.lr}){', or use amp: bf16 or none' if args.amp == 'fp16' else ''} "
                "and re-run"
            )
        self.loss_sum += loss
        if (i + 1) % max(1, self.iters_per_epoch // 5) == 0 or i + 1 == self.iters_per_epoch:
            log.info(
                "epoch %d/%d iteration %d/%d loss %.4f lr %.2e",
                epoch + 1,
                args.epochs,
                i + 1,
                self.iters_per_epoch,
                self.loss_sum / (i + 1),
                self.lr,
            )

    def _end_epoch(self, epoch: int, stop: StopRequests) -> None:
        """The epoch's log row and validation, its checkpoint, the log file, the resume state, and
        a stop signal that came during the epoch, in that order."""
        args, world, net = self.args, self.world, self.net
        seconds = self.prior_seconds + time.time() - self.t0
        n = self.iters_per_epoch
        row = {
            "epoch": epoch + 1,
            "iterations": (epoch + 1) * n,
            "loss": round(self.loss_sum / n, 6),
            "lr": f"{self.lr:.6g}",
            "seconds": round(seconds, 3),
            "images_per_s": round(n * args.batch_size / seconds, 3),
            "data_wait_share": round(self.data_wait / seconds, 4),
            "val_miou": "",
        }
        if world.main and self.val_set is not None and ((epoch + 1) % args.eval_every == 0 or epoch + 1 == args.epochs):
            cm = accumulate_confusion(net.eval(), self.val_set, args.num_classes, 1, args.workers, self.device)
            row["val_miou"] = round(mean_iou(cm), 6)
            log.info("epoch %d validation mIoU %.4f", epoch + 1, row["val_miou"])
            if row["val_miou"] > self.best_miou:
                self.best_miou = row["val_miou"]
                save_model(self.staged["best"], net, self.spec, epoch=epoch + 1, val_miou=self.best_miou)
        self.rows.append(row)
        log.info(
            "epoch %d/%d done: loss %.4f, %.1f s, %.2f images/s, %.0f%% of the time waiting for data",
            epoch + 1,
            args.epochs,
            row["loss"],
            seconds,
            row["images_per_s"],
            100 * row["data_wait_share"],
        )
        j = self.ckpt_at.get(epoch + 1)
        if world.main and j is not None and j < args.checkpoints:
            save_model(self.staged[j], net, self.spec, epoch=epoch + 1)
        if world.main:
            _write_log(self.out_dir / "train_log.tsv", self.rows)
        if self.resume_path:
            self.save_state(epoch + 1, 0, EPOCH_START)
        if world.any(stop.received is not None):
            raise self.preempted(stop.received or "a stop signal", epoch + 1, 0, EPOCH_START)

    def publish(self) -> None:
        """Rank 0, after the last epoch: the staged checkpoints and best.pt into --out-dir, then
        model.pt; only then the resume state and the staged files go."""
        args, out_dir = self.args, self.out_dir
        published = [
            (self.staged[j], out_dir / "checkpoints" / f"checkpoint_{j}.pt") for j in range(1, args.checkpoints)
        ]
        if self.val_set is not None:
            published.append((self.staged["best"], out_dir / "best.pt"))
        for src, dst in published:
            _publish(src, dst)
        save_model(out_dir / "model.pt", self.net, self.spec, epoch=args.epochs)
        log.info("wrote %s", out_dir / "model.pt")
        # Finished: the outputs are the state now. The resume state goes first, its staged files after.
        resume = [self.resume_path] if self.resume_path else []
        for path in [*resume, *(src for src, dst in published if src != dst)]:
            if path.exists():
                os.remove(path)


def _publish(src: Path, dst: Path) -> None:
    """Put a staged file at ``dst`` and keep ``src``: a hard link where possible, else a copy."""
    if src == dst:
        return
    with atomic_path(dst) as tmp:
        try:
            os.link(src, tmp)
        except OSError:  # another file system, or one without hard links
            shutil.copyfile(src, tmp)


def main(argv=None) -> None:
    cli.run(train, build_parser(), argv)


if __name__ == "__main__":
    main()
