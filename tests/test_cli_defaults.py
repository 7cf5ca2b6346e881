"""A stage run by hand behaves as the workflow runs it: each option's default is the schema's
default of the config key the rules pass to it."""

from __future__ import annotations

import pytest
import yaml
from helpers import REPO

from stages import check_data, evaluate, label, score, split, train

SCHEMA = yaml.safe_load((REPO / "config" / "config.schema.yaml").read_text())

# stage parser -> {option dest: config key (experiment keys without "experiments.<name>.")}
SPEED = {
    "channels_last": "speed.channels_last",
    "cudnn_benchmark": "speed.cudnn_benchmark",
    "prefetch_factor": "speed.prefetch_factor",
    "adapt_threads": "speed.adapt_threads",
}
INFERENCE = {**SPEED, "fold_batch_norm": "speed.fold_batch_norm", "amp": "speed.inference_amp", "device": "device"}
TTA = {
    "scales": "label.scales",
    "flip": "label.flip",
    "resize_logits": "label.resize_logits",
    "tta_geometry": "label.tta_geometry",
}
STAGES = {
    "train": (
        train.build_parser,
        {
            **SPEED,
            "compile": "speed.compile",
            "device": "device",
            "arch": "model.arch",
            "backbone": "model.backbone",
            "output_stride": "model.output_stride",
            "pretrained": "model.pretrained",
            "head_channels": "model.head_channels",
            "epochs": "train.epochs",
            "batch_size": "train.batch_size",
            "lr": "train.lr",
            "head_lr_multiplier": "train.head_lr_multiplier",
            "momentum": "train.momentum",
            "weight_decay": "train.weight_decay",
            "poly_power": "train.poly_power",
            "crop_size": "train.crop_size",
            "base_size": "train.base_size",
            "scale_range": "train.scale_range",
            "min_labeled": "train.min_labeled",
            "strong": "train.strong_augmentation",
            "strong_ops": "train.strong_ops",
            "labeled_cutout": "train.labeled_cutout",
            "seed": "train.seed",
            "amp": "train.amp",
            "workers": "train.workers",
            "sync_bn": "train.sync_bn",
            "save_every_minutes": "train.save_every_minutes",
        },
    ),
    "label": (label.build_parser, {**INFERENCE, **TTA, "batch_size": "label.batch_size"}),
    "score": (score.build_parser, {**INFERENCE, **TTA, "tta": "stpp.score_tta", "batch_size": "label.batch_size"}),
    "evaluate": (evaluate.build_parser, {**INFERENCE, "window": "evaluate.window", "stride": "evaluate.stride"}),
    "check_data": (
        check_data.build_parser,
        {
            "min_labeled": "train.min_labeled",
            "batch_size": "train.batch_size",
            "crop_size": "train.crop_size",
            "base_size": "train.base_size",
            "scale_range": "train.scale_range",
        },
    ),
    "split": (split.build_parser, {"ratio": "stpp.reliable_ratio", "selection": "stpp.selection"}),
}


def schema_default(key: str):
    node = (
        SCHEMA["$defs"]["experiment"]
        if key.split(".")[0] in {"model", "train", "stpp", "label", "evaluate"}
        else SCHEMA
    )
    for part in key.split("."):
        node = node["properties"][part]
    return node["default"]


def cli_value(value):
    """As the rules pass it: YAML's true / false of channels_last become on / off, tuples lists."""
    return {True: "on", False: "off"}.get(value, value) if isinstance(value, bool) else value


@pytest.mark.parametrize("stage", STAGES)
def test_stage_defaults_are_the_schemas(stage):
    build, options = STAGES[stage]
    parser = build()
    differ = []
    for dest, key in options.items():
        ours, theirs = parser.get_default(dest), schema_default(key)
        if isinstance(ours, tuple):
            ours = list(ours)
        if dest == "channels_last":
            theirs = cli_value(theirs)
        if ours != theirs:
            differ.append(f"--{dest.replace('_', '-')} {ours!r} against {key} {theirs!r}")
    assert not differ, f"stages.{stage}: " + "; ".join(differ)
