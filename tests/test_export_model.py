"""stages.export_model: ONNX and TorchScript exports that give the checkpoint's masks."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from stages import export_model
from stages.seg.io import load_model, save_model
from stages.seg.models import build_model
from stages.seg.transforms import normalize


@pytest.fixture
def model_file(tmp_path):
    torch.manual_seed(0)
    spec = dict(arch="deeplabv3plus", backbone="resnet18", num_classes=4, output_stride=16, head_channels=16)
    save_model(tmp_path / "model.pt", build_model(**spec).eval(), spec)
    return tmp_path / "model.pt"


def test_the_onnx_export_gives_the_checkpoints_masks_on_images_of_odd_sizes(model_file, tmp_path, capsys):
    import onnxruntime

    export_model.main(["--model", str(model_file), "--format", "onnx", "--out", str(tmp_path / "m.onnx")])
    assert "largest class-score difference, onnx against the checkpoint" in capsys.readouterr().out
    session = onnxruntime.InferenceSession(str(tmp_path / "m.onnx"), providers=["CPUExecutionProvider"])
    model, rng = load_model(model_file), np.random.default_rng(0)
    for height, width in ((33, 47), (120, 91), (64, 64)):
        image = torch.from_numpy(rng.integers(0, 256, (1, 3, height, width), dtype=np.uint8))
        x = normalize(image)
        with torch.no_grad():
            expected = model(x).argmax(1).numpy()
        got = session.run(None, {session.get_inputs()[0].name: x.numpy()})[0].argmax(1)
        assert np.array_equal(got, expected), (height, width)


def test_the_torchscript_export_runs_alone_and_an_export_above_the_tolerance_is_refused(model_file, tmp_path):
    export_model.main(["--model", str(model_file), "--format", "torchscript", "--out", str(tmp_path / "m.pt")])
    scripted, x = torch.jit.load(str(tmp_path / "m.pt")), torch.randn(1, 3, 50, 70)
    with torch.no_grad():
        assert torch.equal(scripted(x).argmax(1), load_model(model_file)(x).argmax(1))
    with pytest.raises(SystemExit):
        export_model.main(
            [
                "--model",
                str(model_file),
                "--format",
                "torchscript",
                "--out",
                str(tmp_path / "r.pt"),
                "--tolerance",
                "-1",
            ]
        )
    assert not (tmp_path / "r.pt").exists()


def test_a_file_that_is_not_a_model_is_named(tmp_path, capsys):
    torch.save({"weights": torch.zeros(1)}, tmp_path / "other.pt")
    with pytest.raises(SystemExit):
        export_model.main(
            ["--model", str(tmp_path / "other.pt"), "--format", "onnx", "--out", str(tmp_path / "m.onnx")]
        )
    assert "not an stpp model checkpoint" in capsys.readouterr().err and not (tmp_path / "m.onnx").exists()
