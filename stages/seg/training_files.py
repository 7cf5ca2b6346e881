"""A training job's files beside the training itself: the resume fingerprint, where checkpoints
and best.pt wait until training ends (staging), the resume state (restore and save), and
publishing the outputs into ``--out-dir`` at the end (stages/train.py).

Checkpoints and ``best.pt`` are kept beside the resume state until training ends: Snakemake
deletes a failed job's declared outputs, and a resumed run still needs the checkpoints of the
epochs it will not repeat. At the end they are hard-linked (or copied) into ``--out-dir``,
``model.pt`` is written, and only then are the resume state and the staged files removed, so a
kill at any moment leaves a state that the next run resumes or restarts from.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import logging
import os
import shutil
import time
from dataclasses import dataclass, field
from pathlib import Path

import torch

from ..workflow.layout import BEST_FILE, LOG_FILE, MODEL_FILE, checkpoint_file
from . import distributed
from .files import atomic_path, load_torch, remove_stale_temporaries, save_torch
from .io import save_model
from .models import resolve_pretrained

log = logging.getLogger("stpp")

STATE_FORMAT = 2  # resume states of format 1 (one RNG state, no iteration) are not resumed
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
    "class_names",  # recorded in the checkpoints for their users (stages.predict), not learned
    "palette",
}


def _file_digest(path: str) -> str:
    p = Path(path)
    st = p.stat()
    if st.st_size <= 2**20:  # lists and data digests: the content
        return hashlib.sha256(p.read_bytes()).hexdigest()
    return f"{st.st_size}:{st.st_mtime_ns}"  # stores and weights are large: their size and time stand for them


def fingerprint(args: argparse.Namespace, world_size: int = 1) -> str:
    """What a resume state must have been made by: the settings and the input files' digests."""
    settings = {k: v for k, v in sorted(vars(args).items()) if k not in NOT_FINGERPRINTED}
    settings.update(world_size=world_size, state_format=STATE_FORMAT)
    files = [args.labeled, *(f for pair in args.pseudo for f in pair), *args.data_digests]
    files += [f for f in (resolve_pretrained(args.backbone, args.pretrained), args.val) if f]
    blob = json.dumps({"settings": settings, "files": {f: _file_digest(f) for f in files}}, sort_keys=True, default=str)
    return hashlib.sha256(blob.encode()).hexdigest()


@dataclass
class Progress:
    """Where training stands: ``epoch`` epochs and ``iteration`` batches of the next are done,
    the log's rows so far, the best validation mIoU (-1: none yet), and the running figures of
    the epoch in progress (EpochMeter.state)."""

    epoch: int = 0
    iteration: int = 0
    rows: list = field(default_factory=list)
    best_miou: float = -1.0
    running: dict = field(default_factory=dict)


@dataclass
class Trained:
    """What the resume state holds besides the progress: the weights and the optimizer's state."""

    net: torch.nn.Module
    optimizer: torch.optim.Optimizer
    scaler: torch.amp.GradScaler
    spec: dict  # the model's constructor arguments, saved with every checkpoint
    labels: dict = field(default_factory=dict)  # class names and palette, saved for the model's users


class TrainingFiles:
    """The files of one training job: its output folder, its resume state and the staged
    checkpoints; ``restore``, ``save``, ``preempted`` and ``publish``."""

    def __init__(self, args: argparse.Namespace, world: distributed.World, checkpoints: int, validating: bool):
        self.out_dir, self.world, self.validating = Path(args.out_dir), world, validating
        self.fingerprint = fingerprint(args, world.size)
        self.resume_path = Path(args.resume_state) if args.resume_state else None
        staging = self.resume_path.parent if self.resume_path else self.out_dir / Path(checkpoint_file(1)).parent
        self.staged = {j: staging / Path(checkpoint_file(j)).name for j in range(1, checkpoints)}
        self.staged["best"] = staging / BEST_FILE
        self.published = {j: self.out_dir / checkpoint_file(j) for j in range(1, checkpoints)}
        if validating:
            self.published["best"] = self.out_dir / BEST_FILE
        self.log_path = self.out_dir / LOG_FILE
        self.saved_at: tuple[int, int] | None = None  # (epochs done, iteration) of the last save
        self.save_every, self.last_save = 60 * args.save_every_minutes, time.time()
        outputs = [self.out_dir / MODEL_FILE, self.log_path, self.out_dir / BEST_FILE, *self.staged.values()]
        if world.main:
            remove_stale_temporaries(
                *outputs, *self.published.values(), *([self.resume_path] if self.resume_path else [])
            )

    def restore(self, trained: Trained, device: torch.device, checkpoint_at: dict[int, int]) -> Progress:
        """The progress of the resume state, its weights and optimizer loaded, where it was made
        by these inputs and settings and the files it needs are still there; otherwise a fresh
        start."""
        path, progress = self.resume_path, Progress()
        if path and path.exists():
            state = load_torch(path, "resume state")
            # The staged files of the epochs already done must still be there (nothing else removes
            # them, but a resume must never be stuck: without them, start afresh).
            lost = [
                str(self.staged[j])
                for e, j in checkpoint_at.items()
                if j in self.staged and e <= state.get("epoch", 0) and not self.staged[j].exists()
            ]
            if self.validating and state.get("best_miou", -1.0) >= 0 and not self.staged["best"].exists():
                lost.append(str(self.staged["best"]))
            if state.get("fingerprint") == self.fingerprint and lost:
                log.warning("ignoring %s: the files it needs are gone (%s); starting afresh", path, ", ".join(lost))
            elif state.get("fingerprint") == self.fingerprint:
                progress = self._load(state, trained, device)
            else:
                log.info("ignoring %s: it was made by other inputs or settings; starting afresh", path)
        if path and (progress.epoch or progress.iteration):
            self.saved_at = (progress.epoch, progress.iteration)
        return progress

    def _load(self, state: dict, trained: Trained, device: torch.device) -> Progress:
        trained.net.load_state_dict(state["model"])
        trained.optimizer.load_state_dict(state["optimizer"])
        trained.scaler.load_state_dict(state["scaler"])
        torch.set_rng_state(state["rng_cpu"][self.world.rank])
        if device.type == "cuda" and state.get("rng_cuda") is not None:
            torch.cuda.set_rng_state(state["rng_cuda"][self.world.rank], device)
        running = {key: state[key] for key in ("loss_sum", "epoch_seconds", "data_wait") if key in state}
        return Progress(
            state["epoch"], state.get("iteration", 0), json.loads(state["rows"]), state["best_miou"], running
        )

    def kept(self) -> str:
        """Where training would continue from, for the messages."""
        if self.saved_at is None:
            return "no resume state was written"
        epochs_done, iteration = self.saved_at
        when = f"at epoch {epochs_done + 1} iteration {iteration}" if iteration else f"after epoch {epochs_done}"
        return f"the resume state {when} is kept in {self.resume_path}"

    def save_due(self) -> bool:
        """Whether --save-every-minutes has passed since the last save."""
        return bool(self.save_every) and time.time() - self.last_save >= self.save_every

    def save(self, trained: Trained, progress: Progress, device: torch.device) -> None:
        """The whole training state at ``progress``. Called by every process (each one's RNG
        state is gathered); rank 0 writes it."""
        world = self.world
        rng_cpu = world.gather(torch.get_rng_state())
        rng_cuda = world.gather(torch.cuda.get_rng_state(device)) if device.type == "cuda" else None
        if world.main:
            save_torch(
                {
                    "fingerprint": self.fingerprint,
                    "epoch": progress.epoch,
                    "iteration": progress.iteration,
                    "model": trained.net.state_dict(),
                    "optimizer": trained.optimizer.state_dict(),
                    "scaler": trained.scaler.state_dict(),
                    "rng_cpu": rng_cpu,
                    "rng_cuda": rng_cuda,
                    "rows": json.dumps(progress.rows),
                    "best_miou": progress.best_miou,
                    **progress.running,
                },
                self.resume_path,
            )
        world.barrier()
        self.saved_at = (progress.epoch, progress.iteration)
        self.last_save = time.time()

    def stage(self, key, trained: Trained, **meta) -> None:
        """Rank 0: checkpoint j (or "best") into staging until training ends."""
        save_model(self.staged[key], trained.net, trained.spec, **trained.labels, **meta)

    def publish(self, trained: Trained, epochs: int) -> None:
        """Rank 0, after the last epoch: the staged checkpoints and best.pt into --out-dir, then
        model.pt; only then the resume state and the staged files go."""
        for key, dst in self.published.items():
            _publish(self.staged[key], dst)
        save_model(self.out_dir / MODEL_FILE, trained.net, trained.spec, **trained.labels, epoch=epochs)
        log.info("wrote %s", self.out_dir / MODEL_FILE)
        # Finished: the outputs are the state now. The resume state goes first, its staged files after.
        resume = [self.resume_path] if self.resume_path else []
        for path in [*resume, *(self.staged[key] for key, dst in self.published.items() if self.staged[key] != dst)]:
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
