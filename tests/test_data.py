"""Tests for stages.seg.data (split lists, masks, training sets) and stages.seg.maskstore."""

from __future__ import annotations

import json
import pickle
from collections import Counter
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from stages.seg.data import (
    DataError,
    Sample,
    TrainDataset,
    read_mask,
    read_split_list,
    training_set,
    write_split_list,
)
from stages.seg.maskstore import MaskStore, MaskStoreWriter, merge_stores
from stages.seg.transforms import IGNORE_INDEX, StrongAugment, WeakAugment

NUM_CLASSES = 3
SIZE = 16


def write_png(path: Path, array: np.ndarray, mode: str | None = None) -> str:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(np.asarray(array, dtype=np.uint8), mode).save(path)
    return str(path)


def write_list(path: Path, text: str) -> Path:
    path.write_text(text)
    return path


def write_store(path: Path, masks: dict[str, np.ndarray], attrs: dict | None = None) -> Path:
    with MaskStoreWriter(path, attrs) as w:
        for image_id, mask in masks.items():
            w.write(image_id, mask)
    return path


def leftovers(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir() if ".tmp-" in p.name)


# ------------------------------------------------------------------------------------------
# split lists
# ------------------------------------------------------------------------------------------
def test_read_split_list_formats(tmp_path):
    path = write_list(tmp_path / "l.txt", "a.png a_m.png\n\n  \nb.png\n# a comment\nsub/c.png  sub/c_m.png\n")
    assert read_split_list(path) == [
        Sample("a.png", "a.png", "a_m.png"),
        Sample("b.png", "b.png", None),
        Sample("sub/c.png", "sub/c.png", "sub/c_m.png"),
    ]


def test_read_split_list_need_masks_names_the_line(tmp_path):
    path = write_list(tmp_path / "l.txt", "a.png a_m.png\nb.png\n")
    with pytest.raises(ValueError, match=r"l\.txt:2"):
        read_split_list(path, need_masks=True)


def test_read_split_list_duplicate_names_file_and_line(tmp_path):
    path = write_list(tmp_path / "dup.txt", "a.png m1.png\nb.png\n\na.png m2.png\n")
    with pytest.raises(ValueError, match=r"dup\.txt:4.*a\.png"):
        read_split_list(path)


@pytest.mark.parametrize("text", ["", "\n  \n", "# only a comment\n"])
def test_read_split_list_empty(tmp_path, text):
    with pytest.raises(ValueError, match="empty"):
        read_split_list(write_list(tmp_path / "e.txt", text))


def test_read_split_list_bad_lines(tmp_path):
    with pytest.raises(ValueError, match=r"x\.txt:1"):
        read_split_list(write_list(tmp_path / "x.txt", "a.png b.png c.png\n"))
    with pytest.raises(DataError, match="split list not found: .*nope.txt"):
        read_split_list(tmp_path / "nope.txt")


def test_write_split_list_round_trip(tmp_path):
    samples = [Sample("x/1.png", "x/1.png", "y/1.png"), Sample("x/2.png", "x/2.png")]
    path = tmp_path / "out" / "list.txt"
    write_split_list(path, samples)
    assert path.read_text() == "x/1.png y/1.png\nx/2.png\n"
    assert read_split_list(path) == samples
    assert leftovers(path.parent) == []


# ------------------------------------------------------------------------------------------
# masks
# ------------------------------------------------------------------------------------------
def test_read_mask_maps_every_ignore_label_to_255(tmp_path):
    arr = np.array([[0, 1, 2, 11], [5, 255, 2, 0]])
    mask = read_mask(write_png(tmp_path / "m.png", arr), NUM_CLASSES, ignore_labels=[11, 5])
    assert mask.dtype == torch.uint8 and mask.shape == (2, 4)
    assert mask.tolist() == [[0, 1, 2, 255], [255, 255, 2, 0]]


def test_read_mask_rejects_labels_outside_the_classes(tmp_path):
    path = write_png(tmp_path / "m.png", np.array([[0, 3], [7, 255]]))
    with pytest.raises(ValueError, match=r"\[3, 7\].*\[0, 3\)"):
        read_mask(path, NUM_CLASSES)
    with pytest.raises(ValueError, match=r"\[3\]"):
        read_mask(path, NUM_CLASSES, ignore_labels=[7])
    assert read_mask(path, NUM_CLASSES, ignore_labels=[3, 7]).tolist() == [[0, 255], [255, 255]]


def test_read_mask_rejects_rgb(tmp_path):
    path = write_png(tmp_path / "rgb.png", np.zeros((4, 4, 3)))
    with pytest.raises(ValueError, match="mode RGB"):
        read_mask(path, NUM_CLASSES)
    with pytest.raises(DataError, match="mask not found: .*missing.png"):
        read_mask(tmp_path / "missing.png", NUM_CLASSES)


def test_read_mask_palette_is_read_as_indices(tmp_path):
    arr = np.array([[0, 1], [2, 1]], dtype=np.uint8)
    img = Image.fromarray(arr, "P")
    img.putpalette([0, 0, 0, 200, 10, 10, 10, 200, 10] + [0] * (253 * 3))
    img.save(tmp_path / "p.png")
    assert read_mask(tmp_path / "p.png", NUM_CLASSES).tolist() == arr.tolist()


# ------------------------------------------------------------------------------------------
# training sets
# ------------------------------------------------------------------------------------------
def _class_map(seed: int) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, NUM_CLASSES, (SIZE, SIZE))


@pytest.fixture
def tiny(tmp_path):
    """2 labeled and 5 unlabeled 16x16 images; pseudo-masks (differing from the audit masks) in a store."""
    root = tmp_path / "data"
    labeled, unlabeled, pseudo = [], [], {}
    for i in range(7):
        rng = np.random.default_rng(100 + i)
        name = f"img/{i}.png"
        write_png(root / name, rng.integers(0, 256, (SIZE, SIZE, 3)))
        write_png(root / f"gt/{i}.png", _class_map(i))
        sample = Sample(name, name, f"gt/{i}.png")
        if i < 2:
            labeled.append(sample)
        else:
            unlabeled.append(sample)
            pseudo[name] = ((_class_map(i) + 1) % NUM_CLASSES).astype(np.uint8)
    store = write_store(tmp_path / "pseudo.h5", pseudo)
    return root, labeled, unlabeled, store, pseudo


def identity_weak() -> WeakAugment:
    """No rescale, no padding (crop = image size), no flip: the pair comes out unchanged."""
    return WeakAugment(SIZE, scale_range=(1.0, 1.0), flip_p=0.0)


class RecordingStrong(StrongAugment):
    """Cutout on every call (nothing else), and a count of the calls."""

    def __init__(self):
        super().__init__(jitter_p=0.0, grayscale_p=0.0, blur_p=0.0, cutout_p=1.0)
        self.calls = 0

    def __call__(self, image, mask):
        self.calls += 1
        return super().__call__(image, mask)


def part_ids(dataset) -> list[Counter]:
    return [Counter(s.id for s in part.samples) for part in dataset.datasets]


def test_oversampling_with_pseudo_labels(tiny):
    root, labeled, unlabeled, store, _ = tiny
    ds = training_set(root, labeled, [(unlabeled, str(store))], identity_weak(), None, NUM_CLASSES, min_labeled=200)
    lab, pse = part_ids(ds)
    assert lab == {s.id: 3 for s in labeled}  # ceil(5 / 2) = 3 times each, min_labeled unused
    assert pse == {s.id: 1 for s in unlabeled}
    assert len(ds) == 6 + 5


def test_oversampling_with_two_pseudo_lists(tiny):
    root, labeled, unlabeled, store, _ = tiny
    pseudo = [(unlabeled[:1], str(store)), (unlabeled[1:], str(store))]
    ds = training_set(root, labeled, pseudo, identity_weak(), None, NUM_CLASSES)
    assert [sum(c.values()) for c in part_ids(ds)] == [6, 1, 4]  # labeled x ceil(5 / 2)


@pytest.mark.parametrize("min_labeled,times", [(7, 4), (8, 4), (2, 1), (1, 1)])
def test_oversampling_without_pseudo_labels(tiny, min_labeled, times):
    root, labeled, _, _, _ = tiny
    ds = training_set(root, labeled, [], identity_weak(), None, NUM_CLASSES, min_labeled=min_labeled)
    assert part_ids(ds) == [{s.id: times for s in labeled}]


def test_strong_augmentation_on_pseudo_labels_only(tiny):
    root, labeled, unlabeled, store, pseudo = tiny
    strong = RecordingStrong()
    ds = training_set(root, labeled, [(unlabeled, str(store))], identity_weak(), strong, NUM_CLASSES)
    n_lab = len(ds.datasets[0])
    items = [ds[i] for i in range(len(ds))]
    assert strong.calls == len(unlabeled)
    for i, (image, mask) in enumerate(items):
        assert image.dtype == torch.float32 and image.shape == (3, SIZE, SIZE)
        assert mask.dtype == torch.int64 and mask.shape == (SIZE, SIZE)
        if i < n_lab:  # labeled: the ground truth from its mask file, untouched
            sample = ds.datasets[0].samples[i]
            assert torch.equal(mask, read_mask(root / sample.mask, NUM_CLASSES).long())
        else:  # pseudo-labeled: the store's mask (not the audit mask), with a 255 Cutout box
            sample = ds.datasets[1].samples[i - n_lab]
            cut = mask == IGNORE_INDEX
            assert cut.any()
            expected = torch.from_numpy(pseudo[sample.id]).long()
            assert torch.equal(mask[~cut], expected[~cut])


def test_pseudo_store_missing_an_id(tiny, tmp_path):
    root, _, unlabeled, _, pseudo = tiny
    partial = write_store(tmp_path / "partial.h5", {k: v for k, v in pseudo.items() if k != unlabeled[2].id})
    with pytest.raises(ValueError, match=f"{unlabeled[2].id}.*1 missing"):
        TrainDataset(root, unlabeled, identity_weak(), NUM_CLASSES, store=partial)


def test_labeled_sample_without_mask(tiny):
    root, labeled, _, _, _ = tiny
    with pytest.raises(ValueError, match="mask path"):
        TrainDataset(root, [Sample(labeled[0].id, labeled[0].image)], identity_weak(), NUM_CLASSES)


def test_mask_image_size_mismatch(tiny, tmp_path):
    root, labeled, unlabeled, _, _ = tiny
    write_png(root / "gt/small.png", np.zeros((SIZE, SIZE - 1)))
    bad = Sample(labeled[0].id, labeled[0].image, "gt/small.png")
    with pytest.raises(DataError, match=r"small.png is 15x16 but its image img/0.png is 16x16"):
        TrainDataset(root, [bad], identity_weak(), NUM_CLASSES)[0]
    store = write_store(tmp_path / "wrong.h5", {unlabeled[0].id: np.zeros((SIZE + 1, SIZE), np.uint8)})
    with pytest.raises(ValueError, match=unlabeled[0].id):
        TrainDataset(root, unlabeled[:1], identity_weak(), NUM_CLASSES, store=store)[0]


# ------------------------------------------------------------------------------------------
# mask stores
# ------------------------------------------------------------------------------------------
IDS = ["train/0001.png", "a/b/c.png", "odd%2Fname.png", "plain"]


def _masks(ids=IDS, shape=(5, 7)) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(0)
    return {i: rng.integers(0, 256, shape).astype(np.uint8) for i in ids}


def test_mask_store_round_trip(tmp_path):
    masks = _masks()
    masks["train/k.png"] = np.arange(3 * 4 * 5, dtype=np.uint8).reshape(3, 4, 5)  # (K, H, W) as stages.score
    attrs = {"model": "t/model.pt", "tta_scales": [0.5, 1.0], "tta_flip": True, "shard": 1, "none": None}
    path = write_store(tmp_path / "s.h5", masks, attrs)
    store = MaskStore(path)
    assert len(store) == len(masks)
    assert sorted(store.ids()) == sorted(masks)
    for image_id, mask in masks.items():
        got = store[image_id]
        assert got.dtype == np.uint8 and np.array_equal(got, mask)
    a = store.attrs
    assert a["model"] == "t/model.pt" and bool(a["tta_flip"]) is True and a["shard"] == 1
    assert json.loads(a["tta_scales"]) == [0.5, 1.0] and json.loads(a["none"]) is None
    assert store.missing(["plain", "train/0002.png", "a/b/c.png"]) == ["train/0002.png"]
    with pytest.raises(KeyError, match="train/0002.png"):
        store["train/0002.png"]
    clone = pickle.loads(pickle.dumps(store))  # as a DataLoader worker gets it
    assert np.array_equal(clone["a/b/c.png"], masks["a/b/c.png"])
    store.close(), clone.close()
    assert leftovers(tmp_path) == []


def test_mask_store_rejects_non_uint8(tmp_path):
    with pytest.raises(TypeError, match="uint8"):
        write_store(tmp_path / "s.h5", {"x": np.zeros((2, 2), np.int64)})
    assert not (tmp_path / "s.h5").exists() and leftovers(tmp_path) == []


def test_mask_store_crash_leaves_nothing(tmp_path):
    path = tmp_path / "s.h5"
    with pytest.raises(RuntimeError, match="boom"):
        with MaskStoreWriter(path, {"model": "m"}) as w:
            w.write("a", np.zeros((2, 2), np.uint8))
            raise RuntimeError("boom")
    assert list(tmp_path.iterdir()) == []
    with pytest.raises(FileNotFoundError):
        MaskStore(path)


def test_merge_stores(tmp_path):
    masks = _masks()
    shards = [
        write_store(
            tmp_path / f"shard_{i}.h5", dict(list(masks.items())[i::2]), {"model": "m.pt", "shard": i, "num_shards": 2}
        )
        for i in range(2)
    ]
    out = tmp_path / "merged.h5"
    assert merge_stores(shards, out) == len(masks)
    merged = MaskStore(out)
    assert sorted(merged.ids()) == sorted(masks)
    assert all(np.array_equal(merged[i], m) for i, m in masks.items())
    assert merged.attrs == {"model": "m.pt"}  # shard attributes dropped
    merged.close()


def test_merge_stores_refuses_duplicates(tmp_path):
    masks = _masks()
    a = write_store(tmp_path / "a.h5", masks)
    b = write_store(tmp_path / "b.h5", {"a/b/c.png": masks["a/b/c.png"]})
    out = tmp_path / "merged.h5"
    with pytest.raises(ValueError, match="a/b/c.png"):
        merge_stores([a, b], out)
    assert not out.exists() and leftovers(tmp_path) == []


def test_a_label_map_turns_stored_values_into_classes(tmp_path):
    from stages.seg.images import IGNORE_INDEX, LabelMap, decode_mask

    arr = np.array([[0, 255], [7, 26]], np.uint8)
    path = write_png(tmp_path / "m.png", arr)
    with pytest.raises(DataError, match=r"labels \[7, 26\] after data.label_map outside \[0, 2\)"):
        decode_mask(path, 2, LabelMap.parse(["255:1"]))
    binary = write_png(tmp_path / "b.png", np.array([[0, 255]], np.uint8))
    assert decode_mask(binary, 2, LabelMap.parse(["255:1"])).tolist() == [[0, 1]]
    assert decode_mask(binary, 2).tolist() == [[0, IGNORE_INDEX]]  # 255 is ignore without a map
    # Cityscapes' label ids: 7 road -> 0, 26 car -> 13, 0 (unlabeled) and anything unnamed -> ignore
    assert decode_mask(path, 19, LabelMap.parse(["cityscapes"])).tolist() == [[IGNORE_INDEX, IGNORE_INDEX], [0, 13]]
    both = LabelMap.parse(["7:1"])
    assert decode_mask(path, 27, both.__class__(both.table, ignore=(26,))).tolist() == [[0, IGNORE_INDEX], [1, 255]]
    with pytest.raises(ValueError, match="write STORED:CLASS"):
        LabelMap.parse(["seven:1"])
