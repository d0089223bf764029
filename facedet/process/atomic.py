"""Atomic outputs: write to a temporary sibling, then rename, so a killed stage never
leaves a half-written file or directory where DVC (or the next stage) would trust it.

The temporary sibling of `dir/name` is `dir/.name.tmp-<random>` (git-ignored: `.gitignore` has
`.*.tmp-*`). One left by a killed run (kill -9, power cut) is removed by the next write of the same
output (`remove_stale_temps`), so leftovers never outlive the next run of their stage."""

from __future__ import annotations

import contextlib
import glob
import os
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path


@contextlib.contextmanager
def atomic_path(final: str | os.PathLike, is_dir: bool = False, suffix: str = "") -> Iterator[Path]:
    """Yield a temporary path beside `final`; on success replace `final` with it. `suffix` ends the
    temporary file's name, for writers that choose the format by it (OpenCV's VideoWriter).

    On any exception the temporary file/directory is removed and `final` is left as it was.
    """
    final = Path(final)
    final.parent.mkdir(parents=True, exist_ok=True)
    prefix = remove_stale_temps(final)
    if is_dir:
        tmp = Path(tempfile.mkdtemp(prefix=prefix, dir=final.parent))
    else:
        fd, name = tempfile.mkstemp(prefix=prefix, suffix=suffix, dir=final.parent)
        os.close(fd)
        tmp = Path(name)
    try:
        yield tmp
        if final.is_dir() and not final.is_symlink():
            shutil.rmtree(final)
        elif final.exists() or final.is_symlink():
            final.unlink()
        os.chmod(tmp, 0o755 if is_dir else 0o644)
        os.replace(tmp, final)
    except BaseException:
        if tmp.is_dir():
            shutil.rmtree(tmp, ignore_errors=True)
        else:
            tmp.unlink(missing_ok=True)
        raise


def temp_prefix(final: str | os.PathLike) -> str:
    """The name prefix of `final`'s temporary siblings: '.<name>.tmp-'."""
    return f".{Path(final).name}.tmp-"


def remove_stale_temps(final: str | os.PathLike) -> str:
    """Delete temporary siblings of `final` left by a killed run; return their name prefix.
    Stages never run twice at once (DVC locks the repository), so any such sibling is stale."""
    final = Path(final)
    prefix = temp_prefix(final)
    for stale in final.parent.glob(glob.escape(prefix) + "*"):
        if stale.is_dir() and not stale.is_symlink():
            shutil.rmtree(stale, ignore_errors=True)
        else:
            stale.unlink(missing_ok=True)
    return prefix


def write_text_atomic(path: str | os.PathLike, text: str) -> None:
    """Write `text` to `path` atomically (UTF-8, '\\n' newlines)."""
    with atomic_path(path) as tmp:
        tmp.write_text(text, encoding="utf-8", newline="\n")
