"""SSD training targets and losses.

`assign_targets` matches ground-truth faces to anchors (argmax IoU, with every face forced onto
its best anchor) and encodes them; `assign_targets_atss` is the adaptive alternative (ATSS, Zhang et
al. 2020); both run per image inside the tf.data pipeline.
`detection_loss` is smooth L1 (Huber) localisation on positives, optionally with an IoU-family loss
on the decoded boxes (GIoU, DIoU, EIoU), + sigmoid classification with hard-negative mining (the
original recipe's 3 negatives per positive), focal loss or quality focal loss (Li et al. 2020: the
target of a positive is the IoU of its predicted box with its face), all normalised by the number of
positive anchors.

Labels per anchor: 1 face, 0 background, -1 ignored (IoU between the two thresholds).
"""

from __future__ import annotations

from typing import Protocol

import tensorflow as tf

from facedet.model.boxes import aligned_iou, corners_to_centre, decode_boxes, encode_boxes, pairwise_iou

POSITIVE, NEGATIVE, IGNORED = 1, 0, -1
# Decoded box sides are kept within e^4.135 (~62x) of their anchor's: mmdetection's bound, so a wild
# prediction early in training gives a large but finite IoU loss.
_MAX_LOG_RATIO = 4.135
_EPS = 1e-7


class LossSettings(Protocol):
    """What `detection_loss` reads; training passes params.yaml `train.loss` (facedet.params.sections.LossParams,
    whose docstring says what each knob does)."""

    @property
    def classification(self) -> str: ...  # 'hard_negative_mining', 'focal' or 'qfl'

    @property
    def negatives_per_positive(self) -> float: ...

    @property
    def min_negatives(self) -> int: ...

    @property
    def focal_alpha(self) -> float: ...

    @property
    def focal_gamma(self) -> float: ...

    @property
    def qfl_beta(self) -> float: ...

    @property
    def localization_weight(self) -> float: ...

    @property
    def box_iou(self) -> str: ...  # 'none', 'giou', 'diou' or 'eiou'

    @property
    def box_iou_weight(self) -> float: ...


def assign_targets(gt_boxes: tf.Tensor, anchors: tf.Tensor, positive_iou: float,
                   negative_iou: float) -> tuple[tf.Tensor, tf.Tensor]:
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


def assign_targets_atss(gt_boxes: tf.Tensor, anchors: tf.Tensor, level_counts: tuple[int, ...] = (), *,
                        top_k: int) -> tuple[tf.Tensor, tf.Tensor]:
    """Match one image's faces to the anchors by ATSS (adaptive training sample selection).

    gt_boxes: float32 (N, 4) normalised `[ymin, xmin, ymax, xmax]` (N may be 0; empty boxes are ignored).
    anchors: float32 (A, 4) normalised `[ymin, xmin, ymax, xmax]`, level after level as
    `level_counts` (anchors per level, summing to A; empty: one level).
    Per face: on each level, the `top_k` anchors whose centres are nearest the face's centre are its
    candidates; a candidate is positive if its IoU with the face is >= the mean + the standard deviation
    (n - 1 in the denominator, as the authors' code) of the candidates' IoUs and its centre lies strictly
    inside the face. An anchor positive for several faces takes the one it overlaps most. No anchor is
    ignored. Returns box_targets float32 (A, 4) `(ty, tx, th, tw)` (zeros off positives) and labels
    int32 (A,) in {1, 0}.
    """
    gt_boxes = tf.reshape(tf.cast(gt_boxes, tf.float32), [-1, 4])
    gt_boxes = tf.boolean_mask(gt_boxes, (gt_boxes[:, 2] > gt_boxes[:, 0]) & (gt_boxes[:, 3] > gt_boxes[:, 1]))
    anchors = tf.cast(anchors, tf.float32)
    num_anchors = anchors.shape[0]
    counts = tuple(level_counts) or (num_anchors,)
    if sum(counts) != num_anchors:
        raise ValueError(f"level_counts {counts} sum to {sum(counts)}, not to the {num_anchors} anchors")
    anchor_centres = corners_to_centre(anchors)[:, :2]  # (A, 2) y, x
    face_centres = corners_to_centre(gt_boxes)[:, :2]  # (N, 2)
    distance = tf.norm(face_centres[:, None, :] - anchor_centres[None, :, :], axis=-1)  # (N, A)
    candidates, start = [], 0
    for count in counts:  # top_k keeps the lower index first among equal distances
        _, nearest = tf.math.top_k(-distance[:, start:start + count], k=min(top_k, count))
        candidates.append(nearest + start)
        start += count
    candidates = tf.concat(candidates, axis=1)  # (N, C)
    iou = pairwise_iou(gt_boxes, anchors)  # (N, A)
    candidate_iou = tf.gather(iou, candidates, batch_dims=1)  # (N, C)
    size = tf.cast(tf.shape(candidates)[1], tf.float32)
    mean = tf.reduce_mean(candidate_iou, axis=1, keepdims=True)
    std = tf.sqrt(tf.reduce_sum(tf.square(candidate_iou - mean), axis=1, keepdims=True) / tf.maximum(size - 1, 1))
    centre = tf.gather(anchor_centres, candidates)  # (N, C, 2)
    face = gt_boxes[:, None, :]
    inside = ((centre[..., 0] > face[..., 0]) & (centre[..., 0] < face[..., 2])
              & (centre[..., 1] > face[..., 1]) & (centre[..., 1] < face[..., 3]))
    chosen = (candidate_iou >= mean + std) & inside  # (N, C)
    faces = tf.broadcast_to(tf.range(tf.shape(candidates)[0])[:, None], tf.shape(candidates))
    pairs = tf.stack([tf.boolean_mask(faces, chosen), tf.boolean_mask(candidates, chosen)], axis=1)
    positive_pair = tf.scatter_nd(pairs, tf.ones(tf.shape(pairs)[:1], tf.bool), tf.shape(iou))  # (N, A)
    # A row of -1 for "no face" keeps the argmax defined for images without faces (index N: a zero box).
    chosen_iou = tf.concat([tf.where(positive_pair, iou, -1.0), tf.fill([1, num_anchors], -1.0)], axis=0)  # (N + 1, A)
    best_face = tf.argmax(chosen_iou, axis=0, output_type=tf.int32)  # (A,)
    positive = tf.reduce_any(positive_pair, axis=0)
    labels = tf.where(positive, POSITIVE, NEGATIVE)
    matched = tf.gather(tf.concat([gt_boxes, tf.zeros([1, 4])], 0), best_face)
    box_targets = tf.where(positive[:, None], encode_boxes(matched, anchors), 0.0)
    return box_targets, tf.cast(labels, tf.int32)


def _hard_negative_mask(negative_loss: tf.Tensor, num_positives: tf.Tensor, config: LossSettings) -> tf.Tensor:
    """(B, A) per-anchor loss of negatives (0 elsewhere), (B,) positives -> (B, A) bool: the hardest negatives."""
    keep = tf.cast(tf.math.ceil(num_positives * config.negatives_per_positive), tf.int32)
    keep = tf.maximum(keep, config.min_negatives)
    order = tf.argsort(negative_loss, axis=1, direction="DESCENDING")
    rank = tf.argsort(order, axis=1)
    return rank < keep[:, None]


def decode_for_loss(encodings: tf.Tensor, anchors: tf.Tensor) -> tf.Tensor:
    """(B, A, 4) `(ty, tx, th, tw)` + (A, 4) anchors -> (B, A, 4) `[ymin, xmin, ymax, xmax]`, box sides
    kept within e^4.135 of their anchor's (finite when a prediction is far off)."""
    bound = _MAX_LOG_RATIO * 5.0  # th, tw are 5 x log(side / anchor side)
    encodings = tf.concat([encodings[..., :2], tf.clip_by_value(encodings[..., 2:], -bound, bound)], axis=-1)
    return decode_boxes(encodings, tf.cast(anchors, tf.float32)[None])


def iou_family_loss(predicted: tf.Tensor, target: tf.Tensor, kind: str) -> tf.Tensor:
    """Per box: (..., 4) x (..., 4) `[ymin, xmin, ymax, xmax]` -> (...) loss, 0 for identical boxes.

    giou (Rezatofighi et al. 2019): 1 - IoU + (enclosing area - union) / enclosing area.
    diou (Zheng et al. 2020): 1 - IoU + centre distance^2 / enclosing diagonal^2.
    eiou (Zhang et al. 2021): diou + (w - w_t)^2 / enclosing w^2 + (h - h_t)^2 / enclosing h^2.
    """
    iou = aligned_iou(predicted, target)
    enclosing_h = tf.maximum(predicted[..., 2], target[..., 2]) - tf.minimum(predicted[..., 0], target[..., 0])
    enclosing_w = tf.maximum(predicted[..., 3], target[..., 3]) - tf.minimum(predicted[..., 1], target[..., 1])
    p, t = corners_to_centre(predicted), corners_to_centre(target)
    if kind == "giou":
        enclosing = enclosing_h * enclosing_w
        union = (p[..., 2] * p[..., 3] + t[..., 2] * t[..., 3]) / (1.0 + iou)  # areas = union + intersection
        return 1.0 - iou + (enclosing - union) / tf.maximum(enclosing, _EPS)
    centre_distance = tf.square(p[..., 0] - t[..., 0]) + tf.square(p[..., 1] - t[..., 1])
    loss = 1.0 - iou + centre_distance / tf.maximum(tf.square(enclosing_h) + tf.square(enclosing_w), _EPS)
    if kind == "eiou":
        loss += tf.square(p[..., 2] - t[..., 2]) / tf.maximum(tf.square(enclosing_h), _EPS)
        loss += tf.square(p[..., 3] - t[..., 3]) / tf.maximum(tf.square(enclosing_w), _EPS)
    elif kind != "diou":
        raise ValueError(f"unknown IoU loss {kind!r}: giou, diou or eiou")
    return loss


def quality_focal_loss(logits: tf.Tensor, quality: tf.Tensor, beta: float) -> tf.Tensor:
    """Per anchor: -|q - p|^beta ((1 - q) log(1 - p) + q log p), p = sigmoid(logits), target q in [0, 1]
    (the IoU of a positive's predicted box with its face, 0 for background). Same shapes in and out."""
    cross_entropy = tf.nn.sigmoid_cross_entropy_with_logits(labels=quality, logits=logits)
    return tf.pow(tf.abs(quality - tf.sigmoid(logits)), beta) * cross_entropy


def detection_loss(box_targets: tf.Tensor, labels: tf.Tensor, box_encodings: tf.Tensor,
                   class_logits: tf.Tensor, config: LossSettings,
                   anchors: tf.Tensor | None = None) -> dict[str, tf.Tensor]:
    """SSD loss of one batch.

    box_targets: float32 (B, A, 4) `(ty, tx, th, tw)`; labels: int (B, A) in {1, 0, -1};
    box_encodings: (B, A, 4) and class_logits: (B, A, 1) as the model outputs them.
    anchors: float32 (A, 4) `[ymin, xmin, ymax, xmax]`, needed to decode boxes (`box_iou`, 'qfl').
    Returns scalars {'localization' (smooth L1 and the IoU loss), 'classification', 'total'}, each
    summed over anchors and divided by the number of positive anchors in the batch (at least 1).
    """
    labels = tf.cast(labels, tf.int32)
    box_encodings = tf.cast(box_encodings, tf.float32)
    logits = tf.cast(class_logits[..., 0], tf.float32)
    positive = tf.cast(labels == POSITIVE, tf.float32)
    negative = tf.cast(labels == NEGATIVE, tf.float32)
    num_positives = tf.reduce_sum(positive, axis=1)  # (B,)
    normaliser = tf.maximum(tf.reduce_sum(num_positives), 1.0)
    decodes = config.box_iou != "none" or config.classification == "qfl"
    if decodes and anchors is None:
        raise ValueError(f"box_iou {config.box_iou!r} / classification {config.classification!r} need the anchors")
    if decodes:
        predicted = decode_for_loss(box_encodings, anchors)
        faces = decode_for_loss(box_targets, anchors)

    diff = tf.abs(box_encodings - box_targets)
    per_coord = tf.where(diff < 1.0, 0.5 * diff * diff, diff - 0.5)  # smooth L1 (Huber, delta 1)
    localization = tf.reduce_sum(tf.reduce_sum(per_coord, axis=-1) * positive) / normaliser
    localization = config.localization_weight * localization
    if config.box_iou != "none":
        per_box = tf.where(positive > 0, iou_family_loss(predicted, faces, config.box_iou), 0.0)
        localization += config.box_iou_weight * tf.reduce_sum(per_box) / normaliser

    if config.classification == "qfl":
        quality = positive * tf.stop_gradient(aligned_iou(predicted, faces))
        per_anchor = quality_focal_loss(logits, quality, config.qfl_beta) * (positive + negative)
        classification = tf.reduce_sum(per_anchor) / normaliser
        return {"localization": localization, "classification": classification,
                "total": localization + classification}
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
    return {"localization": localization, "classification": classification,
            "total": localization + classification}
