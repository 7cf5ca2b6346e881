"""Test-session settings shared by every test file.

Under pytest-xdist (``-n auto`` in pyproject.toml: one worker per core and one more, see
pytest_xdist_auto_num_workers) each worker, and every process it starts, computes with one
thread, rather than each worker claiming every core and the workers contending for them.
"""

from __future__ import annotations

import os

import pytest
from leftovers import end_processes_under

from stages.seg.cli import usable_cores

if os.environ.get("PYTEST_XDIST_WORKER"):
    os.environ["OMP_NUM_THREADS"] = "1"
    import torch

    torch.set_num_threads(1)


# The longest files first: each takes a worker for minutes, much of it waiting on Snakemake and
# SLURM, while the other workers run the many short files; started last, they ran alone.
# pytest-xdist would re-sort the files by their number of tests (most first) and start the SLURM
# file, one test, last: pyproject.toml turns that off with --no-loadscope-reorder.
LONGEST_FIRST = (
    "test_slurm.py",
    "test_workflow.py",
    "test_workflow_configs.py",
    "test_faults.py",
    "test_distributed.py",
)


def pytest_xdist_auto_num_workers(config):
    """One worker more than cores for ``-n auto``: the SLURM test spends most of its minutes
    waiting on the scheduler's status checks and the workflow tests on Snakemake, so with one
    worker per core a third of the machine sat idle (2 cores: 12.2 minutes, 62 % busy)."""
    return usable_cores() + 1


def pytest_collection_modifyitems(items):
    def rank(item):
        name = item.path.name
        return LONGEST_FIRST.index(name) if name in LONGEST_FIRST else len(LONGEST_FIRST)

    items.sort(key=rank)  # stable: the order within each file and among the rest is kept


@pytest.fixture(scope="session", autouse=True)
def nothing_left_behind(tmp_path_factory):
    """At the end of each worker's session, no process may still run in (or name) its temporary
    folders: a workflow run, a SLURM job, a DDP process or a daemon that a test forgot. Those found
    are killed, and the session errs naming them."""
    yield
    left = end_processes_under(tmp_path_factory.getbasetemp())
    if left:
        raise AssertionError(
            "processes left behind by the tests (killed now): "
            + "; ".join(f"{pid}: {cmd[:200]}" for pid, cmd in left.items())
        )
