"""Where `facedet detect` may write: never into the tree it reads, never over a file it did not write.

The output directory keeps a list of the files detect wrote there (`OUT/.facedet-detect-outputs`,
one path relative to OUT per line), so a second run into the same directory may replace its own
results, while a photo, a note or anything else already there is never touched: the run stops
before writing anything, with one line naming the file.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Sequence
from pathlib import Path

OUTPUTS_LIST = ".facedet-detect-outputs"


def check_out_dir(out_dir: str | os.PathLike) -> None:
    """Raise ValueError (one line) if `out_dir` exists and is not a directory (or lies under a file)."""
    path = Path(out_dir)
    for where in (path, *path.parents):
        if where.exists() and not where.is_dir():
            raise ValueError(f"--out {out_dir}: {where} is a file, not a directory: give a directory for the results")
        if where.exists():
            return


class OutputGuard:
    """The output directory of one detect run.

    `input_dirs`: the folders detect reads (the output directory may be neither one of them nor
    inside one); `input_files`: every file it reads (none may be an output, and the output directory
    may not be the folder holding one: its drawn copies would sit beside the photos, and be read as
    photos by the next run on that folder). Raises ValueError (one line) when `out_dir` breaks a rule."""

    def __init__(self, out_dir: str | os.PathLike, input_dirs: Sequence[Path] = (),
                 input_files: Iterable[Path] = ()) -> None:
        check_out_dir(out_dir)
        self.out_dir = Path(out_dir)
        resolved = self.out_dir.resolve()
        for folder in input_dirs:
            folder = folder.resolve()
            if resolved == folder or folder in resolved.parents:
                raise ValueError(f"--out {out_dir}: lies inside the input folder {folder}: detect never writes into "
                                 f"what it reads; choose an --out outside it (nothing was written)")
        self._inputs = {p.resolve() for p in input_files}
        for item in self._inputs:
            if resolved == item.parent:
                raise ValueError(f"--out {out_dir}: is the folder of the input {item.name}: detect never writes beside "
                                 f"what it reads; choose another --out (nothing was written)")

    def written_before(self) -> set[str]:
        """The files (relative to the output directory, posix) that earlier runs of detect wrote there."""
        listed = self.out_dir / OUTPUTS_LIST
        return set(listed.read_text(encoding="utf-8").splitlines()) if listed.is_file() else set()

    def check(self, names: Iterable[Path]) -> None:
        """Raise ValueError (one line) if one of `names` (relative to the output directory) is an input
        or an existing file that detect did not write. Call it for every output before writing any."""
        ours = self.written_before()
        for name in map(Path, names):
            target = self.out_dir / name
            if target.resolve() in self._inputs or (
                    (target.exists() or target.is_symlink()) and name.as_posix() not in ours):
                raise ValueError(f"--out {self.out_dir}: {target} exists and was not written by facedet detect; "
                                 f"choose another --out or move that file (nothing was written)")

    def record(self, name: Path) -> Path:
        """List `name` as written by detect (before it is written, so a killed run leaves nothing
        unlisted); returns its path under the output directory, parent folders created."""
        target = self.out_dir / name
        target.parent.mkdir(parents=True, exist_ok=True)
        if Path(name).as_posix() not in self.written_before():
            with open(self.out_dir / OUTPUTS_LIST, "a", encoding="utf-8") as listed:
                listed.write(f"{Path(name).as_posix()}\n")
        return target
