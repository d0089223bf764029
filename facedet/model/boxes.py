"""Box conventions, IoU and the Faster R-CNN box coder.

Conventions (named in every function that takes boxes):
- corners: normalised `[ymin, xmin, ymax, xmax]` in [0, 1], float32, shape (..., 4) — the model side.
- centre:  `(ycenter, xcenter, h, w)`, same units, shape (..., 4) — what TFLite's post-process op wants
  for anchors.
- WIDER pixel `x, y, w, h` (top-left corner, width, height) in image pixels, shape (..., 4).
- encodings: Faster R-CNN `(ty, tx, th, tw)` with scales y 10, x 10, h 5, w 5 (`SCALE_FACTORS`):
  ty = 10 * (yc - yca) / ha, tx = 10 * (xc - xca) / wa, th = 5 * log(h / ha), tw = 5 * log(w / wa).

Functions work on numpy arrays and on TF tensors alike (they use only `...` indexing and the
`np`/`tf` math the input picks), except the `*_np` helpers, which are numpy only.
"""

from __future__ import annotations

import numpy as np
import tensorflow as tf

SCALE_FACTORS = (10.0, 10.0, 5.0, 5.0)  # y, x, h, w
_EPS = 1e-8


def _ops(x):
    return np if isinstance(x, np.ndarray) else tf


def _stack(ops, parts):
    return ops.stack(parts, axis=-1)


def corners_to_centre(boxes):
    """(..., 4) `[ymin, xmin, ymax, xmax]` -> (..., 4) `(ycenter, xcenter, h, w)`."""
    ops = _ops(boxes)
    ymin, xmin, ymax, xmax = (boxes[..., i] for i in range(4))
    return _stack(ops, [(ymin + ymax) / 2, (xmin + xmax) / 2, ymax - ymin, xmax - xmin])


def centre_to_corners(boxes):
    """(..., 4) `(ycenter, xcenter, h, w)` -> (..., 4) `[ymin, xmin, ymax, xmax]`."""
    ops = _ops(boxes)
    yc, xc, h, w = (boxes[..., i] for i in range(4))
    return _stack(ops, [yc - h / 2, xc - w / 2, yc + h / 2, xc + w / 2])


def pixel_xywh_to_corners(boxes, image_height: float, image_width: float):
    """(..., 4) pixel `x, y, w, h` -> (..., 4) normalised `[ymin, xmin, ymax, xmax]` (not clipped)."""
    ops = _ops(boxes)
    x, y, w, h = (boxes[..., i] for i in range(4))
    return _stack(ops, [y / image_height, x / image_width, (y + h) / image_height, (x + w) / image_width])


def pairwise_iou(boxes_a, boxes_b):
    """IoU of every pair: (N, 4) x (M, 4) `[ymin, xmin, ymax, xmax]` -> (N, M) float.

    Degenerate (zero-area) boxes get IoU 0 with everything.
    """
    return aligned_iou(boxes_a[:, None, :], boxes_b[None, :, :])


def encode_boxes(boxes, anchors):
    """Faster R-CNN encodings of `boxes` relative to `anchors`.

    boxes, anchors: (..., 4) `[ymin, xmin, ymax, xmax]` (broadcastable) -> (..., 4) `(ty, tx, th, tw)`
    with `SCALE_FACTORS`.
    """
    ops = _ops(boxes)
    yc, xc, h, w = (corners_to_centre(boxes)[..., i] for i in range(4))
    yca, xca, ha, wa = (corners_to_centre(anchors)[..., i] for i in range(4))
    h = ops.maximum(h, _EPS)
    w = ops.maximum(w, _EPS)
    sy, sx, sh, sw = SCALE_FACTORS
    log = np.log if ops is np else tf.math.log
    return _stack(ops, [sy * (yc - yca) / ha, sx * (xc - xca) / wa, sh * log(h / ha), sw * log(w / wa)])


def decode_boxes(encodings, anchors):
    """Inverse of `encode_boxes`: (..., 4) `(ty, tx, th, tw)` + (..., 4) anchors `[ymin, xmin, ymax, xmax]`
    -> (..., 4) boxes `[ymin, xmin, ymax, xmax]` (not clipped)."""
    ops = _ops(encodings)
    yca, xca, ha, wa = (corners_to_centre(anchors)[..., i] for i in range(4))
    sy, sx, sh, sw = SCALE_FACTORS
    ty, tx, th, tw = (encodings[..., i] for i in range(4))
    yc = ty / sy * ha + yca
    xc = tx / sx * wa + xca
    h = ops.exp(th / sh) * ha
    w = ops.exp(tw / sw) * wa
    return centre_to_corners(_stack(ops, [yc, xc, h, w]))


def aligned_iou(boxes_a, boxes_b):
    """IoU of each box with the box at the same place: (..., 4) x (..., 4) `[ymin, xmin, ymax, xmax]`
    (broadcastable) -> (...) float. Degenerate (zero-area) boxes get IoU 0."""
    ops = _ops(boxes_a)
    a, b = boxes_a, boxes_b
    inter_h = ops.maximum(ops.minimum(a[..., 2], b[..., 2]) - ops.maximum(a[..., 0], b[..., 0]), 0.0)
    inter_w = ops.maximum(ops.minimum(a[..., 3], b[..., 3]) - ops.maximum(a[..., 1], b[..., 1]), 0.0)
    inter = inter_h * inter_w
    area_a = ops.maximum(a[..., 2] - a[..., 0], 0.0) * ops.maximum(a[..., 3] - a[..., 1], 0.0)
    area_b = ops.maximum(b[..., 2] - b[..., 0], 0.0) * ops.maximum(b[..., 3] - b[..., 1], 0.0)
    union = area_a + area_b - inter
    return inter / ops.maximum(union, _EPS)
