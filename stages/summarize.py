"""Gather the methods' metrics into one table: ``summary.tsv``, also printed on stdout.

    python -m stages.summarize --out summary.tsv SupOnly=sup/metrics.json ST=st/metrics.json ...

One row per method: mIoU and the IoU of every class, in percent with two decimals, and
``miou_classes``: how many classes the mIoU is the mean of (``3/4``: a class that neither the
masks nor the predictions hold has no IoU, and that mIoU is over fewer classes than C).
"""

from __future__ import annotations

import json
import logging

from .seg import cli
from .seg.files import write_text

log = logging.getLogger("stpp")


def build_parser():
    p = cli.parser(__doc__.split("\n\n")[0])
    p.add_argument("--out", required=True, help="summary.tsv to write")
    p.add_argument("methods", nargs="+", metavar="NAME=METRICS_JSON", help="method name and its metrics.json")
    return p


def _pct(value) -> str:
    return "nan" if value is None or value != value else f"{100 * value:.2f}"


def summary_table(methods: list[tuple[str, dict]]) -> str:
    names = methods[0][1]["class_names"]
    for method, m in methods:
        if m["class_names"] != names:
            raise ValueError(f"{method} was evaluated with classes {m['class_names']}, the first method with {names}")
    lines = ["\t".join(["method", "miou", *names, "miou_classes"])]
    for method, m in methods:
        measured = sum(m["iou"][n] is not None and m["iou"][n] == m["iou"][n] for n in names)
        row = [method, _pct(m["miou"]), *(_pct(m["iou"][n]) for n in names), f"{measured}/{len(names)}"]
        lines.append("\t".join(row))
    return "\n".join(lines) + "\n"


def fewer_classes(table: str) -> list[str]:
    """A line for each method of a summary.tsv whose mIoU is over fewer classes than C."""
    header, *rows = [line.split("\t") for line in table.strip().splitlines()]
    if "miou_classes" not in header:  # a summary written before the column
        return []
    at = header.index("miou_classes")
    out = []
    for row in rows:
        measured, total = map(int, row[at].split("/"))
        if measured < total:
            missing = [name for name, value in zip(header[2:at], row[2:at], strict=True) if value == "nan"]
            out.append(
                f"{row[0]}: mIoU over {measured} of {total} classes; no mask and no prediction holds "
                f"{', '.join(missing)} (check data.num_classes and data.label_map)"
            )
    return out


def against_supervised(table: str) -> list[str]:
    """One line per method of a summary.tsv against SupOnly, e.g. ``ST: +4.10 mIoU over SupOnly``
    (none without a SupOnly row: there is nothing to compare with)."""
    rows = [line.split("\t") for line in table.strip().splitlines()[1:]]
    miou = {row[0]: float(row[1]) for row in rows}
    if "SupOnly" not in miou:
        return []
    out = []
    for method, value in miou.items():
        if method != "SupOnly":
            diff = value - miou["SupOnly"]
            out.append(
                f"{method}: {diff:+.2f} mIoU {'over' if diff >= 0 else 'under'} SupOnly ({value:.2f} against "
                f"{miou['SupOnly']:.2f})"
            )
    return out


def summarize(args) -> None:
    methods = []
    for item in args.methods:
        name, sep, path = item.partition("=")
        if not sep:
            raise ValueError(f"expected NAME=METRICS_JSON, got {item!r}")
        with open(path) as f:
            methods.append((name, json.load(f)))
    table = summary_table(methods)
    write_text(args.out, table)
    log.info("wrote %s", args.out)
    print(table, end="")


def main(argv=None) -> None:
    cli.run(summarize, build_parser(), argv)


if __name__ == "__main__":
    main()
