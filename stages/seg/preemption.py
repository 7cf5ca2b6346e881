"""Preemption: a job asked to stop saves its work before it goes.

SIGTERM (``scancel``, a preempting job, a drained node, Snakemake stopping its jobs) and SIGUSR1
(SLURM's warning before the time limit, which the profile asks for with ``--signal``) are
remembered instead of ending the process. The trainer checks between two iterations, writes its
resume state and leaves with :data:`EXIT_PREEMPTED`; the retry continues from that iteration.
DataLoader workers ignore both signals (SLURM signals every process of the job) and are shut
down by the trainer as it leaves.
"""

from __future__ import annotations

import signal
import threading

STOP_SIGNALS = (signal.SIGTERM, signal.SIGUSR1)
EXIT_PREEMPTED = 75  # EX_TEMPFAIL: try again; any non-zero exit makes Snakemake retry the job


class Preempted(Exception):
    """Asked to stop; the resume state is saved and a re-run continues from it."""


class StopRequests:
    """``with StopRequests() as stop:`` ... ``if stop.received:`` -- the name of the first stop
    signal received, or None. Handlers are installed in the main thread only (Python's rule) and
    the previous ones are restored on exit."""

    def __init__(self):
        self.received: str | None = None
        self._previous: dict = {}

    def _handle(self, signum, frame) -> None:
        self.received = self.received or signal.Signals(signum).name

    def __enter__(self) -> "StopRequests":
        if threading.current_thread() is threading.main_thread():
            for sig in STOP_SIGNALS:
                self._previous[sig] = signal.signal(sig, self._handle)
        return self

    def __exit__(self, *exc) -> bool:
        for sig, handler in self._previous.items():
            signal.signal(sig, handler)
        return False


def ignore_stop_signals(worker_id: int | None = None) -> None:
    """A DataLoader ``worker_init_fn``: the worker outlives a stop signal until the trainer,
    having saved its state, shuts it down."""
    for sig in STOP_SIGNALS:
        signal.signal(sig, signal.SIG_IGN)
