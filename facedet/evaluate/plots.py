"""Report artefacts of the evaluate stages: PR-curve CSVs for `dvc plots`, PNG figures, and a grid
of val images with boxes drawn (facedet.runtime.drawing). Plotting only: the numbers come from
`facedet.evaluate.wider_eval`.

Boxes here are pixel `x, y, w, h` (ground truth) and `x, y, w, h, score` (predictions).
"""

from __future__ import annotations

import csv
import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from facedet.process.atomic import atomic_path
from facedet.runtime.drawing import draw_boxes

PR_POINTS = 200


def _pyplot():
    import matplotlib

    matplotlib.use("Agg", force=True)
    import matplotlib.pyplot as plt

    return plt


def _save_figure(fig: Any, path: str | os.PathLike) -> None:
    plt = _pyplot()
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png", dpi=100, metadata={"Software": None})
    plt.close(fig)


def downsample_curve(precision: np.ndarray, recall: np.ndarray, points: int = PR_POINTS) -> np.ndarray:
    """At most `points` (recall, precision) rows of a PR curve, evenly spaced over its thresholds,
    always keeping the last one; rows with undefined (NaN) precision are dropped. float64 (n, 2)."""
    precision = np.asarray(precision, dtype=np.float64)
    recall = np.asarray(recall, dtype=np.float64)
    keep = np.flatnonzero(np.isfinite(precision) & np.isfinite(recall))
    if len(keep) > points:
        keep = keep[np.unique(np.linspace(0, len(keep) - 1, points).round().astype(int))]
    return np.stack([recall[keep], precision[keep]], axis=1)


def write_pr_csvs(out_dir: str | os.PathLike, curves: Mapping[str, tuple[np.ndarray, np.ndarray]],
                  points: int = PR_POINTS) -> list[Path]:
    """One CSV per subset, `<out_dir>/<subset>.csv` with columns recall,precision (downsampled),
    the directory written atomically. curves: subset -> (precision, recall).

    dvc.yaml: `plots: - <out_dir>: {x: recall, y: precision}` shows one line per subset.
    """
    paths = []
    with atomic_path(out_dir, is_dir=True) as tmp:
        for subset, (precision, recall) in curves.items():
            rows = downsample_curve(precision, recall, points)
            with open(tmp / f"{subset}.csv", "w", newline="", encoding="utf-8") as handle:
                writer = csv.writer(handle, lineterminator="\n")
                writer.writerow(["recall", "precision"])
                writer.writerows([[f"{r:.6f}", f"{p:.6f}"] for r, p in rows.tolist()])
            paths.append(Path(out_dir) / f"{subset}.csv")
    return paths


def plot_pr_curves(path: str | os.PathLike, curves: Mapping[str, tuple[np.ndarray, np.ndarray]],
                   ap: Mapping[str, float] | None = None, title: str = "WIDER FACE val") -> None:
    """PR-curve PNG, one line per subset, labelled with its AP when given."""
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(6, 5))
    for subset, (precision, recall) in curves.items():
        rows = downsample_curve(precision, recall, points=1000)
        label = subset if ap is None or subset not in ap else f"{subset} (AP {ap[subset]:.3f})"
        ax.plot(rows[:, 0], rows[:, 1], label=label)
    ax.set(xlim=(0, 1), ylim=(0, 1.02), xlabel="recall", ylabel="precision", title=title)
    ax.grid(True, alpha=0.3)
    ax.legend(loc="lower left")
    fig.tight_layout()
    _save_figure(fig, path)


def write_recall_by_size_csv(path: str | os.PathLike, bins: Sequence[Any]) -> None:
    """CSV `min_height_px,face_height_px,faces,recalled,recall` from
    `facedet.evaluate.wider_eval.recall_by_face_size` rows: the bin's lower edge in pixels (the x of
    the `recall_by_size` plot in dvc.yaml), its label ('16-24'), the faces in it, those found, recall."""
    with atomic_path(path) as tmp:
        with open(tmp, "w", newline="", encoding="utf-8") as handle:
            writer = csv.writer(handle, lineterminator="\n")
            writer.writerow(["min_height_px", "face_height_px", "faces", "recalled", "recall"])
            for b in bins:
                recall = "" if not b.faces else f"{b.recall:.6f}"
                writer.writerow([f"{b.lower:g}", b.label, b.faces, b.recalled, recall])


def plot_recall_by_size(path: str | os.PathLike, bins: Sequence[Any], title: str = "recall by face height") -> None:
    """Bar chart PNG of recall per face-height bin, each bar labelled with its face count."""
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(7, 4))
    labels = [b.label for b in bins]
    values = [b.recall if b.faces else 0.0 for b in bins]
    bars = ax.bar(range(len(bins)), values, color="tab:blue")
    for bar, b in zip(bars, bins):
        ax.text(bar.get_x() + bar.get_width() / 2, bar.get_height() + 0.01, f"n={b.faces}",
                ha="center", va="bottom", fontsize=7)
    ax.set_xticks(range(len(bins)), labels, rotation=30, fontsize=8)
    ax.set(ylim=(0, 1.1), xlabel="face height (px)", ylabel="recall", title=title)
    fig.tight_layout()
    _save_figure(fig, path)


def draw_detection_grid(path: str | os.PathLike,
                        samples: Sequence[tuple[np.ndarray, np.ndarray, np.ndarray]],
                        columns: int = 3, cell: int = 320, min_score: float = 0.3) -> None:
    """PNG grid of val images, each fitted into a `cell` x `cell` tile with its boxes drawn.

    samples: (image uint8 H x W x 3, gt pixel x, y, w, h (N, 4), predictions pixel x, y, w, h, score (K, 5)).
    """
    from PIL import Image

    if not samples:
        raise ValueError("no images to draw")
    columns = max(1, min(columns, len(samples)))
    rows = -(-len(samples) // columns)
    grid = Image.new("RGB", (columns * cell, rows * cell), (32, 32, 32))
    for n, (image, gt, preds) in enumerate(samples):
        h, w = np.asarray(image).shape[:2]
        tile = draw_boxes(image, gt, preds, min_score=min_score, scale=min(cell / w, cell / h))
        r, c = divmod(n, columns)
        grid.paste(tile, (c * cell + (cell - tile.width) // 2, r * cell + (cell - tile.height) // 2))
    with atomic_path(path) as tmp:
        grid.save(tmp, format="PNG")
