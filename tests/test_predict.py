"""stages.predict and the Python API (stages.seg.predictor): new images to masks, colour masks
and overlays, with the labeling stage's own inference; bad input named, nothing half-written."""

from __future__ import annotations

import csv
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from stages import label, predict
from stages.make_demo import CLASS_NAMES, make_demo
from stages.seg.io import save_model
from stages.seg.maskstore import MaskStore
from stages.seg.models import build_model
from stages.seg.predictor import Predictor


@pytest.fixture
def setup(tmp_path):
    demo = tmp_path / "demo"
    make_demo(demo, num_labeled=2, num_unlabeled=4, num_val=1, size=(32, 40), seed=0)
    torch.manual_seed(0)
    spec = dict(arch="deeplabv3plus", backbone="resnet18", num_classes=4, output_stride=16, head_channels=16)
    save_model(tmp_path / "model.pt", build_model(**spec).eval(), spec)
    return demo, tmp_path / "model.pt"


def photos(demo: Path, folder: Path) -> Path:
    """The demo's 4 unlabeled images as a user's folder of photographs, two in a subfolder."""
    for i, image in enumerate(sorted((demo / "images").glob("unlabeled_*.png"))):
        target = folder / ("trip" if i % 2 else "") / f"photo_{i}.png"
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_bytes(image.read_bytes())
    return folder


def run(model, *argv) -> None:
    predict.main(["--model", str(model), "--device", "cpu", *map(str, argv)])


def test_a_folder_of_images_becomes_masks_colour_masks_overlays_and_a_table(setup, tmp_path):
    demo, model = setup
    out, folder = tmp_path / "out", photos(demo, tmp_path / "photos")
    run(model, "--images", folder, "--out", out, "--class-names", *CLASS_NAMES, "--batch-size", "3")
    images = sorted(folder.rglob("*.png"))
    assert len(images) == 4
    predictor = Predictor.load(model, device="cpu", num_classes=4)
    for image in images:
        name = image.relative_to(folder)
        mask = np.array(Image.open(out / "masks" / name))
        assert mask.shape == (32, 40) and mask.max() < 4
        assert np.array_equal(mask, predictor(Image.open(image)))  # the API, one image at a time
        assert Image.open(out / "color" / name).mode == "P"
        assert np.array(Image.open(out / "overlays" / name)).shape == (32, 40, 3)
    rows = list(csv.DictReader(open(out / "predictions.tsv"), delimiter="\t"))
    assert [r["image"] for r in rows] == [str(p.relative_to(folder).with_suffix("")) for p in images]
    assert rows[0]["width"] == "40" and abs(sum(float(rows[0][f"share_{c}"]) for c in CLASS_NAMES) - 1) < 1e-3


def test_tta_gives_the_labeling_stages_masks(setup, tmp_path):
    """The same inference as the workflow's pseudo-labels: stages.predict --tta and stages.label."""
    demo, model = setup
    tta = ["--scales", "0.75", "1.0", "--flip"]
    run(model, "--images", demo / "unlabeled.txt", "--data-root", demo, "--out", tmp_path / "out", "--tta", *tta)
    label.main(
        ["--model", str(model), "--list", str(demo / "unlabeled.txt"), "--data-root", str(demo), "--device", "cpu"]
        + ["--out", str(tmp_path / "labels.h5"), *tta]
    )
    store = MaskStore(tmp_path / "labels.h5")
    for image_id in store.ids():
        assert np.array_equal(
            np.array(Image.open(tmp_path / "out" / "masks" / Path(image_id).with_suffix(".png"))), store[image_id]
        )


def test_an_unreadable_image_is_named_and_the_others_are_written(setup, tmp_path, capsys):
    demo, model = setup
    folder = tmp_path / "photos"
    folder.mkdir()
    for i, image in enumerate(sorted((demo / "images").glob("unlabeled_*.png"))[:2]):
        (folder / f"{i}.png").write_bytes(image.read_bytes())
    (folder / "broken.png").write_bytes(b"not a png")
    with pytest.raises(SystemExit) as exit_:
        run(model, "--images", folder, "--out", tmp_path / "out")
    assert exit_.value.code == 1
    assert "broken.png" in capsys.readouterr().err
    assert sorted(p.name for p in (tmp_path / "out" / "masks").iterdir()) == ["0.png", "1.png"]


@pytest.mark.parametrize("case", ["empty folder", "not a model", "other classes"])
def test_bad_input_is_named_with_the_fix_and_nothing_is_written(setup, tmp_path, capsys, case):
    demo, model = setup
    images, extra = photos(demo, tmp_path / "photos"), []
    if case == "empty folder":
        images = tmp_path / "empty"
        images.mkdir()
        needle = "holds no image"
    elif case == "not a model":
        model = tmp_path / "other.pt"
        torch.save({"weights": torch.zeros(1)}, model)
        needle = "not an stpp model checkpoint"
    else:
        extra, needle = ["--num-classes", "21"], "a model for 4 classes, but 21 were asked for"
    with pytest.raises(SystemExit):
        run(model, "--images", images, "--out", tmp_path / "out", *extra)
    log = capsys.readouterr().err
    assert needle in log and str(tmp_path) in log
    assert not (tmp_path / "out").exists()


def test_the_predictor_takes_the_class_names_and_palette_the_checkpoint_records(tmp_path):
    spec = dict(arch="deeplabv3plus", backbone="resnet18", num_classes=2, output_stride=16, head_channels=8)
    save_model(tmp_path / "m.pt", build_model(**spec).eval(), spec, class_names=["sea", "boat"], palette="camvid")
    predictor = Predictor.load(tmp_path / "m.pt", device="cpu")
    assert predictor.class_names == ["sea", "boat"] and predictor.colours[1] == (128, 0, 0)  # camvid's
    assert Predictor.load(tmp_path / "m.pt", device="cpu", class_names=["a", "b"]).class_names == ["a", "b"]


def test_an_image_smaller_than_the_sliding_window_is_padded_as_evaluation_pads_it(setup, tmp_path):
    """A decision, not an error: an image smaller than the window is padded with the mean colour
    (as evaluation's sliding window does) and its mask cut back to the image's size."""
    demo, model = setup
    run(model, "--images", photos(demo, tmp_path / "photos"), "--out", tmp_path / "out", "--window", "64")
    for mask in sorted((tmp_path / "out" / "masks").rglob("*.png")):
        windowed = np.array(Image.open(mask))
        assert windowed.shape == (32, 40) and windowed.max() < 4
