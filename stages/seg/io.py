"""Model checkpoints and device choice (file writes and torch files: :mod:`.files`)."""

from __future__ import annotations

import logging
import os
import re
from pathlib import Path
from typing import Any

import torch

from .files import load_torch, save_torch
from .models import build_model

# A checkpoint is a plain dict of tensors and primitives so that it loads with
# weights_only=True: the model's state dict plus what is needed to rebuild the model.
# factory and kwargs (a JSON object): a custom model's (model.arch: custom), so that every stage
# rebuilds it from the checkpoint alone.
MODEL_KEYS = ("arch", "backbone", "num_classes", "output_stride", "head_channels", "factory", "kwargs")
# Keys a checkpoint from an earlier version may lack, with the value that version meant.
MODEL_KEY_DEFAULTS = {"head_channels": None, "factory": None, "kwargs": None}

log = logging.getLogger("stpp")


def save_model(path: str | os.PathLike, model: torch.nn.Module, spec: dict, **extra: Any) -> None:
    state = {k: v.detach().cpu() for k, v in model.state_dict().items()}
    save_torch({"model": state, **{k: spec.get(k) for k in MODEL_KEYS}, **extra}, path)


def load_model(
    path: str | os.PathLike, device: torch.device | str = "cpu", num_classes: int | None = None
) -> torch.nn.Module:
    """Rebuild a model from a checkpoint written by :func:`save_model`, in eval mode.

    With ``num_classes``, a checkpoint for another number of classes is refused: its predictions
    would be counted against the wrong classes without any error."""
    ckpt = load_torch(path, "model checkpoint")
    ckpt = {**MODEL_KEY_DEFAULTS, **ckpt}
    missing = [k for k in ("model", *MODEL_KEYS) if k not in ckpt]
    if missing:
        raise ValueError(f"{path} is not an stpp model checkpoint (missing {missing})")
    if num_classes is not None and ckpt["num_classes"] != num_classes:
        raise ValueError(
            f"{path} is a model for {ckpt['num_classes']} classes, but {num_classes} were asked for "
            "(--num-classes, data.num_classes in the config): use this data set's model or fix "
            "num_classes"
        )
    model = build_model(**{k: ckpt[k] for k in MODEL_KEYS})
    model.load_state_dict(ckpt["model"])
    return model.to(device).eval()


def model_labels(path: str | os.PathLike) -> dict:
    """The class names and palette a checkpoint records ({} for one written before they were)."""
    ckpt = load_torch(path, "model checkpoint")
    return {key: ckpt[key] for key in ("class_names", "palette") if ckpt.get(key)}


def resolve_device(name: str = "auto") -> torch.device:
    """``auto`` picks CUDA when present, else CPU; ``cuda`` without a GPU is an error.

    ``auto`` or ``cuda`` on a machine whose several GPUs are all visible to the job (a
    workstation running ``snakemake --resources gpu=N``, which counts GPUs but does not assign
    them) claims a GPU no other stpp job holds (:func:`claim_gpu`), so that N jobs at once use N
    devices, not all cuda:0. A scheduler that gives each job its own devices (SLURM sets
    ``CUDA_VISIBLE_DEVICES``) and ``cuda:N`` are used as they are."""
    if name == "auto":
        name = "cuda" if torch.cuda.is_available() else "cpu"
    if not re.fullmatch(r"cpu|cuda(:\d+)?", name):
        raise ValueError(f"device {name!r} is not one of auto, cpu, cuda, cuda:N (--device, device in the config)")
    device = torch.device(name)
    if device.type == "cuda" and not torch.cuda.is_available():
        raise RuntimeError("device 'cuda' was asked for but no CUDA GPU is visible; use 'auto' or 'cpu'")
    if (
        name == "cuda"
        and "CUDA_VISIBLE_DEVICES" not in os.environ
        and "LOCAL_RANK" not in os.environ
        and torch.cuda.device_count() > 1
    ):  # torchrun's processes use cuda:LOCAL_RANK
        device = torch.device("cuda", claim_gpu(torch.cuda.device_count()))
    return device


_claimed: list = []  # open lock files: a claim lasts as long as the process


def claim_gpu(count: int, lock_dir: str | os.PathLike | None = None) -> int:
    """The index of a GPU that no other live process has claimed, by an exclusive ``flock`` on
    ``<lock_dir>/gpu<i>.lock`` (default ``$STPP_GPU_LOCK_DIR`` or ``/tmp/stpp-gpu-locks-<uid>``).
    The lock is held until the process ends, however it ends. With every GPU claimed (more jobs
    than GPUs), GPU 0 is shared."""
    import fcntl

    folder = Path(lock_dir or os.environ.get("STPP_GPU_LOCK_DIR") or f"/tmp/stpp-gpu-locks-{os.getuid()}")
    folder.mkdir(parents=True, exist_ok=True)
    for index in range(count):
        handle = open(folder / f"gpu{index}.lock", "a")
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            handle.close()
            continue
        _claimed.append(handle)
        return index
    log.warning(
        "all %d GPUs are claimed by other stpp jobs (more GPU jobs than GPUs: --resources gpu=N with N "
        "above the GPU count?); sharing cuda:0",
        count,
    )
    return 0
