"""Atomic file writes with errors that name the path, and the cleanup of killed jobs' leftovers.

Every stage output goes through :func:`atomic_path`, so a crash (or a killed cluster job)
never leaves a half-written file under its final name: Snakemake then sees the output as
missing and re-runs the job instead of feeding a truncated file downstream. A killed job's
temporary file (``.<name>.tmp-<host>-<pid>``) is removed by the next write of the same output
and by :func:`remove_stale_temporaries`, which stages call at their start.

Torch files (:func:`save_torch`, :func:`load_torch`) are loaded with ``weights_only=True``
(tensors and plain values only, never code); a file that cannot be loaded so is refused with a
message naming it and the fix. torch is imported by those two functions only, so that the
Snakefile can import this module without it.
"""

from __future__ import annotations

import contextlib
import errno
import json
import logging
import os
import pickle
import re
import shutil
import socket
from pathlib import Path
from typing import Any, Iterator

log = logging.getLogger("stpp")

# errno values that mean "this file system will not take the write", and what to do about each.
WRITE_FIXES = {
    errno.ENOSPC: "the disk is full: free space there, or run the workflow in a folder on a larger disk",
    errno.EDQUOT: "the disk quota is exceeded: free space there, or run the workflow on another file system",
    errno.EFBIG: "the file is larger than this system or job allows (ulimit -f): raise the limit",
    errno.EROFS: "the file system is read-only: run the workflow in a writable folder (snakemake --directory)",
    errno.EACCES: "no permission to write there: fix the folder's permissions or run in a writable folder",
    errno.EPERM: "no permission to write there: fix the folder's permissions or run in a writable folder",
}


def write_error(path: str | os.PathLike, err: BaseException) -> OSError | None:
    """An OSError naming ``path`` and the fix when ``err`` is a failed write, else None.

    Libraries report a full disk in their own words (h5py: 'errno = 28'); both forms count."""
    code = getattr(err, "errno", None)
    if code not in WRITE_FIXES:
        code = next((c for c in WRITE_FIXES if f"errno = {c}," in str(err)), None)
    if code is None:
        return None
    free = ""
    with contextlib.suppress(OSError):
        free = f" ({shutil.disk_usage(Path(path).parent).free / 2**20:.0f} MB free there)"
    return OSError(code, f"cannot write {path}: {os.strerror(code)}{free}; {WRITE_FIXES[code]}")


def _temporary_name(path: Path) -> Path:
    return path.with_name(f".{path.name}.tmp-{socket.gethostname()}-{os.getpid()}")


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def remove_stale_temporaries(*paths: str | os.PathLike) -> None:
    """Delete the temporary files that killed jobs left for these outputs.

    Snakemake never runs two jobs for one output at a time, so a temporary file of the same
    output is stale unless its writer is alive on this host (a stage run by hand, say)."""
    host = socket.gethostname()
    for path in map(Path, paths):
        if not path.parent.is_dir():
            continue
        for tmp in path.parent.glob(f".{path.name}.tmp-*"):
            writer_host, _, pid = tmp.name.rsplit(".tmp-", 1)[1].rpartition("-")
            if pid.isdigit() and int(pid) != os.getpid() and not (writer_host == host and _alive(int(pid))):
                with contextlib.suppress(FileNotFoundError):
                    size = tmp.stat().st_size
                    tmp.unlink()
                    log.info("removed %s (%.1f MB) left by a killed job", tmp, size / 2**20)


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike) -> Iterator[Path]:
    """Yield a temporary sibling path; rename it onto ``path`` only if the block succeeds."""
    path = Path(path)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
    except OSError as err:
        raise (write_error(path, err) or err) from err
    remove_stale_temporaries(path)
    tmp = _temporary_name(path)
    try:
        yield tmp
        os.replace(tmp, path)
    except OSError as err:
        raise (write_error(path, err) or err) from err
    finally:
        with contextlib.suppress(FileNotFoundError):
            tmp.unlink()


def write_text(path: str | os.PathLike, text: str) -> None:
    with atomic_path(path) as tmp:
        tmp.write_text(text)


def write_json(path: str | os.PathLike, obj: Any) -> None:
    write_text(path, json.dumps(obj, indent=2, sort_keys=False) + "\n")


class CheckpointError(ValueError):
    """A checkpoint or weights file that cannot be used, named with the fix."""


def save_torch(obj: Any, path: str | os.PathLike) -> None:
    import torch

    with atomic_path(path) as tmp:
        try:
            torch.save(obj, tmp)
        except RuntimeError as err:
            # torch reports a failed write ("unexpected pos", "file write failed") without the
            # path or the cause: write to the same file again to learn the cause from the OS.
            if not re.search(r"unexpected pos|write failed|failed writing", str(err)):
                raise
            cause = _probe_write(tmp) or OSError(errno.EIO, f"torch could not write the file ({err})")
            raise (write_error(path, cause) or OSError(cause.errno, f"cannot write {path}: {cause}")) from err


def _probe_write(path: Path) -> OSError | None:
    """The OSError that appending a megabyte to ``path`` raises, if any."""
    try:
        with open(path, "ab") as f:
            f.write(bytes(2**20))
            f.flush()
            os.fsync(f.fileno())
    except OSError as err:
        return err
    return None


def load_torch(path: str | os.PathLike, what: str = "checkpoint") -> Any:
    """``torch.load`` with ``weights_only=True`` and errors that name the file and the fix."""
    import torch

    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{what} file not found: {path}")
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except (pickle.UnpicklingError, RuntimeError, EOFError, OSError) as err:
        # torch's own message advises weights_only=False, i.e. running code from the file: never.
        text = str(err)
        if "Unsupported global" in text:
            reason = (
                "it holds pickled Python objects (a whole model?), not only tensors; stpp loads tensors "
                "only. Save a state dict instead: torch.save(model.state_dict(), path)"
            )
        elif isinstance(err, EOFError) or re.search(r"zip archive|central directory|unexpected EOF", text):
            reason = f"truncated or corrupt ({text.split('. ')[0]})"
        else:
            reason = "it is not a PyTorch checkpoint (random or foreign bytes, or torch's legacy format)"
        raise CheckpointError(
            f"cannot load {what} {path}: {reason}. Replace the file, or delete it and re-run the job that makes it."
        ) from None
