"""Run the trained Keras detector on images: resize, predict, decode with the anchors, sigmoid,
NMS, and map the boxes back to the original image.

Detections are numpy float32 (K, 5) pixel `x, y, w, h, score` in the original image, sorted by
score descending (what the official WIDER evaluation reads).
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Iterator

import numpy as np
import tensorflow as tf

from facedet.anchors import anchor_boxes
from facedet.boxes import corners_to_pixel_xywh, decode_boxes
from facedet.input import resize_for_model
from facedet.model import load_detector


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
    """

    def __init__(self, model_dir: str | os.PathLike):
        self.model, self.config = load_detector(model_dir)
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
        batch = tf.stack([resize_for_model(np.asarray(im), self.input_size) for im in images])
        outputs = self._predict(batch)
        results = []
        for i, image in enumerate(images):
            boxes, scores = postprocess(outputs["box_encodings"][i], outputs["class_logits"][i], self.anchors,
                                        score_threshold, nms_iou, max_detections)
            height, width = np.asarray(image).shape[:2]
            xywh = corners_to_pixel_xywh(boxes.numpy(), height, width)
            results.append(np.concatenate([xywh, scores.numpy()[:, None]], axis=1).astype(np.float32))
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
