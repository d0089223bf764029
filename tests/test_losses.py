"""Matching faces to anchors (fixed IoU thresholds, ATSS) and the SSD loss (smooth L1, IoU-family box losses,
hard-negative mining, focal, quality focal), on boxes crafted by hand."""

from __future__ import annotations

import numpy as np
import pytest
import tensorflow as tf

from facedet.model.boxes import decode_boxes, encode_boxes, pairwise_iou
from facedet.model.losses import (
    IGNORED,
    NEGATIVE,
    POSITIVE,
    assign_targets,
    assign_targets_atss,
    detection_loss,
    iou_family_loss,
)
from facedet.params.sections import LossParams

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
    _, labels = assign_targets(tiny, ANCHORS, 0.5, 0.4)
    assert labels.numpy().tolist() == [NEGATIVE, NEGATIVE, POSITIVE, NEGATIVE]


def test_images_without_faces_and_degenerate_boxes_give_background_only():
    for faces in (np.zeros((0, 4), np.float32), np.array([[0.2, 0.2, 0.2, 0.4]], np.float32)):
        box_targets, labels = assign_targets(faces, ANCHORS, 0.5, 0.4)
        assert labels.numpy().tolist() == [NEGATIVE] * 4
        assert box_targets.shape == (4, 4)


def _batch():
    faces = np.array([[0.0, 0.0, 0.5, 0.25], [0.5, 0.1, 1.0, 0.9]], np.float32)
    box_targets, labels = assign_targets(faces, ANCHORS, 0.5, 0.4)
    return box_targets[None], labels[None]


def test_loss_is_near_zero_for_perfect_predictions_and_positive_otherwise():
    box_targets, labels = _batch()
    perfect_logits = tf.where(labels == POSITIVE, 20.0, -20.0)[..., None]
    for kind in ("hard_negative_mining", "focal"):
        config = LossParams(classification=kind)
        perfect = detection_loss(box_targets, labels, box_targets, perfect_logits, config)
        assert float(perfect["total"]) < 1e-6, kind
        wrong = detection_loss(box_targets, labels, box_targets + 0.5, -perfect_logits, config)
        assert float(wrong["localization"]) > 0.1 and float(wrong["classification"]) > 1.0, kind


def test_hard_negative_mining_keeps_three_negatives_per_positive():
    labels = tf.constant([[POSITIVE] + [NEGATIVE] * 9])
    logits = tf.constant([[[0.0]] + [[float(i)] for i in range(9)]])  # negative i has loss rising with i
    targets = tf.zeros([1, 10, 4])
    config = LossParams(negatives_per_positive=3, min_negatives=0)
    loss = float(detection_loss(targets, labels, targets, logits, config)["classification"])
    expected = tf.nn.sigmoid_cross_entropy_with_logits(labels=[1.0, 0.0, 0.0, 0.0], logits=[0.0, 8.0, 7.0, 6.0])
    np.testing.assert_allclose(loss, float(tf.reduce_sum(expected)), rtol=1e-5)


# ---------------------------------------------------------------------------------------------
# IoU-family box losses on decoded boxes (train.loss.box_iou)


def test_iou_family_losses_of_known_pairs():
    # overlapping squares side 2, offset 1: IoU 1/7, union 7, enclosing 3 x 3, centres sqrt(2) apart
    overlap = (tf.constant([[0.0, 0.0, 2.0, 2.0]]), tf.constant([[1.0, 1.0, 3.0, 3.0]]))
    # a half-height box inside its target (2 x 2): IoU 1/2, enclosing = target, centres 0.5 apart, heights 1 vs 2
    inside = (tf.constant([[0.0, 0.0, 1.0, 2.0]]), tf.constant([[0.0, 0.0, 2.0, 2.0]]))
    # disjoint unit squares: IoU 0, union 2, enclosing 3 x 3, centres 2 sqrt(2) apart
    apart = (tf.constant([[0.0, 0.0, 1.0, 1.0]]), tf.constant([[2.0, 2.0, 3.0, 3.0]]))
    expected = {"giou": [1 - 1 / 7 + 2 / 9, 0.5, 1 + 7 / 9],
                "diou": [1 - 1 / 7 + 2 / 18, 0.5 + 0.25 / 8, 1 + 8 / 18],
                "eiou": [1 - 1 / 7 + 2 / 18, 0.5 + 0.25 / 8 + 1 / 4, 1 + 8 / 18]}
    for kind, values in expected.items():
        got = [float(iou_family_loss(*pair, kind)[0]) for pair in (overlap, inside, apart)]
        np.testing.assert_allclose(got, values, rtol=1e-5, err_msg=kind)


def test_iou_losses_are_zero_with_finite_gradients_at_identical_boxes():
    box = tf.constant([[0.2, 0.3, 0.6, 0.5]])
    for kind in ("giou", "diou", "eiou"):
        predicted = tf.Variable(box)
        with tf.GradientTape() as tape:
            loss = iou_family_loss(predicted, box, kind)
        gradient = tape.gradient(loss, predicted)
        assert abs(float(loss[0])) < 1e-6, kind
        assert np.all(np.isfinite(gradient.numpy())), kind


def test_box_iou_adds_the_iou_loss_of_the_decoded_boxes_to_smooth_l1():
    box_targets, labels = _batch()
    faces = decode_boxes(box_targets[0], ANCHORS).numpy()
    shifted = faces + np.array([0.05, 0.0, 0.05, 0.0], np.float32)  # every face box moved down a little
    predictions = encode_boxes(shifted, ANCHORS)[None]
    logits = tf.zeros(labels.shape + (1,))
    plain = detection_loss(box_targets, labels, predictions, logits, LossParams(), ANCHORS)
    both = detection_loss(box_targets, labels, predictions, logits, LossParams(box_iou="giou", box_iou_weight=2.0),
                          ANCHORS)
    alone = detection_loss(box_targets, labels, predictions, logits,
                           LossParams(box_iou="giou", box_iou_weight=2.0, localization_weight=0.0), ANCHORS)
    positive = labels[0].numpy() == POSITIVE
    giou = iou_family_loss(tf.constant(shifted[positive]), tf.constant(faces[positive]), "giou").numpy()
    expected = 2.0 * giou.sum() / positive.sum()
    assert expected > 0.05
    np.testing.assert_allclose(float(alone["localization"]), expected, rtol=1e-4)
    np.testing.assert_allclose(float(both["localization"]), float(plain["localization"]) + expected, rtol=1e-4)
    assert float(both["classification"]) == float(plain["classification"])


def test_losses_on_decoded_boxes_need_the_anchors():
    box_targets, labels = _batch()
    for config in (LossParams(box_iou="diou"), LossParams(classification="qfl")):
        with pytest.raises(ValueError, match="need the anchors"):
            detection_loss(box_targets, labels, box_targets, tf.zeros(labels.shape + (1,)), config)


# ---------------------------------------------------------------------------------------------
# quality focal loss (train.loss.classification: qfl)


def test_quality_focal_loss_is_the_formula_with_the_predicted_box_iou_as_target():
    faces = np.array([[0.0, 0.0, 0.5, 0.25], [0.5, 0.1, 1.0, 0.9]], np.float32)
    box_targets, labels = assign_targets(faces, ANCHORS, 0.5, 0.4)
    assert labels.numpy().tolist() == [POSITIVE, NEGATIVE, NEGATIVE, POSITIVE]
    # anchor 0 predicts its face at half its width (IoU 1/2), anchor 3 predicts its face exactly (IoU 1)
    predicted = np.array([[0.0, 0.0, 0.5, 0.125], faces[1], ANCHORS[2], faces[1]], np.float32)
    encodings = encode_boxes(predicted, ANCHORS)[None]
    logits = np.array([0.3, -1.0, 2.0, 1.5], np.float32)
    loss = detection_loss(box_targets[None], labels[None], encodings, tf.constant(logits)[None, :, None],
                          LossParams(classification="qfl", qfl_beta=2.0), ANCHORS)
    p = 1 / (1 + np.exp(-logits.astype(np.float64)))
    q = np.array([0.5, 0.0, 0.0, 1.0])
    expected = np.sum(-np.abs(q - p) ** 2 * ((1 - q) * np.log(1 - p) + q * np.log(p))) / 2  # 2 positives
    np.testing.assert_allclose(float(loss["classification"]), expected, rtol=1e-5)


def test_a_positive_whose_box_misses_its_face_is_scored_like_background():
    box_targets, labels = assign_targets(np.array([[0.0, 0.0, 0.5, 0.25]], np.float32), ANCHORS, 0.5, 0.4)
    far = encode_boxes(np.array([[0.6, 0.6, 0.9, 0.9]] * 4, np.float32), ANCHORS)[None]  # IoU 0 with the face
    logits = tf.constant([[[1.2], [-3.0], [-3.0], [-3.0]]])
    config = LossParams(classification="qfl")
    as_positive = detection_loss(box_targets[None], labels[None], far, logits, config, ANCHORS)["classification"]
    background = tf.zeros_like(labels)[None]
    as_negative = detection_loss(box_targets[None], background, far, logits, config, ANCHORS)["classification"]
    # the same per-anchor losses; only the normaliser differs (1 positive vs none, at least 1)
    np.testing.assert_allclose(float(as_positive), float(as_negative), rtol=1e-6)
    assert float(as_positive) > 0.5


# ---------------------------------------------------------------------------------------------
# ATSS assignment (train.assignment: atss)


def grid_anchors(cells: int, side: float) -> np.ndarray:
    """cells x cells square anchors of `side`, centred at (i + 0.5) / cells, row by row (y, then x)."""
    centres = (np.arange(cells) + 0.5) / cells
    return np.array([[y - side / 2, x - side / 2, y + side / 2, x + side / 2] for y in centres for x in centres],
                    np.float32)


# two levels as the detector has them: 4 x 4 anchors of side 1/4 (0 .. 15), then 2 x 2 of side 1/2 (16 .. 19)
LEVELS = np.concatenate([grid_anchors(4, 0.25), grid_anchors(2, 0.5)])


def test_atss_picks_the_anchors_the_papers_rule_picks():
    face = np.array([[0.15, 0.15, 0.5, 0.45]], np.float32)  # centre (0.325, 0.3), 0.35 x 0.3
    # By hand, with k = 3: the nearest centres on level 1 are anchors 5 (0.375, 0.375), 4 (0.375, 0.125)
    # and 1 (0.125, 0.375); on level 2, 16 (0.25, 0.25), 18 (0.75, 0.25) and 17 (0.25, 0.75).
    # Their IoUs with the face: 5: 0.05 / 0.1175, 4: 0.025 / 0.1425, 1: 0.02 / 0.1475, 16: 0.105 / 0.25, 18, 17: 0.
    ious = np.array([0.05 / 0.1175, 0.025 / 0.1425, 0.02 / 0.1475, 0.105 / 0.25, 0.0, 0.0])
    threshold = ious.mean() + ious.std(ddof=1)  # ~0.384
    assert [i for i, v in zip([5, 4, 1, 16, 18, 17], ious) if v >= threshold] == [5, 16]  # centres inside the face
    box_targets, labels = assign_targets_atss(face, LEVELS, level_counts=(16, 4), top_k=3)
    assert np.flatnonzero(labels.numpy() == POSITIVE).tolist() == [5, 16]
    assert set(labels.numpy().tolist()) == {POSITIVE, NEGATIVE}  # ATSS ignores no anchor
    np.testing.assert_allclose(decode_boxes(box_targets.numpy()[[5, 16]], LEVELS[[5, 16]]), face.repeat(2, 0),
                               atol=1e-6)
    # fixed thresholds (IoU 0.5 / 0.4) keep only the forced best anchor, 5; anchor 16 (IoU 0.42) is ignored
    _, fixed = assign_targets(face, LEVELS, 0.5, 0.4)
    assert np.flatnonzero(fixed.numpy() == POSITIVE).tolist() == [5] and fixed.numpy()[16] == IGNORED


def test_atss_drops_a_candidate_whose_centre_lies_outside_the_face():
    # the only candidate overlapping the face is anchor 0 (IoU 0.01 / 0.19), over mean + std of the others' 0s,
    # but its centre (0.2, 0.2) is outside the face: the face gets no positive
    anchors = np.array([[0.0, 0.0, 0.4, 0.4], [0.6, 0.6, 1.0, 1.0], [0.0, 0.6, 0.4, 1.0]], np.float32)
    face = np.array([[0.3, 0.3, 0.5, 0.5]], np.float32)
    _, labels = assign_targets_atss(face, anchors, top_k=3)
    assert labels.numpy().tolist() == [NEGATIVE] * 3
    _, labels = assign_targets_atss(face + 0.05, anchors, top_k=3)  # moved: the centre (0.2, 0.2) is still out
    assert labels.numpy().tolist() == [NEGATIVE] * 3
    _, labels = assign_targets_atss(face - 0.15, anchors, top_k=3)  # [0.15, 0.15, 0.35, 0.35] holds it
    assert labels.numpy().tolist() == [POSITIVE, NEGATIVE, NEGATIVE]


def papers_rule(faces: np.ndarray, anchors: np.ndarray, level_counts: tuple[int, ...], k: int) -> dict[int, int]:
    """ATSS as the paper states it, one face and one anchor at a time: positive anchor -> its face."""
    centre = lambda b: ((b[0] + b[2]) / 2, (b[1] + b[3]) / 2)  # noqa: E731
    best = {}  # anchor -> (IoU, face)
    for index, face in enumerate(faces):
        fy, fx = centre(face)
        candidates, start = [], 0
        for count in level_counts:
            distance = [np.hypot(centre(anchors[a])[0] - fy, centre(anchors[a])[1] - fx)
                        for a in range(start, start + count)]
            candidates += [start + int(a) for a in np.argsort(distance, kind="stable")[:k]]
            start += count
        ious = [float(pairwise_iou(face[None], anchors[a][None])[0, 0]) for a in candidates]
        threshold = np.mean(ious) + np.std(ious, ddof=1)
        for a, iou in zip(candidates, ious):
            ay, ax = centre(anchors[a])
            if iou >= threshold and face[0] < ay < face[2] and face[1] < ax < face[3]:
                if iou > best.get(a, (-1.0, None))[0]:
                    best[a] = (iou, index)
    return {a: face for a, (_, face) in best.items()}


def test_atss_agrees_with_the_papers_rule_on_crowded_images():
    rng = np.random.default_rng(4)
    for _ in range(5):
        corner = rng.uniform(0.0, 0.8, (6, 2))
        size = rng.uniform(0.05, 0.5, (6, 2))
        faces = np.concatenate([corner, np.minimum(corner + size, 1.0)], axis=1).astype(np.float32)
        box_targets, labels = assign_targets_atss(faces, LEVELS, level_counts=(16, 4), top_k=4)
        expected = papers_rule(faces, LEVELS, (16, 4), 4)
        assert np.flatnonzero(labels.numpy() == POSITIVE).tolist() == sorted(expected)
        positives = sorted(expected)  # each decodes to its face (the one it overlaps most, where several chose it)
        np.testing.assert_allclose(decode_boxes(box_targets.numpy()[positives], LEVELS[positives]),
                                   faces[[expected[a] for a in positives]], atol=1e-5)


def test_atss_gives_background_only_without_faces():
    for faces in (np.zeros((0, 4), np.float32), np.array([[0.2, 0.2, 0.2, 0.4]], np.float32)):
        box_targets, labels = assign_targets_atss(faces, LEVELS, level_counts=(16, 4), top_k=9)
        assert labels.numpy().tolist() == [NEGATIVE] * 20
        np.testing.assert_array_equal(box_targets.numpy(), 0.0)
