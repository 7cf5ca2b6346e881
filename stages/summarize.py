"""Gather the methods' metrics into one table: ``summary.tsv``, also printed on stdout.

    python -m stages.summarize --out summary.tsv SupOnly=sup/metrics.json ST=st/metrics.json ...

One row per method: mIoU and the IoU of every class, in percent with two decimals.
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
    lines = ["\t".join(["method", "miou", *names])]
    for method, m in methods:
        lines.append("\t".join([method, _pct(m["miou"]), *(_pct(m["iou"][n]) for n in names)]))
    return "\n".join(lines) + "\n"


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
