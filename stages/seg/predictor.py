"""Use a trained model from Python: load a checkpoint and segment images.

    from stages.seg.predictor import Predictor
    predictor = Predictor.load("results/demo/stpp_student2/model.pt")  # its class names and palette too
    mask = predictor(Image.open("photo.jpg"))              # (H, W) uint8 class indices
    mask = predictor(Image.open("photo.jpg"), tta=True)    # the paper's TTA (scales x flip)
    Image.fromarray(predictor.overlay(Image.open("photo.jpg"), mask)).save("overlay.png")

``stages.predict`` (a folder, a list or files to masks, colour masks and overlays) is this class
over many images. The model is in eval mode on the chosen device with the inference switches of
``seg.speed`` (batch norm folded, channels-last where it pays).
"""

from __future__ import annotations

import argparse
import os
from typing import Sequence

import numpy as np
import torch
from PIL import Image

from . import speed
from .cli import DEFAULT_TTA_SCALES
from .images import colour, overlay
from .inference import predict
from .io import load_model, model_labels, resolve_device
from .palettes import palette as load_palette


def as_rgb_tensor(image) -> torch.Tensor:
    """uint8 (3, H, W) of a PIL image (any mode: grayscale and RGBA become RGB) or an (H, W, 3)
    uint8 array."""
    if isinstance(image, Image.Image):
        image = np.asarray(image.convert("RGB"))
    array = np.asarray(image)
    if array.ndim != 3 or array.shape[2] != 3 or array.dtype != np.uint8:
        raise ValueError(f"expected an RGB image: a PIL image or an (H, W, 3) uint8 array, got {array.shape}")
    return torch.from_numpy(array.copy()).permute(2, 0, 1)


class Predictor:
    """A trained model, ready to segment images (see the module's example)."""

    def __init__(
        self,
        model: torch.nn.Module,
        device: torch.device,
        class_names: Sequence[str] | None = None,
        palette: str = "pascal",
        amp_dtype: torch.dtype | None = None,
    ):
        self.model, self.device, self.amp_dtype = model, device, amp_dtype
        self.class_names = list(class_names) if class_names else None
        self.colours = load_palette(palette)

    @classmethod
    def load(
        cls,
        path: str | os.PathLike,
        device: str = "auto",
        class_names: Sequence[str] | None = None,
        palette: str | None = None,
        num_classes: int | None = None,
        amp: str = "none",
        fold_batch_norm: bool = True,
        channels_last: str = "auto",
    ) -> Predictor:
        """The checkpoint of ``path`` (written by stages.train), on ``device``, with the class
        names and palette it records unless given. ``num_classes`` refuses a model for another
        number of classes."""
        recorded = model_labels(path)
        class_names = class_names or recorded.get("class_names")
        palette = palette or recorded.get("palette") or "pascal"
        where = resolve_device(device)
        switches = argparse.Namespace(
            fold_batch_norm=fold_batch_norm, channels_last=channels_last, cudnn_benchmark=True
        )
        model = speed.for_inference(load_model(path, where, num_classes), where, switches)
        if class_names is not None and num_classes is not None and len(class_names) != num_classes:
            raise ValueError(f"{len(class_names)} class names for {num_classes} classes")
        return cls(model, where, class_names, palette, speed.amp_dtype(amp, where))

    def predict_batch(
        self,
        images: torch.Tensor,
        tta: bool = False,
        scales: Sequence[float] = DEFAULT_TTA_SCALES,
        flip: bool = True,
        window: int | None = None,
        stride: int | None = None,
        geometry: str = "rounded",
    ) -> torch.Tensor:
        """Masks (N, H, W) uint8 of uint8 images (N, 3, H, W) of one size: plain, TTA (the
        summed softmax over ``scales`` x ``flip``, resized by ``geometry``: label.tta_geometry),
        or a sliding window of ``window`` pixels."""
        return predict(
            self.model,
            images.to(self.device),
            scales=list(scales) if tta else None,
            flip=flip and tta,
            window=window,
            stride=stride,
            amp_dtype=self.amp_dtype,
            geometry=geometry,
        ).cpu()

    def __call__(self, image, **options) -> np.ndarray:
        """The (H, W) uint8 mask of one image (a PIL image or an RGB uint8 array); ``options``
        as :meth:`predict_batch`'s."""
        return self.predict_batch(as_rgb_tensor(image)[None], **options)[0].numpy()

    def colour(self, mask: np.ndarray) -> np.ndarray:
        """(H, W, 3) uint8: each pixel in its class's colour."""
        return colour(np.asarray(mask), self.colours)

    def overlay(self, image, mask: np.ndarray) -> np.ndarray:
        """The image with its mask's colours over it, half and half (ignored pixels: the image)."""
        return overlay(as_rgb_tensor(image).permute(1, 2, 0).numpy(), np.asarray(mask), self.colours)
