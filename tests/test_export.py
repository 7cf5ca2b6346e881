"""stages.export_masks and the palettes: PNGs whose values are the class indices, in colour."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from stages import export_masks
from stages.seg.maskstore import MaskStoreWriter
from stages.seg.palettes import CAMVID, MSRC21, palette, pascal


def test_palettes():
    assert pascal(4) == [(0, 0, 0), (128, 0, 0), (0, 128, 0), (128, 128, 0)]
    assert palette("pascal")[255] == (224, 224, 192) and len(palette("camvid")) == 256
    assert palette("camvid")[:11] == CAMVID and palette("camvid")[11] == (0, 0, 0)
    # MSRC-v2's own colours: building, grass, ... cow, then sheep (horse skipped), ..., boat
    assert MSRC21[0] == (128, 0, 0) and MSRC21[4] == (0, 128, 128) and MSRC21[20] == (192, 64, 0)
    assert MSRC21[16] == (128, 64, 128)  # road
    assert len(set(MSRC21)) == 21


def test_palette_file(tmp_path):
    (tmp_path / "p.txt").write_text("# mine\n10 20 30\n40 50 60\n")
    assert palette(str(tmp_path / "p.txt"))[:2] == [(10, 20, 30), (40, 50, 60)]
    (tmp_path / "bad.txt").write_text("10 20\n")
    with pytest.raises(ValueError, match=r"bad.txt:1: expected 'R G B'"):
        palette(str(tmp_path / "bad.txt"))
    with pytest.raises(FileNotFoundError, match="neither one of pascal, camvid, msrc21"):
        palette("viridis")


def test_export_writes_palette_pngs_with_the_class_indices(tmp_path):
    masks = {"train/a.jpg": np.array([[0, 1], [2, 10]], np.uint8), "b.png": np.zeros((3, 4), np.uint8)}
    with MaskStoreWriter(tmp_path / "m.h5") as w:
        for image_id, mask in masks.items():
            w.write(image_id, mask)
    with MaskStoreWriter(tmp_path / "k.h5") as w:
        w.write("c.png", np.stack([np.zeros((2, 2)), np.ones((2, 2))]).astype(np.uint8))

    export_masks.main(["--store", str(tmp_path / "m.h5"), "--out", str(tmp_path / "out"), "--palette", "camvid"])
    image = Image.open(tmp_path / "out" / "train" / "a.png")
    assert image.mode == "P" and np.array_equal(np.array(image), masks["train/a.jpg"])
    assert image.getpalette()[3 * 10 : 3 * 11] == list(CAMVID[10])
    assert Image.open(tmp_path / "out" / "b.png").size == (4, 3)

    export_masks.main(["--store", str(tmp_path / "k.h5"), "--out", str(tmp_path / "k")])
    assert [np.array(Image.open(tmp_path / "k" / f"c_checkpoint_{j}.png")).max() for j in (1, 2)] == [0, 1]

    with pytest.raises(ValueError, match=r"has no mask for \['nope.png'\]"):
        export_masks.main(["--store", str(tmp_path / "m.h5"), "--out", str(tmp_path / "x"), "--ids", "nope.png"])
