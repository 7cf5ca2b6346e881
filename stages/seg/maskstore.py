"""HDF5 mask stores: one compressed uint8 dataset per image id.

A store holds the pseudo-masks of one labeling job (or the K checkpoint predictions of the
scoring job, one ``(K, H, W)`` dataset per id). File attributes say what made it: the model
file, the TTA scales and flip. Image ids are paths (``train/0001.png``); HDF5 would turn the
slashes into groups, so dataset names escape them (see :func:`_key`). A labeling job also
stores each pixel's TTA confidence (uint8, ``inference.confidence_uint8``) in the group
``CONFIDENCE``, under the same names: the pixel-level selection's input
(``stpp.selection: pixel``). No escaped id can be that group's name: ``%`` is escaped.

Writers build the file under a temporary name and rename it on success: a crashed labeling
job leaves no store that looks complete.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Iterable, Iterator, Mapping

import h5py
import numpy as np

from .files import atomic_path

CONFIDENCE = "%confidence"


def _key(image_id: str) -> str:
    return image_id.replace("%", "%25").replace("/", "%2F")


def _id(key: str) -> str:
    return key.replace("%2F", "/").replace("%25", "%")


def _attr(value):
    # HDF5 attributes hold scalars and strings; lists and dicts are stored as JSON.
    return json.dumps(value) if isinstance(value, (list, tuple, dict)) or value is None else value


class MaskStoreWriter:
    """``with MaskStoreWriter(path, attrs) as w: w.write(id, mask)``; the file appears on exit."""

    def __init__(self, path: str | os.PathLike, attrs: Mapping | None = None):
        self.path, self.attrs = Path(path), dict(attrs or {})

    def __enter__(self) -> "MaskStoreWriter":
        self._atomic = atomic_path(self.path)
        tmp = self._atomic.__enter__()
        self._file = h5py.File(tmp, "w")
        for k, v in self.attrs.items():
            self._file.attrs[k] = _attr(v)
        return self

    def write(self, image_id: str, mask: np.ndarray, confidence: np.ndarray | None = None) -> None:
        """Store one mask and, where given, its pixels' confidence (uint8, the mask's shape)."""
        for name, array in (("masks", mask), ("confidences", confidence)):
            if array is not None and np.asarray(array).dtype != np.uint8:
                raise TypeError(f"{name} are stored as uint8, got {np.asarray(array).dtype} for {image_id}")
        self._file.create_dataset(_key(image_id), data=np.asarray(mask), compression="gzip", compression_opts=4)
        if confidence is not None:
            group = self._file.require_group(CONFIDENCE)
            group.create_dataset(_key(image_id), data=np.asarray(confidence), compression="gzip", compression_opts=4)

    def __exit__(self, exc_type, exc, tb) -> bool:
        self._file.close()
        return bool(self._atomic.__exit__(exc_type, exc, tb))


class MaskStore:
    """Read-only access by id. Opens the file lazily so DataLoader workers each get a handle."""

    def __init__(self, path: str | os.PathLike):
        self.path = Path(path)
        if not self.path.is_file():
            raise FileNotFoundError(f"mask store not found: {self.path}")
        self._file: h5py.File | None = None
        self._pid: int | None = None

    @property
    def file(self) -> h5py.File:
        if self._file is None or self._pid != os.getpid():
            self._file, self._pid = h5py.File(self.path, "r"), os.getpid()
        return self._file

    def __getstate__(self):
        return {"path": self.path, "_file": None, "_pid": None}

    def __getitem__(self, image_id: str) -> np.ndarray:
        try:
            return self.file[_key(image_id)][()]
        except KeyError:
            raise KeyError(f"mask store {self.path} has no mask for {image_id}") from None

    def _keys(self) -> list[str]:
        return [k for k in self.file.keys() if k != CONFIDENCE]

    def __len__(self) -> int:
        return len(self._keys())

    def ids(self) -> Iterator[str]:
        return (_id(k) for k in self._keys())

    def __contains__(self, image_id: str) -> bool:
        return _key(image_id) in self.file  # never the confidence group: escaped ids hold no bare %

    def missing(self, ids: Iterable[str]) -> list[str]:
        keys = set(self._keys())
        return [i for i in ids if _key(i) not in keys]

    @property
    def has_confidence(self) -> bool:
        return CONFIDENCE in self.file

    def confidence(self, image_id: str) -> np.ndarray:
        """The uint8 confidence of each pixel of one mask (a store written by stages.label)."""
        try:
            return self.file[CONFIDENCE][_key(image_id)][()]
        except KeyError:
            raise KeyError(
                f"mask store {self.path} has no confidence for {image_id}; it was written before "
                "stages.label stored confidences: re-run the labeling"
            ) from None

    @property
    def attrs(self) -> dict:
        return dict(self.file.attrs)

    def close(self) -> None:
        if self._file is not None:
            self._file.close()
            self._file = None


def merge_stores(inputs: Iterable[str | os.PathLike], output: str | os.PathLike) -> int:
    """Concatenate shard stores into one; attributes come from the first. Returns the count."""
    inputs = [Path(p) for p in inputs]
    with h5py.File(inputs[0], "r") as first:
        attrs = {k: first.attrs[k] for k in first.attrs if k not in ("shard", "num_shards")}
    count = 0
    with atomic_path(output) as tmp, h5py.File(tmp, "w") as out:
        out.attrs.update(attrs)
        for path in inputs:
            with h5py.File(path, "r") as src:
                for key in src:
                    if key == CONFIDENCE:
                        group = out.require_group(CONFIDENCE)
                        for name in src[key]:
                            src.copy(src[key][name], group, name=name)
                        continue
                    if key in out:
                        raise ValueError(f"{path}: mask {_id(key)} is in more than one shard")
                    src.copy(src[key], out, name=key)
                    count += 1
    return count
