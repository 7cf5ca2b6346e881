"""stages.figures: each figure is a PNG of the size its layout asks for."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from stages import figures
from stages.make_demo import CLASS_NAMES, make_demo
from stages.seg.maskstore import MaskStoreWriter
from stages.seg.splits import read_split_list

C = len(CLASS_NAMES)


@pytest.fixture(scope="module")
def results(tmp_path_factory) -> Path:
    """A demo data set with made-up stores, scores and logs of the shapes the stages write."""
    root = tmp_path_factory.mktemp("figures")
    make_demo(root / "data", num_labeled=2, num_unlabeled=8, num_val=2, size=(24, 24))
    ids = [s.id for s in read_split_list(root / "data" / "unlabeled.txt")]
    rng = np.random.default_rng(0)
    with MaskStoreWriter(root / "teacher.h5") as t, MaskStoreWriter(root / "ckpt.h5") as k:
        for i in ids:
            t.write(i, rng.integers(0, C, (24, 24)).astype(np.uint8))
            k.write(i, rng.integers(0, C, (3, 24, 24)).astype(np.uint8))
    with MaskStoreWriter(root / "relabeled.h5") as r:
        for i in ids[4:]:
            r.write(i, rng.integers(0, C, (24, 24)).astype(np.uint8))
    scores = rng.uniform(0, 2, len(ids))
    (root / "scores.tsv").write_text(
        "id\tscore\n" + "".join(f"{i}\t{s:.4f}\n" for i, s in zip(ids, scores, strict=True))
    )
    order = np.argsort(-scores)
    (root / "reliable_ids.txt").write_text("".join(f"{ids[j]}\n" for j in order[:4]))  # the top half
    (root / "per_image.tsv").write_text(
        "id\tscore\treliable\tteacher_miou\tstudent1_miou\n"
        + "".join(
            f"{ids[j]}\t{scores[j]:.4f}\t{int(rank < 4)}\t{rng.uniform():.4f}\t\n" for rank, j in enumerate(order)
        )
    )
    (root / "train_log.tsv").write_text(
        "epoch\titerations\tloss\tlr\tseconds\timages_per_s\tval_miou\n"
        "1\t4\t1.2\t0.01\t1\t8\t0.3\n2\t8\t0.9\t0.005\t1\t8\t0.4\n"
    )
    (root / "summary.tsv").write_text("method\tmiou\nSupOnly\t40.1\nST\t45.2\nST++ final\t44.0\n")
    return root


def png_size(path: Path) -> tuple[int, int]:
    with Image.open(path) as image:
        image.verify()  # a whole, valid PNG
    with Image.open(path) as image:
        assert image.format == "PNG"
        return image.size


def within(size: tuple[int, int], inches: tuple[float, float], dpi: int = 100, slack: float = 0.25) -> bool:
    """bbox_inches='tight' trims or grows the canvas a little around the figure's own size."""
    return all(abs(s - i * dpi) <= slack * i * dpi for s, i in zip(size, inches, strict=True))


def test_scores_figure(results):
    out = results / "scores.png"
    figures.main(
        [
            "scores",
            "--scores",
            str(results / "scores.tsv"),
            "--reliable",
            str(results / "reliable_ids.txt"),
            "--per-image",
            str(results / "per_image.tsv"),
            "--out",
            str(out),
        ]
    )
    assert within(png_size(out), (11, 4))
    figures.main(
        [
            "scores",
            "--scores",
            str(results / "scores.tsv"),
            "--reliable",
            str(results / "reliable_ids.txt"),
            "--out",
            str(out),
        ]
    )
    assert within(png_size(out), (5.5, 4))  # without ground truth: the histogram alone


@pytest.mark.parametrize("select", figures.SELECTIONS)
def test_contact_sheet(results, select):
    out = results / f"contact_{select}.png"
    common = [
        "contact",
        "--list",
        str(results / "data" / "unlabeled.txt"),
        "--data-root",
        str(results / "data"),
        "--num-classes",
        str(C),
        "--class-names",
        *CLASS_NAMES,
        "--teacher-masks",
        str(results / "teacher.h5"),
        "--rows",
        "4",
        "--palette",
        "msrc21",
        "--out",
        str(out),
    ]
    figures.main(
        [
            *common,
            "--checkpoint-masks",
            str(results / "ckpt.h5"),
            "--scores",
            str(results / "scores.tsv"),
            "--relabeled",
            str(results / "relabeled.h5"),
            "--select",
            select,
        ]
    )
    # image, teacher, 3 checkpoints, relabel, truth: 7 columns of 2.2 in; 4 rows of 2 in + legend
    assert within(png_size(out), (7 * 2.2, 4 * 2.0 + 0.8))
    figures.main(common)  # ST alone: image, teacher, truth
    assert within(png_size(out), (3 * 2.2, 4 * 2.0 + 0.8), slack=0.35)


def test_select_ids_orders_by_score_and_keeps_a_fixed_sample():
    ids, scores = ["a", "b", "c", "d"], {"a": 0.1, "b": 0.9, "c": 0.5, "d": 0.9}
    assert figures.select_ids(ids, scores, "most_stable", 2) == ["b", "d"]
    assert figures.select_ids(ids, scores, "least_stable", 2) == ["a", "c"]
    assert figures.select_ids(ids, scores, "random", 3) == figures.select_ids(ids, {}, "random", 3)


def test_curves_and_summary(results):
    figures.main(
        [
            "curves",
            "--logs",
            f"teacher={results / 'train_log.tsv'}",
            f"ST={results / 'train_log.tsv'}",
            "--out",
            str(results / "curves.png"),
        ]
    )
    assert within(png_size(results / "curves.png"), (15, 4))
    figures.main(["summary", "--summary", str(results / "summary.tsv"), "--out", str(results / "summary.png")])
    assert within(png_size(results / "summary.png"), (1.3 * 3 + 2, 4))


def test_the_scores_figure_marks_the_split_that_was_made(tmp_path):
    """The cut comes from the split's own reliable list: under selection: random no score
    separates the halves and no line is drawn (it once drew a top-R line the split never used)."""
    from stages import split
    from stages.seg.splits import read_scores, score_threshold

    ids = [f"img/{i}.png" for i in range(10)]
    (tmp_path / "unlabeled.txt").write_text("".join(f"{i}\n" for i in ids))
    (tmp_path / "scores.tsv").write_text("id\tscore\n" + "".join(f"{i}\t{n / 10}\n" for n, i in enumerate(ids)))
    scores = read_scores(tmp_path / "scores.tsv")
    for selection, expected in (("stability", 0.45), ("random", None)):
        split.main(
            [
                "--scores",
                str(tmp_path / "scores.tsv"),
                "--list",
                str(tmp_path / "unlabeled.txt"),
                "--ratio",
                "0.5",
                "--selection",
                selection,
                "--seed",
                "1",
                "--reliable",
                str(tmp_path / "r.txt"),
                "--unreliable",
                str(tmp_path / "u.txt"),
            ]
        )
        reliable = (tmp_path / "r.txt").read_text().split()
        assert score_threshold(scores, reliable) == (pytest.approx(expected) if expected else None)
        figures.main(
            [
                "scores",
                "--scores",
                str(tmp_path / "scores.tsv"),
                "--reliable",
                str(tmp_path / "r.txt"),
                "--out",
                str(tmp_path / f"{selection}.png"),
            ]
        )
        assert png_size(tmp_path / f"{selection}.png")


def test_the_score_histogram_has_a_bin_edge_at_the_split_so_no_reliable_bar_stands_below_it():
    from stages.figures import histogram_edges
    from stages.seg.splits import score_threshold

    rng = np.random.default_rng(0)
    scores = {f"u{i}": float(v) for i, v in enumerate(rng.uniform(0.2, 1.8, 41))}
    reliable = sorted(scores, key=lambda i: -scores[i])[:20]
    cut = score_threshold(scores, reliable)
    edges = histogram_edges(list(scores.values()), cut)
    assert cut in edges and np.all(np.diff(edges) > 0)
    for low, high in zip(edges[:-1], edges[1:], strict=True):  # each bar is of one half alone
        inside = [i for i, v in scores.items() if low <= v < high or (high == edges[-1] and v == high)]
        assert len({i in reliable for i in inside}) <= 1, (low, high)
