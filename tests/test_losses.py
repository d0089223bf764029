"""Matching faces to anchors and the SSD loss, on boxes crafted by hand."""

from __future__ import annotations

import numpy as np
import tensorflow as tf

from facedet.model.boxes import decode_boxes
from facedet.model.losses import IGNORED, NEGATIVE, POSITIVE, assign_targets, detection_loss
from facedet.params.sections import LossConfig

# Four anchors in a row (normalised [ymin, xmin, ymax, xmax]).
ANCHORS = np.array([[0.0, 0.0, 0.5, 0.25], [0.0, 0.25, 0.5, 0.5], [0.0, 0.5, 0.5, 0.75], [0.5, 0.0, 1.0, 1.0]],
                   np.float32)


def test_thresholds_split_anchors_into_face_background_and_ignored():
    faces = np.array([[0.0, 0.0, 0.5, 0.25],      # exactly anchor 0 -> positive
                      [0.0, 0.3125, 0.5, 0.5625]], np.float32)  # IoU 0.6 with anchor 1, 0.2 with anchor 2
    box_targets, labels = assign_targets(faces, ANCHORS, positive_iou=0.5, negative_iou=0.4)
    assert labels.numpy().tolist() == [POSITIVE, POSITIVE, NEGATIVE, NEGATIVE]
    _, labels = assign_targets(faces, ANCHORS, positive_iou=0.7, negative_iou=0.1)
    # anchor 1 (IoU 0.6) is still positive: it is the second face's best anchor (forced match)
    assert labels.numpy().tolist() == [POSITIVE, POSITIVE, IGNORED, NEGATIVE]
    # encodings decode back to the matched faces
    np.testing.assert_allclose(decode_boxes(box_targets[:2], ANCHORS[:2]).numpy(), faces, atol=1e-6)
    np.testing.assert_array_equal(box_targets[2:].numpy(), 0.0)


def test_a_tiny_face_is_forced_onto_its_best_anchor():
    tiny = np.array([[0.1, 0.55, 0.15, 0.6]], np.float32)  # far below any IoU threshold
    _, labels = assign_targets(tiny, ANCHORS)
    assert labels.numpy().tolist() == [NEGATIVE, NEGATIVE, POSITIVE, NEGATIVE]


def test_images_without_faces_and_degenerate_boxes_give_background_only():
    for faces in (np.zeros((0, 4), np.float32), np.array([[0.2, 0.2, 0.2, 0.4]], np.float32)):
        box_targets, labels = assign_targets(faces, ANCHORS)
        assert labels.numpy().tolist() == [NEGATIVE] * 4
        assert box_targets.shape == (4, 4)


def _batch():
    faces = np.array([[0.0, 0.0, 0.5, 0.25], [0.5, 0.1, 1.0, 0.9]], np.float32)
    box_targets, labels = assign_targets(faces, ANCHORS)
    return box_targets[None], labels[None]


def test_loss_is_near_zero_for_perfect_predictions_and_positive_otherwise():
    box_targets, labels = _batch()
    perfect_logits = tf.where(labels == POSITIVE, 20.0, -20.0)[..., None]
    for kind in ("hard_negative_mining", "focal"):
        config = LossConfig(classification=kind)
        perfect = detection_loss(box_targets, labels, box_targets, perfect_logits, config)
        assert float(perfect["total"]) < 1e-6, kind
        wrong = detection_loss(box_targets, labels, box_targets + 0.5, -perfect_logits, config)
        assert float(wrong["localization"]) > 0.1 and float(wrong["classification"]) > 1.0, kind


def test_hard_negative_mining_keeps_three_negatives_per_positive():
    labels = tf.constant([[POSITIVE] + [NEGATIVE] * 9])
    logits = tf.constant([[[0.0]] + [[float(i)] for i in range(9)]])  # negative i has loss rising with i
    targets = tf.zeros([1, 10, 4])
    config = LossConfig(negatives_per_positive=3, min_negatives=0)
    loss = float(detection_loss(targets, labels, targets, logits, config)["classification"])
    expected = tf.nn.sigmoid_cross_entropy_with_logits(labels=[1.0, 0.0, 0.0, 0.0], logits=[0.0, 8.0, 7.0, 6.0])
    np.testing.assert_allclose(loss, float(tf.reduce_sum(expected)), rtol=1e-5)
