"""Lint and format: ruff for the Python, snakefmt and `snakemake --lint` for the workflow (the
Snakemake workflow catalog's checks), with the settings in pyproject.toml."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent


def tool(name: str) -> str:
    path = BIN / name if (BIN / name).exists() else shutil.which(name)
    if path is None:
        pytest.fail(f"{name} is not installed: pip install -e '.[test]' installs it")
    return str(path)


@pytest.mark.parametrize(
    "cmd",
    [
        ["ruff", "check", "."],
        ["ruff", "format", "--check", "."],
        ["snakefmt", "--check", "Snakefile", "rules/"],
    ],
    ids=lambda cmd: " ".join(cmd[:2]),
)
def test_the_code_passes(cmd):
    proc = subprocess.run([tool(cmd[0]), *cmd[1:]], cwd=REPO, capture_output=True, text=True)
    assert proc.returncode == 0, f"{' '.join(cmd)}:\n{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}"


def test_snakemake_lint_finds_nothing():
    proc = subprocess.run(
        [sys.executable, "-m", "snakemake", "--snakefile", str(REPO / "Snakefile"), "--lint"],
        cwd=REPO,  # the default config's paths are the repository's
        capture_output=True,
        text=True,
    )
    text = proc.stdout + proc.stderr
    assert proc.returncode == 0 and "Congratulations" in text, text[-3000:]


def test_no_function_of_the_product_is_over_80_lines():
    """Stages, library and benchmarks read as small steps (issue 29); tests may be longer."""
    import ast

    files = [*REPO.glob("stages/**/*.py"), *REPO.glob("benchmarks/*.py"), *REPO.glob("docs/*.py")]
    long = [
        f"{path.relative_to(REPO)}:{node.lineno} {node.name} ({node.end_lineno - node.lineno + 1} lines)"
        for path in files
        for node in ast.walk(ast.parse(path.read_text()))
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)) and node.end_lineno - node.lineno + 1 > 80
    ]
    assert not long, "split these: " + "; ".join(long)


def test_no_test_file_imports_another():
    """What the tests share lives in tests/helpers.py (and the harnesses beside it), never in a
    test module that another one imports: importing a test module runs its module-level setup
    and collects its tests twice under some runners."""
    for path in sorted((REPO / "tests").glob("test_*.py")):
        for line in path.read_text().splitlines():
            words = line.split()
            if words[:1] in (["from"], ["import"]) and len(words) > 1:
                assert not words[1].startswith("test_"), f"{path.name}: {line.strip()}"
