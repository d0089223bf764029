"""Run the trained Keras detector on images: resize (or letterbox, as its config says), predict,
decode with the anchors, sigmoid, NMS, and map the boxes back to the original image. The detector
can run at a larger square input than it was trained at (`input_size`): it is fully
convolutional, and its anchors keep their pixel sizes (facedet.model.ssd.at_input_size).

Detections are numpy float32 (K, 5) pixel `x, y, w, h, score` in the original image, sorted by
score descending (what the official WIDER evaluation reads).
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Iterator

import numpy as np
import tensorflow as tf

from facedet.model.anchors import anchor_boxes
from facedet.model.boxes import decode_boxes
from facedet.train.input import resize_for_model
from facedet.model.ssd import load_detector
from facedet.runtime.tflite_detector import boxes_to_photo_xywh, fit_to_input


def postprocess(box_encodings: tf.Tensor, class_logits: tf.Tensor, anchors: tf.Tensor, score_threshold: float,
                nms_iou: float, max_detections: int) -> tuple[tf.Tensor, tf.Tensor]:
    """One image's raw outputs -> kept boxes.

    box_encodings (A, 4) `(ty, tx, th, tw)`, class_logits (A, 1), anchors (A, 4) normalised
    `[ymin, xmin, ymax, xmax]` -> boxes (K, 4) normalised `[ymin, xmin, ymax, xmax]` clipped to
    [0, 1], scores (K,), score-descending.
    """
    scores = tf.sigmoid(class_logits[:, 0])
    keep = scores >= score_threshold
    scores = tf.boolean_mask(scores, keep)
    boxes = tf.clip_by_value(decode_boxes(tf.boolean_mask(box_encodings, keep), tf.boolean_mask(anchors, keep)),
                             0.0, 1.0)
    chosen = tf.image.non_max_suppression(boxes, scores, max_detections, iou_threshold=nms_iou)
    return tf.gather(boxes, chosen), tf.gather(scores, chosen)


class KerasDetector:
    """The detector saved by training (`model_dir/model.keras` + `detector.json`).

    >>> detector = KerasDetector("models/detector")
    >>> detections = detector.detect(image_uint8)  # (K, 5) pixel x, y, w, h, score
    >>> at_640 = KerasDetector("models/detector", input_size=640)  # same weights, anchors in px kept
    """

    def __init__(self, model_dir: str | os.PathLike, input_size: int | None = None):
        self.model, self.config = load_detector(model_dir, input_size)
        self.input_size = self.config.input_size
        self.anchors = tf.constant(anchor_boxes(self.config))
        self._predict = tf.function(lambda images: self.model(images, training=False), reduce_retracing=True)

    def detect(self, image: np.ndarray, score_threshold: float = 0.02, nms_iou: float = 0.4,
               max_detections: int = 750) -> np.ndarray:
        """image uint8 (H, W, 3) RGB -> float32 (K, 5) pixel `x, y, w, h, score`, score-descending."""
        return self.detect_batch([image], score_threshold, nms_iou, max_detections)[0]

    def detect_batch(self, images: list[np.ndarray], score_threshold: float = 0.02, nms_iou: float = 0.4,
                     max_detections: int = 750) -> list[np.ndarray]:
        """Several images (any sizes) in one forward pass; one (K, 5) array per image, as `detect`."""
        if not images:
            return []
        size = (self.input_size, self.input_size)
        if self.config.resize == "stretch":
            batch = tf.stack([resize_for_model(np.asarray(im), self.input_size) for im in images])
            extents = [np.asarray(im).shape[:2] for im in images]
        else:
            fitted = [fit_to_input(np.asarray(im), size, self.config.resize) for im in images]
            batch = tf.cast(tf.stack([f[0] for f in fitted]), tf.float32)
            extents = [f[1] for f in fitted]
        outputs = self._predict(batch)
        results = []
        for i, image in enumerate(images):
            boxes, scores = postprocess(outputs["box_encodings"][i], outputs["class_logits"][i], self.anchors,
                                        score_threshold, nms_iou, max_detections)
            results.append(boxes_to_photo_xywh(boxes.numpy(), scores.numpy(), np.asarray(image).shape[:2],
                                               extents[i]))
        return results

    def detect_many(self, images: Iterable[np.ndarray], batch_size: int = 16, **kwargs) -> Iterator[np.ndarray]:
        """Stream of images -> stream of detections (batched for speed); kwargs as `detect`."""
        pending: list[np.ndarray] = []
        for image in images:
            pending.append(image)
            if len(pending) == batch_size:
                yield from self.detect_batch(pending, **kwargs)
                pending = []
        if pending:
            yield from self.detect_batch(pending, **kwargs)
