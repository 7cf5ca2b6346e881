"""Split lists: reading with every problem named by file and line, and writing.

Format (the ST++ reference code's): one image per line, ``<image path> <mask path>``, relative
to a data root. An unlabeled line may carry no mask, or a mask used only to audit pseudo-label
quality. An image's *id* is its image path as written in the list: unique, readable, and stable
across lists, so ``reliable_ids.txt`` lines are the unlabeled list's own.

Free of torch, so that the Snakefile can read lists to name a data check's inputs.
"""

from __future__ import annotations

import csv
import math
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Sequence

from .files import write_text


class DataError(ValueError):
    """An image, mask or list that cannot be used, named with its list line and the fix."""


@dataclass(frozen=True)
class Sample:
    id: str
    image: str
    mask: str | None = None
    # "<list file>:<line number>" where the sample was read, for error messages
    origin: str = field(default="", compare=False)

    def line(self) -> str:
        return f"{self.image} {self.mask}" if self.mask else self.image


def parse_split_list(
    path: str | os.PathLike, need_masks: bool = False, allow_empty: bool = False
) -> tuple[list[Sample], list[str]]:
    """Every sample of a split list and every problem with it, each naming the file and line.
    An empty list is a problem unless ``allow_empty`` (a list a stage wrote, such as a review's
    corrected_ids.txt without corrections)."""
    path = Path(path)
    if not path.is_file():
        return [], [f"split list not found: {path}; check data.root and the list's path in the config"]
    try:
        # utf-8-sig: a list saved by an editor that writes a byte-order mark would otherwise give
        # its first image an invisible character and a not-found for a path that looks right
        text = path.read_text(encoding="utf-8-sig")
    except (OSError, UnicodeDecodeError) as err:
        return [], [f"split list {path} cannot be read: {err}"]
    samples, problems, seen = [], [], {}
    for n, raw in enumerate(text.splitlines(), start=1):
        fields = raw.split()
        if not fields or raw.lstrip().startswith("#"):
            continue
        if len(fields) > 2:
            problems.append(
                f"{path}:{n}: expected '<image> [<mask>]', got {raw!r}; paths with spaces are not supported"
            )
            continue
        if need_masks and len(fields) < 2:
            problems.append(f"{path}:{n}: {fields[0]} has no mask path; every line of this list needs '<image> <mask>'")
        if fields[0] in seen:
            problems.append(
                f"{path}:{n}: image {fields[0]} is listed twice (first on line {seen[fields[0]]}); "
                "delete one of the lines"
            )
            continue
        seen[fields[0]] = n
        samples.append(Sample(fields[0], fields[0], fields[1] if len(fields) > 1 else None, f"{path}:{n}"))
    if not samples and not problems and not allow_empty:
        problems.append(f"split list {path} is empty; it needs one '<image> [<mask>]' line per image")
    return samples, problems


def read_split_list(path: str | os.PathLike, need_masks: bool = False, allow_empty: bool = False) -> list[Sample]:
    samples, problems = parse_split_list(path, need_masks, allow_empty)
    if problems:
        more = f" (and {len(problems) - 1} more problems)" if len(problems) > 1 else ""
        raise DataError(problems[0] + more)
    return samples


def repeats(n: int, target: int) -> int:
    """How often over-sampling repeats a list of ``n`` to at least ``target`` (at least once)."""
    return max(1, math.ceil(target / n))


def write_split_list(path: str | os.PathLike, samples: Sequence[Sample]) -> None:
    write_text(path, "".join(s.line() + "\n" for s in samples))


def read_scores(path: str | os.PathLike) -> dict[str, float]:
    """{image id: stability score} of a stability_scores.tsv (stages.score)."""
    with open(path, newline="") as f:
        rows = list(csv.DictReader(f, delimiter="\t"))
    if not rows or "id" not in rows[0] or "score" not in rows[0]:
        raise ValueError(f"{path} is not a stability_scores.tsv (needs 'id' and 'score' columns)")
    return {row["id"]: float(row["score"]) for row in rows}


def reliable_count(n: int, ratio: float) -> int:
    """How many of ``n`` unlabeled images are reliable at R = ``ratio``: floor(N * R)."""
    if not 0.0 <= ratio <= 1.0:
        raise ValueError(f"the reliable ratio must be in [0, 1], got {ratio}")
    return math.floor(n * ratio)


def score_threshold(scores: dict[str, float], reliable_ids) -> float | None:
    """The score that separates the split's reliable images from the rest, midway between the
    lowest reliable and the highest unreliable score; None where no score does (a random
    selection, or one half empty), so that a figure marks the split that was made."""
    chosen = set(reliable_ids)
    reliable = [scores[i] for i in chosen]
    unreliable = [v for i, v in scores.items() if i not in chosen]
    if not reliable or not unreliable or min(reliable) < max(unreliable):
        return None
    return (min(reliable) + max(unreliable)) / 2


# -- review: exclusions and corrected masks (config key review) ------------------------------


def png_name(image_id: str) -> str:
    """The file an image's mask has in an export folder: its id with the extension .png (the
    id's folders become folders). export_masks, the review sheet and review.masks share it, so
    that an exported mask, edited, goes back under the same name."""
    return Path(image_id).with_suffix(".png").as_posix()


def corrected_masks(folder: str | os.PathLike, ids) -> tuple[dict[str, Path], list[Path]]:
    """({image id: its corrected mask file} of a review.masks folder, [PNG files that name no
    image of ``ids``]). A missing folder has no corrections."""
    folder = Path(folder)
    by_name = {png_name(i): i for i in ids}
    found, unknown = {}, []
    for path in sorted(folder.rglob("*.png")) if folder.is_dir() else []:
        image_id = by_name.get(path.relative_to(folder).as_posix())
        if image_id is None:
            unknown.append(path)
        else:
            found[image_id] = path
    return found, unknown
