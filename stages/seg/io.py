"""Model checkpoints and device choice (file writes and torch files: :mod:`.files`)."""

from __future__ import annotations

import os
import re
from typing import Any

import torch

from .files import load_torch, save_torch
from .models import build_model

# A checkpoint is a plain dict of tensors and primitives so that it loads with
# weights_only=True: the model's state dict plus what is needed to rebuild the model.
MODEL_KEYS = ("arch", "backbone", "num_classes", "output_stride", "head_channels")
# Keys a checkpoint from an earlier version may lack, with the value that version meant.
MODEL_KEY_DEFAULTS = {"head_channels": None}


def save_model(path: str | os.PathLike, model: torch.nn.Module, spec: dict, **extra: Any) -> None:
    state = {k: v.detach().cpu() for k, v in model.state_dict().items()}
    save_torch({"model": state, **{k: spec[k] for k in MODEL_KEYS}, **extra}, path)


def load_model(path: str | os.PathLike, device: torch.device | str = "cpu",
               num_classes: int | None = None) -> torch.nn.Module:
    """Rebuild a model from a checkpoint written by :func:`save_model`, in eval mode.

    With ``num_classes``, a checkpoint for another number of classes is refused: its predictions
    would be counted against the wrong classes without any error."""
    ckpt = load_torch(path, "model checkpoint")
    ckpt = {**MODEL_KEY_DEFAULTS, **ckpt}
    missing = [k for k in ("model", *MODEL_KEYS) if k not in ckpt]
    if missing:
        raise ValueError(f"{path} is not an stpp model checkpoint (missing {missing})")
    if num_classes is not None and ckpt["num_classes"] != num_classes:
        raise ValueError(f"{path} is a model for {ckpt['num_classes']} classes, but {num_classes} were asked for "
                         "(--num-classes, data.num_classes in the config): use this data set's model or fix "
                         "num_classes")
    model = build_model(**{k: ckpt[k] for k in MODEL_KEYS})
    model.load_state_dict(ckpt["model"])
    return model.to(device).eval()


def resolve_device(name: str = "auto") -> torch.device:
    """``auto`` picks CUDA when present, else CPU; ``cuda`` without a GPU is an error."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if not re.fullmatch(r"cpu|cuda(:\d+)?", name):
        raise ValueError(f"device {name!r} is not one of auto, cpu, cuda, cuda:N (--device, device in the config)")
    device = torch.device(name)
    if device.type == "cuda" and not torch.cuda.is_available():
        raise RuntimeError("device 'cuda' was asked for but no CUDA GPU is visible; use 'auto' or 'cpu'")
    return device
