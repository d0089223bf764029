"""A stage's processes die with the `dvc` that started them, so no orphan writes outputs later.

If `dvc repro` is killed (kill -9 included), a stage left running would go on and later overwrite
what the next `dvc repro` restored from the cache, and append steps to DVCLive's curves twice.
`die_with_parent()` (called first thing by every stage, and by every worker process) asks Linux to
SIGKILL this process when its parent exits (`prctl(PR_SET_PDEATHSIG)`), and starts a watchdog
thread for the case where the parent is a `sh -c` wrapper around the stage (DVC runs a stage's
`cmd` with `$SHELL -c`; bash and dash exec a single command, so usually the parent is dvc itself):
the watchdog kills this process once the wrapper's own parent is gone. On other systems it does
nothing. Outputs are written atomically (facedet.process.atomic), so a killed stage leaves nothing half done.
"""

from __future__ import annotations

import ctypes
import os
import signal
import sys
import threading
from pathlib import Path

PR_SET_PDEATHSIG = 1
SHELLS = ("sh", "bash", "dash", "zsh", "ksh")
POLL_S = 0.5
_watched: set[int] = set()


def _stat(pid: int) -> tuple[str, str, int, str] | None:
    """(command name, state, parent pid, start time) of `pid` from /proc; None if it is gone."""
    try:
        text = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    name, rest = text[text.index("(") + 1:text.rindex(")")], text[text.rindex(")") + 2:].split()
    return name, rest[0], int(rest[1]), rest[19]


def _is_shell_wrapper(pid: int) -> bool:
    """True for a non-interactive `sh -c '...'` (how DVC runs a stage's cmd)."""
    info = _stat(pid)
    try:
        argv = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
    except OSError:
        return False
    return info is not None and info[0] in SHELLS and b"-c" in argv[1:]


def _watch(pid: int, started: str) -> None:
    """Kill this process once `pid` (started at `started`) has exited."""
    while True:
        info = _stat(pid)
        if info is None or info[3] != started or info[1] in ("Z", "X"):
            os.kill(os.getpid(), signal.SIGKILL)
        threading.Event().wait(POLL_S)


def die_with_parent() -> None:
    """Make this process die (SIGKILL) as soon as the process that started it does (Linux only)."""
    if not sys.platform.startswith("linux"):
        return
    parent = os.getppid()
    libc = ctypes.CDLL(None, use_errno=True)
    libc.prctl(PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)
    if os.getppid() != parent:  # the parent died before prctl took effect
        os.kill(os.getpid(), signal.SIGKILL)
    if _is_shell_wrapper(parent) and (info := _stat(parent)) is not None:
        grandparent = info[2]
        if grandparent > 1 and grandparent not in _watched and (outer := _stat(grandparent)) is not None:
            _watched.add(grandparent)
            threading.Thread(target=_watch, args=(grandparent, outer[3]), daemon=True,
                             name="die-with-parent").start()
