"""Test-session settings shared by every test file.

Under pytest-xdist (``-n auto`` in pyproject.toml: one worker per core) each worker, and every
process it starts, computes with one thread: as many threads as cores, rather than each worker
claiming every core and the workers contending for them.
"""

from __future__ import annotations

import os

if os.environ.get("PYTEST_XDIST_WORKER"):
    os.environ["OMP_NUM_THREADS"] = "1"
    import torch

    torch.set_num_threads(1)


# The longest files first: each takes a worker for minutes, much of it waiting on Snakemake and
# SLURM, while the other worker runs the many short files; started last, they ran alone.
LONGEST_FIRST = ("test_slurm.py", "test_workflow.py")


def pytest_collection_modifyitems(items):
    def rank(item):
        name = item.path.name
        return LONGEST_FIRST.index(name) if name in LONGEST_FIRST else len(LONGEST_FIRST)

    items.sort(key=rank)  # stable: the order within each file and among the rest is kept
