"""Tests for stages.make_demo (synthetic data set generator)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from stages.make_demo import (
    CLASS_NAMES,
    CLASS_TEXTURES,
    CLUTTER_TEXTURES,
    _pattern,
    _texture,
    main,
    make_demo,
    render_sample,
    sample_rng,
)

COUNTS = {"labeled": 3, "unlabeled": 5, "val": 4}
SIZE = (32, 32)


def _make(out: Path, seed: int = 0, size=SIZE, **kw) -> Path:
    make_demo(
        out,
        num_labeled=COUNTS["labeled"],
        num_unlabeled=COUNTS["unlabeled"],
        num_val=COUNTS["val"],
        size=size,
        seed=seed,
        **kw,
    )
    return out


def _read_list(out: Path, split: str) -> list[tuple[str, str]]:
    lines = (out / f"{split}.txt").read_text().splitlines()
    return [tuple(line.split(" ")) for line in lines]  # type: ignore[misc]


def _open(path: Path) -> Image.Image:
    """Load an image fully and close its file (no ResourceWarning)."""
    with Image.open(path) as im:
        im.load()
        return im.copy()


def _all_files(out: Path) -> dict[str, bytes]:
    return {str(p.relative_to(out)): p.read_bytes() for p in sorted(out.rglob("*")) if p.is_file()}


@pytest.fixture(scope="module")
def demo(tmp_path_factory) -> Path:
    return _make(tmp_path_factory.mktemp("demo") / "data")


def test_lists_counts_and_files(demo: Path):
    referenced = set()
    for split, n in COUNTS.items():
        pairs = _read_list(demo, split)
        assert len(pairs) == n
        for img, mask in pairs:
            assert (demo / img).is_file() and (demo / mask).is_file()
            assert Path(img).name == Path(mask).name
            referenced |= {img, mask}
    on_disk = {str(p.relative_to(demo)) for d in ("images", "masks") for p in (demo / d).iterdir()}
    assert on_disk == referenced
    assert (demo / "classes.txt").read_text().splitlines() == list(CLASS_NAMES)
    assert not list(demo.parent.glob("*.tmp-*"))


def test_masks_and_images(demo: Path):
    seen = np.zeros(len(CLASS_NAMES), dtype=bool)
    for split in COUNTS:
        for img_rel, mask_rel in _read_list(demo, split):
            img, mask = _open(demo / img_rel), _open(demo / mask_rel)
            assert img.mode == "RGB" and mask.mode == "L"
            assert img.size == mask.size == (SIZE[1], SIZE[0])
            m = np.asarray(mask)
            assert m.dtype == np.uint8 and m.ndim == 2
            assert m.max() < len(CLASS_NAMES)
            seen[np.unique(m)] = True
            a = np.asarray(img).astype(float)
            assert a.std() > 5.0  # textured, not constant
            # texture inside the background itself, not only shape edges
            assert a[m == 0].std(axis=0).max() > 2.0
    assert seen.all(), f"classes never drawn: {[c for c, s in zip(CLASS_NAMES, seen, strict=True) if not s]}"


def _luma(rgb: np.ndarray) -> np.ndarray:
    """What RandomGrayscale keeps of an image (ITU-R 601 weights, as torchvision)."""
    return rgb[..., :3] @ np.array([0.299, 0.587, 0.114])


def test_class_cues_survive_grayscale():
    """The classes must not be told apart by colour, which the strong augmentation jitters or
    removes: every object texture is a luminance pattern, and no class owns a hue."""
    yy, xx = np.mgrid[0:48, 0:48].astype(float) + 0.5
    for i in range(40):
        rng = np.random.default_rng(i)
        for kind in CLUTTER_TEXTURES:  # every object texture, the classes' among them
            luma = _luma(_texture(rng, kind, yy, xx, contrast=(40.0, 140.0), saturation=(0.0, 0.9)))
            assert luma.max() - luma.min() >= 20.0, (kind, i)
    hues = {c: [] for c in range(1, len(CLASS_NAMES))}
    for i in range(150):
        img, mask = render_sample(sample_rng(0, "labeled", i), 48, 48)
        for c in hues:
            if (mask == c).sum() > 50:
                hues[c].append(img[mask == c].mean(axis=0))
    means = {c: np.mean(v, axis=0) for c, v in hues.items()}
    for c, mean in means.items():  # mean colours of the classes are all near the same grey
        assert np.ptp(mean) < 25, (CLASS_NAMES[c], mean)


def test_class_textures_are_distinct():
    yy, xx = np.mgrid[0:64, 0:64].astype(float) + 0.5
    assert len(set(CLASS_TEXTURES.values())) == len(CLASS_TEXTURES) == len(CLASS_NAMES) - 1
    assert set(CLASS_TEXTURES.values()) <= set(CLUTTER_TEXTURES)  # texture alone never tells the class
    # no class wears the backgrounds' smooth gradient (the old triangles did, and were erased)
    assert "gradient" not in CLASS_TEXTURES.values()
    p = {k: _pattern(np.random.default_rng(0), k, yy, xx, scale=12.0) for k in CLASS_TEXTURES.values()}
    # stripes and checker: two levels in equal shares; the grid: thin lines, about 1 - 0.8^2 of it
    for kind in ("stripes", "checker"):
        assert set(np.unique(p[kind])) == {0.0, 1.0} and 0.4 < p[kind].mean() < 0.6, kind
    assert set(np.unique(p["grid"])) == {0.0, 1.0} and 0.28 < p["grid"].mean() < 0.44


def test_split_ids_disjoint(demo: Path):
    ids = {split: {img for img, _ in _read_list(demo, split)} for split in COUNTS}
    assert not ids["labeled"] & ids["unlabeled"]
    assert not ids["labeled"] & ids["val"]
    assert not ids["unlabeled"] & ids["val"]


def test_deterministic(tmp_path: Path, demo: Path):
    again = _all_files(_make(tmp_path / "again", seed=0))
    assert again == _all_files(demo)
    other = _all_files(_make(tmp_path / "other", seed=1))
    assert other.keys() == again.keys()
    assert all(other[k] != again[k] for k in again if k.startswith("images/"))


def test_image_independent_of_other_counts(tmp_path: Path, demo: Path):
    out = tmp_path / "small"
    make_demo(out, num_labeled=1, num_unlabeled=0, num_val=2, size=SIZE, seed=0)
    for rel in ("images/labeled_0000.png", "masks/val_0001.png"):
        assert (out / rel).read_bytes() == (demo / rel).read_bytes()
    assert (out / "unlabeled.txt").read_text() == ""


def test_non_square_size(tmp_path: Path):
    out = tmp_path / "rect"
    make_demo(out, num_labeled=1, num_unlabeled=1, num_val=1, size=(24, 40), seed=3)
    img, mask = _open(out / "images/labeled_0000.png"), _open(out / "masks/labeled_0000.png")
    assert img.size == mask.size == (40, 24)


def test_cli(tmp_path: Path, caplog):
    out = tmp_path / "cli"
    caplog.set_level("INFO", logger="stages.make_demo")
    assert (
        main(
            [
                "--out",
                str(out),
                "--num-labeled",
                "2",
                "--num-unlabeled",
                "3",
                "--num-val",
                "1",
                "--height",
                "16",
                "--width",
                "20",
                "--seed",
                "7",
            ]
        )
        == 0
    )
    assert [len(_read_list(out, s)) for s in ("labeled", "unlabeled", "val")] == [2, 3, 1]
    assert _open(out / "images/val_0000.png").size == (20, 16)
    assert str(out) in caplog.text


def test_existing_out_fails_without_force(tmp_path: Path):
    out = _make(tmp_path / "exists")
    with pytest.raises(SystemExit) as exc:
        main(["--out", str(out), "--num-labeled", "1", "--num-unlabeled", "1", "--num-val", "1", "--size", "16"])
    assert str(out) in str(exc.value)
    with pytest.raises(FileExistsError, match="exists"):
        _make(out)
    # --force replaces a previous output
    main(["--out", str(out), "--num-labeled", "1", "--num-unlabeled", "1", "--num-val", "1", "--size", "16", "--force"])
    assert len(_read_list(out, "labeled")) == 1
    assert not (out / "images" / "labeled_0002.png").exists()


def test_force_refuses_foreign_directory(tmp_path: Path):
    out = tmp_path / "foreign"
    out.mkdir()
    (out / "precious.txt").write_text("keep me")
    with pytest.raises(FileExistsError, match="does not look like"):
        _make(out, force=True)
    assert (out / "precious.txt").read_text() == "keep me"


def test_help_documents_options(capsys):
    with pytest.raises(SystemExit) as exc:
        main(["--help"])
    assert exc.value.code == 0
    text = capsys.readouterr().out
    for opt in (
        "--out",
        "--num-labeled",
        "--num-unlabeled",
        "--num-val",
        "--size",
        "--height",
        "--width",
        "--seed",
        "--force",
    ):
        assert opt in text
