"""benchmarks/gpu_check.py where there is no GPU: it runs nothing, says so for every part, and
exits cleanly with its JSON and markdown written (the GPU machine runs the parts themselves)."""

from __future__ import annotations

import json

import helpers
import pytest
import torch

gpu_check = helpers.load("gpu_check")


@pytest.mark.skipif(torch.cuda.is_available(), reason="a CUDA device is here: the check would run")
def test_without_cuda_every_part_is_named_not_run(tmp_path, capsys):
    out = tmp_path / "gpu.json"
    gpu_check.main(["--out", str(out), "--skip", "demo"])
    result = json.loads(out.read_text())
    assert result["gpu"] == "no CUDA device"
    assert result["not_run"] == {
        "demo": "skipped (--skip)",
        **{part: "no CUDA device on this machine" for part in ("tests", "train", "label", "ddp")},
    }
    table = out.with_suffix(".md").read_text()
    assert "- not run: train: no CUDA device on this machine" in table
    assert "wrote" in capsys.readouterr().out
