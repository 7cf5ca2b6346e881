"""Export a trained model for serving: ONNX or TorchScript, checked against the checkpoint.

    python -m stages.export_model --model results/demo/stpp_student2/model.pt --format onnx \\
        --out stpp.onnx [--tolerance 1e-3]

The exported model takes a float batch (N, 3, H, W), RGB normalised with the ImageNet mean and
std, with the batch, height and width free, and returns class scores (N, C, H, W) at the input's
size: argmax over C is the mask. After exporting, the exported model (ONNX Runtime for ONNX) and
the checkpoint run on samples of other sizes than the export's, and the largest difference of
their class scores is printed; above ``--tolerance`` the export is refused (exit 1) and nothing is
written. ONNX export needs the packages of the ``export`` extra (onnx, onnxscript, onnxruntime).
"""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
import torch

from .seg import cli
from .seg.files import atomic_path
from .seg.io import load_model
from .seg.splits import DataError

log = logging.getLogger("stpp")

EXPORT_SIZE = (64, 80)  # the traced or exported sample; the checks use other sizes
CHECK_SIZES = ((1, 97, 131), (2, 64, 48))  # (batch, height, width), odd sizes among them


def build_parser():
    p = cli.parser(__doc__.split("\n\n")[0])
    p.add_argument("--model", required=True, help="a model.pt written by the workflow (stages.train)")
    p.add_argument("--format", choices=("onnx", "torchscript"), required=True)
    p.add_argument("--out", required=True, help="the file to write (.onnx, .pt)")
    p.add_argument("--tolerance", type=float, default=1e-3, help="the largest class-score difference accepted")
    p.add_argument("--verbose", action="store_true", help="debug logging")
    return p


def export_onnx(model: torch.nn.Module, path: Path) -> None:
    try:
        import onnxscript  # noqa: F401  (torch.onnx's exporter needs it)
    except ImportError:
        raise DataError("ONNX export needs onnx and onnxscript: pip install -e '.[export]'") from None
    sample = torch.randn(1, 3, *EXPORT_SIZE)
    size = {0: torch.export.Dim("batch"), 2: torch.export.Dim("height", min=16), 3: torch.export.Dim("width", min=16)}
    torch.onnx.export(model, (sample,), str(path), dynamic_shapes={"x": size}, dynamo=True)


def onnx_runner(path: Path):
    try:
        import onnxruntime
    except ImportError:
        raise DataError("checking an ONNX export needs onnxruntime: pip install -e '.[export]'") from None
    session = onnxruntime.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    name = session.get_inputs()[0].name
    return lambda x: session.run(None, {name: x.numpy()})[0]


def export_torchscript(model: torch.nn.Module, path: Path) -> None:
    with torch.no_grad():
        traced = torch.jit.trace(model, torch.randn(1, 3, *EXPORT_SIZE))
    traced.save(str(path))


def largest_difference(model: torch.nn.Module, run) -> float:
    """The largest class-score difference of the exported model and the checkpoint's, over
    samples of sizes other than the export's."""
    generator, worst = torch.Generator().manual_seed(0), 0.0
    for batch, height, width in CHECK_SIZES:
        x = torch.randn(batch, 3, height, width, generator=generator)
        with torch.no_grad():
            expected = model(x).numpy()
        got = np.asarray(run(x))
        if got.shape != expected.shape:
            raise DataError(
                f"the exported model gave shape {got.shape} for {tuple(x.shape)}, the checkpoint {expected.shape}"
            )
        worst = max(worst, float(np.abs(got - expected).max()))
    return worst


def export_model(args) -> None:
    try:
        model = load_model(args.model, "cpu")
    except (ValueError, FileNotFoundError) as err:
        raise DataError(f"--model {args.model}: {err}; give a model.pt that the workflow wrote") from None
    out = Path(args.out)
    with atomic_path(out) as tmp:
        if args.format == "onnx":
            export_onnx(model, tmp)
            run = onnx_runner(tmp)
        else:
            export_torchscript(model, tmp)
            loaded = torch.jit.load(str(tmp))
            run = lambda x: loaded(x).detach().numpy()  # noqa: E731
        worst = largest_difference(model, run)
        print(f"largest class-score difference, {args.format} against the checkpoint: {worst:.3g}")
        if worst > args.tolerance:
            raise DataError(
                f"the {args.format} export differs from the checkpoint by {worst:.3g} (--tolerance {args.tolerance}); "
                "nothing was written"
            )
    log.info("wrote %s (%s, batch, height and width free)", out, args.format)


def main(argv=None) -> None:
    cli.run(export_model, build_parser(), argv)


if __name__ == "__main__":
    main()
