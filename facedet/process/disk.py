"""Disk full ends a stage with one line naming the path and the space needed, never a traceback.

`require_free_space` checks before work whose size is known (a download of a pinned size, shards
about as large as the images they hold, checkpoints of known variables); `translate_disk_full`
turns a write that still fails for want of space (`ENOSPC` from Python, TensorFlow's
`ResourceExhaustedError: ... No space left on device`) into `DiskFullError`, and
`exit_on_disk_full(stage)` turns that into the stage's one-line exit (status 1).
"""

from __future__ import annotations

import contextlib
import errno
import os
import shutil
from collections.abc import Iterator
from pathlib import Path

NO_SPACE = "No space left on device"


class DiskFullError(RuntimeError):
    """Not enough free space for an output; the message names the path and the space needed."""


def human(size: float) -> str:
    """'1.4 GB', '512.0 KB'... (powers of 1000, as `df -H` prints)."""
    for unit in ("B", "KB", "MB", "GB"):
        if abs(size) < 1000 or unit == "GB":
            return f"{size:.0f} {unit}" if unit == "B" else f"{size:.1f} {unit}"
        size /= 1000
    return f"{size:.1f} GB"


def free_bytes(path: str | os.PathLike) -> int:
    """Free bytes on the filesystem that holds `path` (its nearest existing ancestor)."""
    path = Path(path).absolute()
    while not path.exists():
        path = path.parent
    return shutil.disk_usage(path).free


def require_free_space(path: str | os.PathLike, need: int, what: str) -> None:
    """Raise DiskFullError unless the filesystem holding `path` has `need` bytes free for `what`."""
    free = free_bytes(path)
    if need > free:
        raise DiskFullError(f"{path}: {what} needs {human(need)} free, only {human(free)} left on that disk")


def is_disk_full(err: BaseException) -> bool:
    """True for an error that means the disk is full, from Python or from TensorFlow."""
    return (isinstance(err, OSError) and err.errno in (errno.ENOSPC, errno.EDQUOT)) or NO_SPACE in str(err)


@contextlib.contextmanager
def translate_disk_full(path: str | os.PathLike, need: int | None = None) -> Iterator[None]:
    """Inside, a disk-full error becomes DiskFullError naming `path` (and `need` bytes, if known)."""
    try:
        yield
    except DiskFullError:
        raise
    except Exception as err:
        if not is_disk_full(err):
            raise
        needed = f"; it needs about {human(need)} free" if need else ""
        raise DiskFullError(f"{path}: disk full while writing ({NO_SPACE}), {human(free_bytes(path))} left"
                            f"{needed}") from None


@contextlib.contextmanager
def exit_on_disk_full(stage: str, path: str | os.PathLike, need: int | None = None) -> Iterator[None]:
    """Around a stage's work: disk full anywhere inside ends the process with the one line
    '<stage>: error: <path>: ...' on stderr and exit status 1."""
    try:
        with translate_disk_full(path, need):
            yield
    except DiskFullError as err:
        raise SystemExit(f"{stage}: error: {err}") from None
