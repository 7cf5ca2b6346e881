"""The arguments of a tiny stages.train run, shared by the tests that train (not a test module)."""

from __future__ import annotations

from pathlib import Path


def train_args(root: Path, out: Path, *, num_classes: int, crop: int, batch: int = 2, min_labeled: int = 8, **options):
    """stages.train on ``root``'s labeled list into ``out``: ResNet-18 from random init, no
    DataLoader workers, on the CPU; each further ``key=value`` becomes ``--key value``."""
    settings = {
        "labeled": root / "labeled.txt",
        "data_root": root,
        "num_classes": num_classes,
        "out_dir": out,
        "backbone": "resnet18",
        "crop_size": crop,
        "batch_size": batch,
        "workers": 0,
        "min_labeled": min_labeled,
        "device": "cpu",
        **options,
    }
    return [token for key, value in settings.items() for token in (f"--{key.replace('_', '-')}", str(value))]
