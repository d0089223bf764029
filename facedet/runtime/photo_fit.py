"""The photo <-> model-input mapping every detector shares: fit a photo to the square input, map
normalised `[ymin, xmin, ymax, xmax]` boxes back to pixel `x, y, w, h` in the photo.

Resize (`RESIZE_MODES`): 'stretch', plain bilinear to the model input, aspect not kept, half-pixel
centres, no antialiasing: `tf.image.resize(image, size)` (method 'bilinear', antialias=False), which
is what training uses, to within one grey level; or 'letterbox', the same resize keeping the aspect
(longer side = input side), the photo at the top-left of a grey canvas: what a model trained on
native-scale square crops (facedet.train.scale_crop) sees. The resize is OpenCV's (`cv2.resize`,
INTER_LINEAR: the same sampling, in SIMD fixed-point code): of the libraries installed it is the one
that computes those numbers fastest (docs/speed.md: 29-44x PIL and tf.image on WIDER photos), and it
needs no TensorFlow, so the `.tflite` runner needs none when `ai_edge_litert` is installed.
`fit_to_input` writes into a caller's buffer when given one (the interpreter's input tensor: no
per-call allocation). Boxes are normalised, so they map back exactly.
"""

from __future__ import annotations

import cv2
import numpy as np

from facedet.model.boxes import clip_pixel_xyxy, corners_to_pixel_xyxy, pixel_xyxy_to_xywh
from facedet.runtime.detector_protocol import sort_by_score

RESIZE_MODES = ("stretch", "letterbox")
LETTERBOX_FILL = 128  # uint8 grey of the letterbox padding (~0 after the model's [-1, 1] normalisation)



def resize_bilinear(image: np.ndarray, size: tuple[int, int], out: np.ndarray | None = None) -> np.ndarray:
    """Resize uint8 (H, W, C) to `size` = (height, width) like `tf.image.resize` bilinear (half-pixel
    centres, no antialias; within one grey level: OpenCV rounds its weights to fixed point).
    out: a uint8 `size` + (C,) array (or view) to write into; returns it, else a new array."""
    image = np.asarray(image)
    out_h, out_w = size
    if image.shape[:2] == (out_h, out_w):
        if out is None:
            return image.astype(np.uint8, copy=False)
        out[...] = image
        return out
    resized = cv2.resize(image, (out_w, out_h), dst=out, interpolation=cv2.INTER_LINEAR)
    if out is not None and resized is not out and not np.shares_memory(resized, out):
        out[...] = resized  # OpenCV could not write in place (e.g. a strided view): copy once
    return out if out is not None else resized


def fit_to_input(image: np.ndarray, size: tuple[int, int], resize: str,
                 out: np.ndarray | None = None) -> tuple[np.ndarray, tuple[float, float]]:
    """uint8 (H, W, 3) photo -> (uint8 `size` (height, width) model input, (extent_h, extent_w)): the
    photo px spanned by the whole input, so a normalised box maps back as `y * extent_h, x * extent_w`.
    resize: 'stretch' (extent = the photo) or 'letterbox' (see the module docstring).
    out: a uint8 (height, width, 3) buffer to write the model input into (returned), else a new array."""
    height, width = image.shape[:2]
    if resize == "stretch":
        return resize_bilinear(image, size, out), (float(height), float(width))
    if resize != "letterbox":
        raise ValueError(f"resize must be one of {RESIZE_MODES}, got {resize!r}")
    ratio = min(size[0] / height, size[1] / width)
    inner = (max(1, min(size[0], round(height * ratio))), max(1, min(size[1], round(width * ratio))))
    canvas = np.empty((*size, 3), np.uint8) if out is None else out
    canvas[inner[0]:] = LETTERBOX_FILL  # the padding: below the photo and right of it
    canvas[:inner[0], inner[1]:] = LETTERBOX_FILL
    resize_bilinear(image, inner, canvas[:inner[0], :inner[1]])
    return canvas, (height * size[0] / inner[0], width * size[1] / inner[1])


def corners_to_photo_xywh(corners: np.ndarray, scores: np.ndarray, photo_size: tuple[int, int],
                          extent: tuple[float, float]) -> np.ndarray:
    """Normalised `[ymin, xmin, ymax, xmax]` (K, 4) on the model input + scores (K,) -> float32 (K, 5)
    pixel `x, y, w, h, score` in the photo (clipped to it, empty boxes dropped), score-descending.
    extent: from `fit_to_input`."""
    xyxy = clip_pixel_xyxy(corners_to_pixel_xyxy(corners, *extent), *photo_size)
    dets = np.concatenate([pixel_xyxy_to_xywh(xyxy), scores[:, None]], axis=1).astype(np.float32).reshape(-1, 5)
    return sort_by_score(dets[(dets[:, 2] > 0) & (dets[:, 3] > 0)])
