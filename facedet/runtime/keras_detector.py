"""Run the trained Keras detector on images: resize (or letterbox, as its config says), predict,
decode with the anchors, sigmoid, NMS, and map the boxes back to the original image. The detector
can run at a larger square input than it was trained at (`input_size`): it is fully
convolutional, and its anchors keep their pixel sizes (facedet.model.ssd.at_input_size).

Detections are numpy float32 (K, 5) pixel `x, y, w, h, score` in the original image, sorted by
score descending (the `facedet.runtime.detector_protocol.Detector` contract).
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Iterator

import numpy as np
import tensorflow as tf

from facedet.model.anchors import anchor_boxes
from facedet.model.boxes import decode_boxes
from facedet.model.ssd import load_detector, resize_for_model
from facedet.runtime.detector_protocol import Detector, NmsParams, check_rgb
from facedet.runtime.photo_fit import corners_to_photo_xywh, fit_to_input

BATCH_SIZE = 16  # images per forward pass in `detect_many` (a speed setting, not a model knob)


def postprocess(box_encodings: tf.Tensor, class_logits: tf.Tensor, anchors: tf.Tensor,
                nms: NmsParams) -> tuple[tf.Tensor, tf.Tensor]:
    """One image's raw outputs -> kept boxes.

    box_encodings (A, 4) `(ty, tx, th, tw)`, class_logits (A, 1), anchors (A, 4) normalised
    `[ymin, xmin, ymax, xmax]` -> boxes (K, 4) normalised `[ymin, xmin, ymax, xmax]` clipped to
    [0, 1], scores (K,), score-descending.
    """
    scores = tf.sigmoid(class_logits[:, 0])
    keep = scores >= nms.score_threshold
    scores = tf.boolean_mask(scores, keep)
    boxes = tf.clip_by_value(decode_boxes(tf.boolean_mask(box_encodings, keep), tf.boolean_mask(anchors, keep)),
                             0.0, 1.0)
    chosen = tf.image.non_max_suppression(boxes, scores, nms.max_detections, iou_threshold=nms.nms_iou)
    return tf.gather(boxes, chosen), tf.gather(scores, chosen)


class KerasDetector(Detector):
    """The detector saved by training (`model_dir/model.keras` + `detector.json`), a
    `facedet.runtime.detector_protocol.Detector`; `nms`: what it keeps (params.yaml `evaluate`).

    >>> detector = KerasDetector("models/detector", EvaluateParams())
    >>> detections = detector.detect(image_uint8)  # (K, 5) pixel x, y, w, h, score
    >>> at_640 = KerasDetector("models/detector", params, input_size=640)  # same weights, anchors in px kept
    """

    def __init__(self, model_dir: str | os.PathLike, nms: NmsParams, input_size: int | None = None):
        self.model, self.config = load_detector(model_dir, input_size)
        self.nms = nms
        self.anchors = tf.constant(anchor_boxes(self.config))
        self._predict = tf.function(lambda images: self.model(images, training=False), reduce_retracing=True)

    @property
    def input_size(self) -> tuple[int, int]:
        """(height, width) of the model input, px."""
        return self.config.input_size, self.config.input_size

    def detect(self, image: np.ndarray) -> np.ndarray:
        """image uint8 (H, W, 3) RGB -> float32 (K, 5) pixel `x, y, w, h, score`, score-descending."""
        return self._detect_batch([image])[0]

    def detect_many(self, images: Iterable[np.ndarray]) -> Iterator[np.ndarray]:
        """Stream of images -> stream of detections, `BATCH_SIZE` images per forward pass."""
        pending: list[np.ndarray] = []
        for image in images:
            pending.append(image)
            if len(pending) == BATCH_SIZE:
                yield from self._detect_batch(pending)
                pending = []
        if pending:
            yield from self._detect_batch(pending)

    def _detect_batch(self, images: list[np.ndarray]) -> list[np.ndarray]:
        """Several images (any sizes) in one forward pass; one (K, 5) array per image, as `detect`."""
        images = [check_rgb(image) for image in images]
        size = self.input_size
        if self.config.resize == "stretch":
            batch = tf.stack([resize_for_model(image, self.config.input_size) for image in images])
            extents = [image.shape[:2] for image in images]
        else:
            fitted = [fit_to_input(image, size, self.config.resize) for image in images]
            batch = tf.cast(tf.stack([f[0] for f in fitted]), tf.float32)
            extents = [f[1] for f in fitted]
        outputs = self._predict(batch)
        results = []
        for i, image in enumerate(images):
            boxes, scores = postprocess(outputs["box_encodings"][i], outputs["class_logits"][i], self.anchors, self.nms)
            results.append(corners_to_photo_xywh(boxes.numpy(), scores.numpy(), image.shape[:2], extents[i]))
        return results
