"""Write docs/config.md, the config reference, from config/config.schema.yaml.

    python docs/make_config_reference.py [--check]

One row per key (its dotted path; experiment keys under ``experiments.<name>``): type, default
and the schema's description. ``--check`` writes nothing and exits 1 when docs/config.md is not
what the schema makes (tests/test_docs.py runs it), so that the reference cannot fall behind.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import yaml

REPO = Path(__file__).resolve().parents[1]
SCHEMA = REPO / "config" / "config.schema.yaml"
OUT = REPO / "docs" / "config.md"

HEADER = """# Config reference

Generated from [`config/config.schema.yaml`](../config/config.schema.yaml) by
`python docs/make_config_reference.py`; do not edit by hand (a test fails when it is out of date).
Snakemake validates every config against the schema and fills in the defaults; a key the schema
does not know is an error that names it. `<name>` is an experiment's name (the `{experiment}`
wildcard); `<kind>` is one of a resource block's names.

| key | type | default | description |
|---|---|---|---|
"""


def resolve(node: dict, schema: dict) -> dict:
    """A node with its $ref followed (its own keys, such as default and description, win)."""
    if "$ref" not in node:
        return node
    target = schema
    for part in node["$ref"].removeprefix("#/").split("/"):
        target = target[part]
    return {**resolve(target, schema), **{k: v for k, v in node.items() if k != "$ref"}}


def type_of(node: dict) -> str:
    if "enum" in node:
        return " \\| ".join(f"`{json.dumps(v)}`" for v in node["enum"])
    kind = node.get("type", "")
    kinds = kind if isinstance(kind, list) else [kind]
    if "array" in kinds and "items" in node:
        kinds = [f"array of {type_of(node['items'])}" if k == "array" else k for k in kinds]
    return " or ".join(kinds)


def default_of(node: dict) -> str:
    if "default" not in node:
        return "(required)" if node.get("_required") else ""
    value = node["default"]
    if isinstance(value, dict) and not value:
        return ""
    return f"`{json.dumps(value)}`"


def rows(node: dict, path: str, schema: dict, required=()) -> list[str]:
    node = resolve(node, schema)
    out = []
    if path:
        cell = (node.get("description") or "").replace("|", "\\|").replace("\n", " ")
        default = "(required)" if path.rsplit(".", 1)[-1] in required and "default" not in node else default_of(node)
        if node.get("type") != "object" or cell:
            out.append(
                f"| `{path}` | {type_of(node) if node.get('type') != 'object' else 'object'} | {default} | {cell} |"
            )
    props = node.get("properties", {})
    refs = {child.get("$ref") for child in props.values()}
    if props and len(refs) == 1 and None not in refs:  # blocks of one shape (resources): the shape once
        kinds = ", ".join(
            f"`{key}`" + (f" ({child['description']})" if child.get("description") else "")
            for key, child in props.items()
        )
        out.append(f"| `{path}.<kind>` | object | | one block per kind of job: {kinds} |")
        return out + rows({"$ref": refs.pop()}, f"{path}.<kind>", schema)
    for key, child in props.items():
        out += rows(child, f"{path}.{key}" if path else key, schema, node.get("required", ()))
    extra = node.get("additionalProperties")
    if isinstance(extra, dict):
        name = "<name>" if path == "experiments" else "<kind>"
        out += rows(extra, f"{path}.{name}", schema)
    return out


def reference() -> str:
    schema = yaml.safe_load(SCHEMA.read_text())
    return HEADER + "\n".join(rows(schema, "", schema)) + "\n"


def main(argv=None) -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--check", action="store_true", help="exit 1 if docs/config.md is out of date; write nothing")
    args = p.parse_args(argv)
    text = reference()
    if args.check:
        if not OUT.exists() or OUT.read_text() != text:
            sys.exit(f"{OUT} is out of date with {SCHEMA}: run python docs/make_config_reference.py")
        return
    OUT.write_text(text)
    print(f"wrote {OUT}")


if __name__ == "__main__":
    main()
