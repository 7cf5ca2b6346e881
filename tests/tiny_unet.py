"""A tiny U-Net, the kind of network a user brings (model.arch: custom, model.factory): the
tests train, label, score and evaluate it through the real workflow. Not a test module."""

from __future__ import annotations

import torch
from torch import nn


def block(cin: int, cout: int) -> nn.Sequential:
    return nn.Sequential(nn.Conv2d(cin, cout, 3, padding=1, bias=False), nn.BatchNorm2d(cout), nn.ReLU(inplace=True))


class TinyUNet(nn.Module):
    """Two levels: class scores at the input's resolution (stpp's upsampling is then a no-op)."""

    def __init__(self, num_classes: int, width: int = 8):
        super().__init__()
        self.enc1, self.enc2 = block(3, width), block(width, 2 * width)
        self.up = nn.ConvTranspose2d(2 * width, width, 2, stride=2)
        self.dec = block(2 * width, width)
        self.out = nn.Conv2d(width, num_classes, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        skip = self.enc1(x)
        up = self.up(self.enc2(nn.functional.max_pool2d(skip, 2)))
        up = nn.functional.pad(up, (0, skip.shape[-1] - up.shape[-1], 0, skip.shape[-2] - up.shape[-2]))
        return self.out(self.dec(torch.cat([up, skip], 1)))


def build(num_classes: int, width: int = 8) -> TinyUNet:
    """The factory: model.factory tests/tiny_unet.py:build, model.kwargs {width: 8}."""
    return TinyUNet(num_classes, width)
