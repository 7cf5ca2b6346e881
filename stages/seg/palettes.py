"""Colour palettes for class-index masks: Pascal VOC's, CamVid's and MSRC-21's, or a file.

A palette is 256 RGB triples, one per mask value, so a mask saved as a palette PNG opens in any
viewer in its data set's colours while its pixel values stay the class indices. Index 255 (the
ignore value) is black, except in Pascal's palette, where it is Pascal's cream outline colour.
numpy-free and torch-free.
"""

from __future__ import annotations

from pathlib import Path

Palette = list[tuple[int, int, int]]


def pascal(n: int = 256) -> Palette:
    """The Pascal VOC colour map: the bits of the index spread over the high bits of R, G, B."""
    colours = []
    for i in range(n):
        r = g = b = 0
        c = i
        for shift in range(7, -1, -1):
            r |= (c & 1) << shift
            g |= ((c >> 1) & 1) << shift
            b |= ((c >> 2) & 1) << shift
            c >>= 3
        colours.append((r, g, b))
    return colours


# SegNet's CamVid colours for Sky, Building, Pole, Road, Pavement, Tree, SignSymbol, Fence, Car,
# Pedestrian, Bicyclist (index 11, void, is black).
CAMVID = [
    (128, 128, 128),
    (128, 0, 0),
    (192, 192, 128),
    (128, 64, 128),
    (60, 40, 222),
    (128, 128, 0),
    (192, 128, 128),
    (64, 64, 128),
    (64, 0, 128),
    (64, 64, 0),
    (0, 128, 192),
]
# MSRC-v2's ground-truth colours are entries of Pascal's colour map: building 1 .. chair 18, then
# road 21 .. boat 25 (19 and 20 unused). MSRC-21 drops horse (5) and mountain (8).
MSRC21 = [pascal(26)[i] for i in (1, 2, 3, 4, 6, 7, 9, 10, 11, 12, 13, 14, 15, 16, 17, 18, 21, 22, 23, 24, 25)]
BUILT_IN = ("pascal", "camvid", "msrc21")


def _full(colours: Palette, ignore: tuple[int, int, int] = (0, 0, 0)) -> Palette:
    """256 entries: the given colours, then Pascal's for any further index, the ignore colour at 255."""
    full = list(colours) + pascal(256)[len(colours) :]
    full[255] = ignore
    return full


def palette(name: str) -> Palette:
    """A built-in palette by name, or a file of one 'R G B' line per class."""
    if name == "pascal":
        return _full(pascal(), (224, 224, 192))
    if name == "camvid":
        return _full(CAMVID + [(0, 0, 0)])
    if name == "msrc21":
        return _full(MSRC21)
    path = Path(name)
    if not path.is_file():
        raise FileNotFoundError(f"palette {name!r} is neither one of {', '.join(BUILT_IN)} nor a file of 'R G B' lines")
    colours = []
    for n, line in enumerate(path.read_text().splitlines(), start=1):
        fields = line.split()
        if not fields or line.lstrip().startswith("#"):
            continue
        try:
            rgb = tuple(int(v) for v in fields)
        except ValueError:
            rgb = ()
        if len(rgb) != 3 or not all(0 <= v <= 255 for v in rgb):
            raise ValueError(f"{path}:{n}: expected 'R G B' with values 0-255, got {line!r}")
        colours.append(rgb)
    return _full(colours)


def flat(colours: Palette) -> list[int]:
    """The palette as PIL's ``putpalette`` wants it."""
    return [v for rgb in colours for v in rgb]
