"""Boxes drawn on a photo: ground truth in cyan, detections coloured by score (red low, green high).
`facedet detect` draws its results with it, the evaluation's detection grid its val images.

Boxes are pixel `x, y, w, h` (ground truth, (N, 4)) and `x, y, w, h, score` (detections, (K, 5)).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

GT_COLOUR = (0, 255, 255)


def score_colour(score: float) -> tuple[int, int, int]:
    """RGB of a detection score in [0, 1]: red (low) through yellow to green (high)."""
    s = float(np.clip(score, 0.0, 1.0))
    return (int(round(255 * min(1.0, 2 * (1 - s)))), int(round(255 * min(1.0, 2 * s))), 0)


def draw_boxes(image: np.ndarray, gt_xywh: np.ndarray, pred_xywh_score: np.ndarray,
               min_score: float = 0.3, scale: float = 1.0, label_scores: bool = False) -> Any:
    """A PIL image: `image` (uint8 H x W x 3) resized by `scale`, ground truth in cyan (1 px),
    predictions with score >= min_score coloured by score (2 px, low scores drawn first); with
    `label_scores`, each prediction's score ("0.87") in black on a tab of its colour above its
    top-left corner (inside the box when the box touches the top edge)."""
    from PIL import Image, ImageDraw, ImageFont

    img = Image.fromarray(np.asarray(image, dtype=np.uint8))
    if scale != 1.0:
        img = img.resize((max(1, round(img.width * scale)), max(1, round(img.height * scale))), Image.BILINEAR)
    draw = ImageDraw.Draw(img)

    def rect(box: Sequence[float]) -> list[float]:
        x, y, w, h = (float(v) * scale for v in box[:4])
        return [x, y, x + max(w, 0.0), y + max(h, 0.0)]

    for box in np.asarray(gt_xywh, dtype=np.float64).reshape(-1, 4):
        draw.rectangle(rect(box), outline=GT_COLOUR, width=1)
    preds = np.asarray(pred_xywh_score, dtype=np.float64).reshape(-1, 5)
    preds = preds[preds[:, 4] >= min_score]
    font = ImageFont.load_default(size=max(10, min(img.width, img.height) // 40)) if label_scores else None
    for box in preds[np.argsort(preds[:, 4], kind="stable")]:
        colour = score_colour(box[4])
        corners = rect(box)
        draw.rectangle(corners, outline=colour, width=2)
        if label_scores:
            text = f"{box[4]:.2f}"
            left, top, right, bottom = draw.textbbox((0, 0), text, font=font)
            tab_w, tab_h = right - left + 4, bottom - top + 4
            y = corners[1] - tab_h if corners[1] >= tab_h else corners[1]
            draw.rectangle([corners[0], y, corners[0] + tab_w, y + tab_h], fill=colour)
            draw.text((corners[0] + 2 - left, y + 2 - top), text, fill=(0, 0, 0), font=font)
    return img
