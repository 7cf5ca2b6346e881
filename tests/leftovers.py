"""Processes that a test left behind: those whose working directory or command line lies under a
folder (a test's temporary folder), found in /proc; Linux only (elsewhere: none found)."""

from __future__ import annotations

import os
import signal
import time
from pathlib import Path


def _ancestors() -> set[int]:
    out, pid = set(), os.getpid()
    while pid > 1:
        out.add(pid)
        try:
            pid = int(Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[1])
        except (OSError, ValueError, IndexError):
            break
    return out


def processes_under(folder: Path) -> dict[int, str]:
    """{pid: command line} of the live processes that run in ``folder`` or name it."""
    folder = str(Path(folder).resolve())
    mine, found = _ancestors(), {}
    for entry in Path("/proc").glob("[0-9]*"):
        pid = int(entry.name)
        if pid in mine:
            continue
        try:
            cmdline = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace").strip()
            state = (entry / "stat").read_text().rsplit(")", 1)[1].split()[0]
            cwd = os.readlink(entry / "cwd")
        except OSError:  # gone, or not ours to read
            continue
        if state == "Z":  # exited, waiting to be reaped: not running
            continue
        if cwd == folder or cwd.startswith(folder + os.sep) or folder in cmdline:
            found[pid] = cmdline or f"[pid {pid}]"
    return found


def end_processes_under(folder: Path, grace: float = 15.0) -> dict[int, str]:
    """Wait up to ``grace`` seconds for the processes under ``folder`` to end, then SIGKILL the
    rest; returns those that had to be killed (what a test left behind)."""
    deadline = time.time() + grace
    left = processes_under(folder)
    while left and time.time() < deadline:
        time.sleep(0.5)
        left = processes_under(folder)
    for pid in left:
        try:
            os.kill(pid, signal.SIGKILL)
        except OSError:
            pass
    return left
