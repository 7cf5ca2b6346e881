"""The config's check before any job: every fault at once, each with its key, its value, what is
allowed and, for a misspelt key, the key meant; no schema dump. Free of Snakemake: the Snakefile
calls it, then Snakemake's own validate fills in the schema's defaults."""

from __future__ import annotations

import difflib
from pathlib import Path

import jsonschema
import yaml


def _schema_at(schema: dict, path) -> dict:
    """The schema node that validates the config at ``path`` (keys), following $ref."""
    node, root = schema, schema
    for key in path:
        while "$ref" in node:
            node = root["$defs"][node["$ref"].split("/")[-1]]
        if isinstance(key, int):
            node = node.get("items", {})
        elif key in node.get("properties", {}):
            node = node["properties"][key]
        else:
            node = node.get("additionalProperties", {})
    while isinstance(node, dict) and "$ref" in node:
        node = root["$defs"][node["$ref"].split("/")[-1]]
    return node


def _where(path) -> str:
    return ".".join(str(key) for key in path) or "the config"


def _allowed(node: dict) -> str:
    """What a schema node allows, in a few words."""
    if "enum" in node:
        return "one of " + ", ".join(map(str, node["enum"]))
    if "oneOf" in node:
        return "; or ".join(_allowed(option) for option in node["oneOf"])
    if "pattern" in node and "description" in node:  # the description says it in words
        return node["description"]
    kind = node.get("type", "a value")
    kinds = " or ".join(kind) if isinstance(kind, list) else kind
    bounds = [
        f"{word} {node[key]}"
        for key, word in (("minimum", ">="), ("exclusiveMinimum", ">"), ("maximum", "<="), ("exclusiveMaximum", "<"))
        if key in node
    ]
    text = f"{kinds}{' ' + ' and '.join(bounds) if bounds else ''}"
    return text.replace("null", "null (none)").replace("object", "a mapping")


def config_problems(config: dict, schema_path: str | Path) -> str | None:
    """The schema's findings as one message (None: the config is valid)."""
    lines = schema_problems(config, schema_path)
    if not lines:
        return None
    return f"the config has {len(lines)} problem(s):\n" + "\n".join(f"  {line}" for line in lines)


def schema_problems(config: dict, schema_path: str | Path) -> list[str]:
    """One line per fault of ``config`` against the schema, in the config's order."""
    schema = yaml.safe_load(Path(schema_path).read_text())
    validator = jsonschema.Draft202012Validator(schema)
    lines = []
    for error in sorted(validator.iter_errors(config), key=lambda e: [str(k) for k in e.absolute_path]):
        path = list(error.absolute_path)
        node = _schema_at(schema, path)
        if error.validator == "additionalProperties":
            known = list(node.get("properties", {}))
            for key in sorted(set(error.instance) - set(known)):
                close = difflib.get_close_matches(str(key), known, n=1)
                hint = (
                    f"; did you mean {_where([*path, close[0]])}?" if close else f"; the keys here: {', '.join(known)}"
                )
                lines.append(f"{_where([*path, key])}: no such key{hint}")
        elif error.validator == "required":
            lines.append(f"{_where(path)}: {error.message}; add it (config/config.schema.yaml describes it)")
        else:
            lines.append(f"{_where(path)}: {error.instance!r} is not allowed; allowed: {_allowed(node)}")
    return lines
