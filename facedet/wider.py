"""WIDERFace format: the gt txt annotation files, the official eval ground-truth .mat files,
and reading both (and the images) straight from the official zip archives.

Boxes in this module are WIDER pixel boxes `x1, y1, w, h`.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

SUBSETS = ("easy", "medium", "hard")


@dataclass
class EvalImage:
    """One val image of the official evaluation ground truth, in .mat order.

    boxes_xywh: float (n, 4) pixel x1, y1, w, h (a zero-face image has one all-zero row, as in the .mat);
    keep: subset name ('easy'/'medium'/'hard') -> int (k,) 1-based indices of the faces that count.
    """

    event: str
    stem: str
    boxes_xywh: np.ndarray
    keep: dict[str, np.ndarray] = field(default_factory=dict)

    @property
    def key(self) -> str:
        """'<event>/<stem>', the path of its prediction file without '.txt'."""
        return f"{self.event}/{self.stem}"
