"""Training curves: DVCLive metrics and TensorBoard scalars, and DVCLive's files put back as they were at
a checkpoint when a run resumes (`dvc repro` deletes a stage's outputs before running it)."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import tensorflow as tf

from facedet.process.atomic import atomic_path, write_text_atomic

LIVE_SNAPSHOT = "dvclive"  # in checkpoint_dir: DVCLive's files as of the newest checkpoint


def open_live(live_dir: str | os.PathLike | None, snapshot: Path, start: int):
    """DVCLive for this run (None: off); a resumed run first gets the curves back as of its checkpoint."""
    if live_dir is None:
        return None
    from dvclive import Live

    if start > 0:
        restore_live_files(live_dir, snapshot, start)
    return Live(str(live_dir), resume=start > 0, save_dvc_exp=False, dvcyaml=None)


def snapshot_live(live_dir: str | os.PathLike, snapshot: Path) -> None:
    """Copy DVCLive's files to `snapshot` (atomically), beside the checkpoint about to be saved."""
    with atomic_path(snapshot, is_dir=True) as tmp:
        shutil.copytree(live_dir, tmp, dirs_exist_ok=True)


def restore_live_files(live_dir: str | os.PathLike, snapshot: str | os.PathLike, start: int) -> None:
    """Make DVCLive's `live_dir` hold the curves of steps 0 .. start-1 exactly: copied back from
    `snapshot` (taken at the checkpoint; `dvc repro` deletes the stage's outputs before running it,
    and a killed run may have logged past its last checkpoint), then every row at step >= start dropped."""
    live_dir, snapshot = Path(live_dir), Path(snapshot)
    if snapshot.is_dir():
        if live_dir.exists():
            shutil.rmtree(live_dir)
        shutil.copytree(snapshot, live_dir)
    for tsv in sorted(live_dir.glob("plots/metrics/**/*.tsv")):
        header, *rows = tsv.read_text(encoding="utf-8").splitlines()
        column = header.split("\t").index("step")
        kept = [row for row in rows if row and int(row.split("\t")[column]) < start]
        if len(kept) != len(rows):
            write_text_atomic(tsv, "\n".join([header, *kept]) + "\n")


def log_metrics(live, board, step: int, metrics: dict[str, float]) -> None:
    """One row of every curve at `step` (0-based index of the step just done); `live`/`board` None: off."""
    if live is not None:
        live.step = step
        for name, value in metrics.items():
            live.log_metric(name, value)
        live.make_summary()
    if board is not None:
        with board.as_default(step=step):
            for name, value in metrics.items():
                tf.summary.scalar(name, value)
