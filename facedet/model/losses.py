"""SSD training targets and losses.

`assign_targets` matches ground-truth faces to anchors (argmax IoU, with every face forced onto
its best anchor) and encodes them; it runs per image inside the tf.data pipeline.
`detection_loss` is smooth L1 (Huber) localisation on positives + sigmoid classification with
either hard-negative mining (the original recipe's 3 negatives per positive) or focal loss, both
normalised by the number of positive anchors.

Labels per anchor: 1 face, 0 background, -1 ignored (IoU between the two thresholds).
"""

from __future__ import annotations

import tensorflow as tf

from facedet.model.boxes import encode_boxes, pairwise_iou
from facedet.params.sections import LossConfig, TrainParams

POSITIVE, NEGATIVE, IGNORED = 1, 0, -1


def assign_targets(gt_boxes: tf.Tensor, anchors: tf.Tensor, positive_iou: float = TrainParams.positive_iou,
                   negative_iou: float = TrainParams.negative_iou) -> tuple[tf.Tensor, tf.Tensor]:
    """Match one image's faces to the anchors.

    gt_boxes: float32 (N, 4) normalised `[ymin, xmin, ymax, xmax]` (N may be 0; empty boxes are ignored).
    anchors: float32 (A, 4) normalised `[ymin, xmin, ymax, xmax]`.
    An anchor is positive if its best IoU >= positive_iou, negative if < negative_iou, else ignored;
    each face is also matched to its best anchor (if they overlap at all), whatever the IoU.
    Returns box_targets float32 (A, 4) encodings `(ty, tx, th, tw)` (zeros off positives) and
    labels int32 (A,) in {1, 0, -1}.
    """
    gt_boxes = tf.reshape(tf.cast(gt_boxes, tf.float32), [-1, 4])
    valid = (gt_boxes[:, 2] > gt_boxes[:, 0]) & (gt_boxes[:, 3] > gt_boxes[:, 1])
    gt_boxes = tf.boolean_mask(gt_boxes, valid)
    # A zero-area sentinel box keeps the reductions defined for images without faces (its IoU is 0).
    gt_boxes = tf.concat([gt_boxes, tf.zeros([1, 4])], axis=0)
    num_faces = tf.shape(gt_boxes)[0] - 1
    iou = pairwise_iou(gt_boxes, anchors)  # (N + 1, A)
    best_face = tf.argmax(iou, axis=0, output_type=tf.int32)  # (A,)
    best_iou = tf.reduce_max(iou, axis=0)
    labels = tf.where(best_iou >= positive_iou, POSITIVE, tf.where(best_iou < negative_iou, NEGATIVE, IGNORED))

    face_iou = iou[:num_faces]
    forced_anchor = tf.argmax(face_iou, axis=1, output_type=tf.int32)  # (N,)
    overlaps = tf.reduce_max(face_iou, axis=1) > 0
    forced_anchor = tf.boolean_mask(forced_anchor, overlaps)[:, None]
    forced_face = tf.boolean_mask(tf.range(num_faces), overlaps)
    best_face = tf.tensor_scatter_nd_update(best_face, forced_anchor, forced_face)
    labels = tf.tensor_scatter_nd_update(labels, forced_anchor, tf.fill(tf.shape(forced_face), POSITIVE))

    matched = tf.gather(gt_boxes, best_face)
    box_targets = tf.where((labels == POSITIVE)[:, None], encode_boxes(matched, anchors), 0.0)
    return box_targets, tf.cast(labels, tf.int32)


def _hard_negative_mask(negative_loss: tf.Tensor, num_positives: tf.Tensor, config: LossConfig) -> tf.Tensor:
    """(B, A) per-anchor loss of negatives (0 elsewhere), (B,) positives -> (B, A) bool: the hardest negatives."""
    keep = tf.cast(tf.math.ceil(num_positives * config.negatives_per_positive), tf.int32)
    keep = tf.maximum(keep, config.min_negatives)
    order = tf.argsort(negative_loss, axis=1, direction="DESCENDING")
    rank = tf.argsort(order, axis=1)
    return rank < keep[:, None]


def detection_loss(box_targets: tf.Tensor, labels: tf.Tensor, box_encodings: tf.Tensor,
                   class_logits: tf.Tensor, config: LossConfig = LossConfig()) -> dict[str, tf.Tensor]:
    """SSD loss of one batch.

    box_targets: float32 (B, A, 4) `(ty, tx, th, tw)`; labels: int (B, A) in {1, 0, -1};
    box_encodings: (B, A, 4) and class_logits: (B, A, 1) as the model outputs them.
    Returns scalars {'localization', 'classification', 'total'}, each summed over anchors and
    divided by the number of positive anchors in the batch (at least 1).
    """
    labels = tf.cast(labels, tf.int32)
    box_encodings = tf.cast(box_encodings, tf.float32)
    logits = tf.cast(class_logits[..., 0], tf.float32)
    positive = tf.cast(labels == POSITIVE, tf.float32)
    negative = tf.cast(labels == NEGATIVE, tf.float32)
    num_positives = tf.reduce_sum(positive, axis=1)  # (B,)
    normaliser = tf.maximum(tf.reduce_sum(num_positives), 1.0)

    diff = tf.abs(box_encodings - box_targets)
    per_coord = tf.where(diff < 1.0, 0.5 * diff * diff, diff - 0.5)  # smooth L1 (Huber, delta 1)
    localization = tf.reduce_sum(tf.reduce_sum(per_coord, axis=-1) * positive) / normaliser

    cross_entropy = tf.nn.sigmoid_cross_entropy_with_logits(labels=positive, logits=logits)  # (B, A)
    if config.classification == "focal":
        prob = tf.sigmoid(logits)
        p_t = positive * prob + (1 - positive) * (1 - prob)
        alpha_t = positive * config.focal_alpha + (1 - positive) * (1 - config.focal_alpha)
        weight = alpha_t * tf.pow(1 - p_t, config.focal_gamma) * (positive + negative)
    else:
        hard = _hard_negative_mask(tf.stop_gradient(cross_entropy * negative), num_positives, config)
        weight = positive + negative * tf.cast(hard, tf.float32)
    classification = tf.reduce_sum(cross_entropy * weight) / normaliser
    localization = config.localization_weight * localization
    return {"localization": localization, "classification": classification,
            "total": localization + classification}
