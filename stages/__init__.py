"""ST / ST++ stage command-line programs (``python -m stages.<name>``).

Importing the package (every stage does, before torch) sets how OpenMP threads wait: see
:data:`OPENMP_WAIT`.
"""

import os

# How long an idle OpenMP thread spins before it sleeps (libgomp, which torch's CPU build uses).
# libgomp's default, 300,000 spins, made a 2-thread training job beside one busy process on 2
# cores 4-15x slower (a thread spins while the sibling it waits for is descheduled);
# OMP_WAIT_POLICY=PASSIVE (no spin) cost a job alone a third of its speed. This spin count kept
# both (docs/performance.md, "Sharing the CPU"; benchmarks/performance.py --parts contention).
# Set before torch loads libgomp, and only where the user set neither variable.
OPENMP_WAIT = {"GOMP_SPINCOUNT": "10000"}

if not {"OMP_WAIT_POLICY", "GOMP_SPINCOUNT"} & set(os.environ):
    os.environ.update(OPENMP_WAIT)
