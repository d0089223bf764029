"""Box conventions, their conversions, IoU and the Faster R-CNN box coder: the one place boxes change form.

Conventions (each named in every function that takes boxes, and wherever boxes cross a module boundary):
- corners: normalised `[ymin, xmin, ymax, xmax]` in [0, 1] of the image, shape (..., 4): TFRecords, anchors,
  the model, the TFLite outputs.
- centre: `(ycenter, xcenter, h, w)`, same units, shape (..., 4): what TFLite's post-process op wants for anchors.
- pixel xywh: `x, y, w, h` (top-left corner, width, height) in image pixels, shape (..., 4): WIDER and COCO
  files, every `Detector`'s output rows.
- pixel xyxy: `x1, y1, x2, y2` (top-left and bottom-right corners) in image pixels, shape (..., 4): VOC and
  COCO annotations on their way in, clipping, the official evaluation's overlaps.
- encodings: Faster R-CNN `(ty, tx, th, tw)` with scales y 10, x 10, h 5, w 5 (`SCALE_FACTORS`):
  ty = 10 * (yc - yca) / ha, tx = 10 * (xc - xca) / wa, th = 5 * log(h / ha), tw = 5 * log(w / wa).

Every function works on numpy arrays (and numpy scalars) and on TF tensors alike: it uses `...` indexing
and the math of the input's library (`_ops`). This module never imports TensorFlow itself, so the numpy
runtime (facedet.runtime) and the data stages use it without starting TF; training passes tensors.
"""

from __future__ import annotations

import sys
from types import ModuleType
from typing import Any

import numpy as np

SCALE_FACTORS = (10.0, 10.0, 5.0, 5.0)  # y, x, h, w
_EPS = 1e-8


def _ops(x: Any) -> ModuleType:
    """The library whose math applies to `x`: TensorFlow for a TF tensor (TF is then already imported), else numpy."""
    tf = sys.modules.get("tensorflow")
    return tf if tf is not None and tf.is_tensor(x) else np


def _stack(ops: ModuleType, parts: list) -> Any:
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


def corners_to_pixel_xyxy(boxes, extent_h: float, extent_w: float):
    """(..., 4) normalised `[ymin, xmin, ymax, xmax]` -> (..., 4) pixel `x1, y1, x2, y2`, the unit square
    spanning `extent_h` x `extent_w` px (the image's size, or more where a letterbox pads it; not clipped)."""
    ops = _ops(boxes)
    ymin, xmin, ymax, xmax = (boxes[..., i] for i in range(4))
    return _stack(ops, [xmin * extent_w, ymin * extent_h, xmax * extent_w, ymax * extent_h])


def pixel_xywh_to_xyxy(boxes):
    """(..., 4) pixel `x, y, w, h` -> (..., 4) pixel `x1, y1, x2, y2` (x2 = x + w, y2 = y + h)."""
    ops = _ops(boxes)
    x, y, w, h = (boxes[..., i] for i in range(4))
    return _stack(ops, [x, y, x + w, y + h])


def pixel_xyxy_to_xywh(boxes):
    """(..., 4) pixel `x1, y1, x2, y2` -> (..., 4) pixel `x, y, w, h` (w = x2 - x1, h = y2 - y1)."""
    ops = _ops(boxes)
    x1, y1, x2, y2 = (boxes[..., i] for i in range(4))
    return _stack(ops, [x1, y1, x2 - x1, y2 - y1])


def clip_pixel_xyxy(boxes, image_height: float, image_width: float):
    """(..., 4) pixel `x1, y1, x2, y2` clipped to the image [0, width] x [0, height]; same shape and dtype."""
    ops = _ops(boxes)
    x1, y1, x2, y2 = (boxes[..., i] for i in range(4))
    clip_x = lambda v: ops.minimum(ops.maximum(v, 0), image_width)  # noqa: E731
    clip_y = lambda v: ops.minimum(ops.maximum(v, 0), image_height)  # noqa: E731
    return _stack(ops, [clip_x(x1), clip_y(y1), clip_x(x2), clip_y(y2)])


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
    log = np.log if ops is np else ops.math.log
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
