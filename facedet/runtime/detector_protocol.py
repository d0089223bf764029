"""What a face detector is to its users: the `Detector` protocol every detector implements.

A detector takes an RGB uint8 (H, W, 3) photo of any size and returns numpy float32 (K, 5) pixel
`x, y, w, h, score` in that photo (clipped to it), sorted by score descending: what the official
WIDER evaluation reads, and what `facedet detect`, the evaluate stages and the real-face benchmark
consume. The Keras model (facedet.runtime.keras_detector) and the exported `.tflite`
(facedet.runtime.tflite_detector) both implement it, fitting photos to their input with
facedet.runtime.photo_fit.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from typing import NamedTuple, Protocol, runtime_checkable

import numpy as np

# The score from which a detection is shown to a user: `facedet detect`'s default and the threshold the
# model card recommends (the evaluation keeps far lower scores, params.yaml `evaluate.score_threshold`,
# because AP integrates over every score).
RECOMMENDED_SCORE_THRESHOLD = 0.5


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


def sort_by_score(detections: np.ndarray) -> np.ndarray:
    """(K, 5) `x, y, w, h, score` rows sorted by score, descending (stable: ties keep their order); dtype kept."""
    detections = np.asarray(detections).reshape(-1, 5)
    return detections[np.argsort(-detections[:, 4], kind="stable")]
