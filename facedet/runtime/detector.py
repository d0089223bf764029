"""What a face detector is to its users (`Detector`), and the photo <-> model-input mapping every
detector shares: fit a photo to the square input, map normalised boxes back to the photo, sort.

A detector takes an RGB uint8 (H, W, 3) photo of any size and returns numpy float32 (K, 5) pixel
`x, y, w, h, score` in that photo (clipped to it), sorted by score descending: what the official
WIDER evaluation reads, and what `facedet detect`, the evaluate stages and the real-face benchmark
consume. The Keras model (facedet.runtime.keras_detector) and the exported `.tflite`
(facedet.runtime.tflite_detector) both implement it.

Resize (`RESIZE_MODES`): 'stretch', plain bilinear to the model input, aspect not kept, half-pixel
centres, no antialiasing: `tf.image.resize(image, size)` (method 'bilinear', antialias=False), which
is what training uses, to within one grey level; or 'letterbox', the same resize keeping the aspect
(longer side = input side), the photo at the top-left of a grey canvas: what a model trained on
native-scale square crops (facedet.train.scale_crop) sees. The resize is OpenCV's (`cv2.resize`,
INTER_LINEAR: the same sampling, in SIMD fixed-point code): of the libraries installed it is the one
that computes those numbers fastest (docs/speed.md: 29-44x PIL and tf.image on WIDER photos), and it
needs no TensorFlow, so the `.tflite` runner needs none when `ai_edge_litert` is installed. `fit_to_input` writes into a caller's buffer when given one (the interpreter's input
tensor: no per-call allocation). Boxes are normalised, so they map back exactly.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from typing import NamedTuple, Protocol, runtime_checkable

import cv2
import numpy as np

from facedet.model.boxes import clip_pixel_xyxy, corners_to_pixel_xyxy, pixel_xyxy_to_xywh

RESIZE_MODES = ("stretch", "letterbox")
# The score from which a detection is shown to a user: `facedet detect`'s default and the threshold the
# model card recommends (the evaluation keeps far lower scores, params.yaml `evaluate.score_threshold`,
# because AP integrates over every score).
RECOMMENDED_SCORE_THRESHOLD = 0.5
LETTERBOX_FILL = 128  # uint8 grey of the letterbox padding (~0 after the model's [-1, 1] normalisation)


class Detector(Protocol):
    """A face detector: photos in, pixel `x, y, w, h, score` rows out, best first.

    Subclass it explicitly to inherit `detect_many` (one photo at a time); a detector that batches
    (the Keras model) overrides it.
    """

    def detect(self, image: np.ndarray) -> np.ndarray:
        """RGB uint8 (H, W, 3) photo -> float32 (K, 5) pixel `x, y, w, h, score`, score-descending."""
        ...

    def detect_many(self, images: Iterable[np.ndarray]) -> Iterator[np.ndarray]:
        """Stream of photos -> stream of `detect` results, in order."""
        return map(self.detect, images)


class Fitted(NamedTuple):
    """Where a photo went in the model input: the photo's (height, width) px, and the photo px
    (extent_h, extent_w) the whole input spans (a normalised box maps back as `y * extent_h`)."""

    photo_size: tuple[int, int]
    extent: tuple[float, float]


@runtime_checkable
class StagedDetector(Detector, Protocol):
    """A detector whose call is three phases that a benchmark times apart: `prepare` (photo -> the
    model's input), `invoke` (the model), `read_detections` (its outputs -> the `detect` rows).
    Subclass it explicitly to inherit `detect`, the three in order."""

    def prepare(self, image: np.ndarray) -> Fitted:
        """Put an RGB uint8 (H, W, 3) photo into the model's input; -> where it went."""
        ...

    def invoke(self) -> None:
        """Run the model on the prepared input."""
        ...

    def read_detections(self, fitted: Fitted) -> np.ndarray:
        """The model's outputs -> float32 (K, 5) pixel `x, y, w, h, score` in the prepared photo."""
        ...

    def detect(self, image: np.ndarray) -> np.ndarray:
        """RGB uint8 (H, W, 3) photo -> float32 (K, 5) pixel `x, y, w, h, score`, score-descending."""
        fitted = self.prepare(image)
        self.invoke()
        return self.read_detections(fitted)


class NmsParams(Protocol):
    """What a detector keeps: params.yaml `evaluate` (the Keras model) or `export` (baked into the .tflite)."""

    @property
    def score_threshold(self) -> float: ...

    @property
    def nms_iou(self) -> float: ...

    @property
    def max_detections(self) -> int: ...


def check_rgb(image: np.ndarray) -> np.ndarray:
    """The photo as a numpy array; ValueError (one line) unless it is RGB uint8 (H, W, 3)."""
    image = np.asarray(image)
    if image.dtype != np.uint8 or image.ndim != 3 or image.shape[2] != 3:
        raise ValueError(f"detect() wants an RGB uint8 (H, W, 3) image, got {image.dtype} {image.shape}")
    return image


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


def sort_by_score(detections: np.ndarray) -> np.ndarray:
    """(K, 5) `x, y, w, h, score` rows sorted by score, descending (stable: ties keep their order); dtype kept."""
    detections = np.asarray(detections).reshape(-1, 5)
    return detections[np.argsort(-detections[:, 4], kind="stable")]


def boxes_to_photo_xywh(boxes: np.ndarray, scores: np.ndarray, photo_size: tuple[int, int],
                        extent: tuple[float, float]) -> np.ndarray:
    """Normalised `[ymin, xmin, ymax, xmax]` (K, 4) on the model input + scores (K,) -> float32 (K, 5)
    pixel `x, y, w, h, score` in the photo (clipped to it, empty boxes dropped), score-descending.
    extent: from `fit_to_input`."""
    xyxy = clip_pixel_xyxy(corners_to_pixel_xyxy(boxes, *extent), *photo_size)
    dets = np.concatenate([pixel_xyxy_to_xywh(xyxy), scores[:, None]], axis=1).astype(np.float32).reshape(-1, 5)
    return sort_by_score(dets[(dets[:, 2] > 0) & (dets[:, 3] > 0)])
