"""The official WIDER Easy/Medium/Hard numbers: hand-computed cases, then random sets checked
against the slow literal port of the official code (tests/wider_eval_reference.py)."""

import numpy as np
import pytest

from facedet.data.wider_mat import EvalImage
from facedet.evaluate.wider_eval import (
    evaluate_wider,
    match_predictions,
    recall_by_face_size,
    score_thresholds,
    voc_ap,
)

from wider_eval_reference import reference_wider_eval, synthetic_val_set

ALL = ("easy", "medium", "hard")


def image(key, boxes, keep=None):
    """EvalImage with pixel x1, y1, w, h boxes; keep: 1-based kept indices for every subset (default: all)."""
    event, stem = key.split("/")
    boxes = np.asarray(boxes, dtype=np.float64).reshape(-1, 4)
    keep = np.arange(1, len(boxes) + 1) if keep is None else np.asarray(keep, dtype=np.int64)
    return EvalImage(event, stem, boxes, {s: keep for s in ALL})


def dets(*rows):
    return np.asarray(rows, dtype=np.float64).reshape(-1, 5)


def test_perfect_predictions_score_ap_one():
    gt = [image("0--Parade/a", [[10, 10, 40, 50], [100, 20, 30, 30]])]
    preds = {"0--Parade/a": dets([10, 10, 40, 50, 0.9], [100, 20, 30, 30, 0.8])}
    result = evaluate_wider(gt, preds)
    assert result.ap == {"easy": 1.0, "medium": 1.0, "hard": 1.0}
    easy = result.subsets["easy"]
    assert easy.faces == 2
    assert np.all(easy.precision == 1.0)
    # scores normalise to 1.0 and 0.0: the second face is only recalled at the last threshold, 0.0
    assert np.all(easy.recall[:-1] == 0.5) and easy.recall[-1] == 1.0


def test_duplicate_detection_lowers_precision_not_recall():
    gt = [image("e/a", [[0, 0, 20, 20], [100, 100, 20, 20]])]
    preds = {"e/a": dets([0, 0, 20, 20, 1.0],            # face 1
                         [1, 0, 20, 20, 0.75],           # duplicate on face 1: a proposal, no recall
                         [100, 100, 20, 20, 0.5],        # face 2
                         [500, 500, 20, 20, 0.0])}       # false positive
    result = evaluate_wider(gt, preds).subsets["hard"]
    # thresholds 1 - t/1000: the 0.75 detection counts from index 249, 0.5 from 499, 0.0 at 999
    np.testing.assert_array_equal(result.precision[[0, 248, 249, 498, 499, 998, 999]],
                                  [1, 1, 0.5, 0.5, 2 / 3, 2 / 3, 0.5])
    np.testing.assert_array_equal(result.recall[[0, 498, 499, 999]], [0.5, 0.5, 1, 1])
    assert result.ap == pytest.approx(0.5 * 1 + 0.5 * (2 / 3), abs=1e-15)  # 5/6


def test_detection_on_an_ignored_face_is_neither_true_nor_false_positive():
    kept, ignored = [0, 0, 20, 20], [200, 0, 20, 20]
    preds = {"e/a": dets([200, 0, 20, 20, 1.0], [0, 0, 20, 20, 0.0])}
    with_ignored = evaluate_wider([image("e/a", [kept, ignored], keep=[1])], preds).subsets["easy"]
    assert with_ignored.ap == 1.0 and with_ignored.faces == 1
    assert np.all(np.isnan(with_ignored.precision[:-1]))  # no proposal above the last threshold
    # the same detection without that ignored face in the ground truth is a false positive
    without = evaluate_wider([image("e/a", [kept])], preds).subsets["easy"]
    assert without.ap == 0.5


def test_best_iou_face_takes_the_detection_even_if_ignored():
    # the detection overlaps the kept face with IoU >= 0.5 but the ignored face more: no recall
    gt = [image("e/a", [[0, 0, 20, 20], [2, 0, 20, 20]], keep=[1])]
    preds = {"e/a": dets([2, 0, 20, 20, 0.9])}
    result = evaluate_wider(gt, preds).subsets["easy"]
    assert result.ap == 0.0 and np.all(result.recall == 0)


def test_iou_uses_the_plus_one_pixel_convention():
    # GT x 0..9 (w 9 -> 10 px wide with the +1), detection x 0..4 (5 px): IoU 50/100 = 0.5 -> a match
    gt = [image("e/a", [[0, 0, 9, 9]]), image("e/b", [[0, 0, 20, 20]])]
    other = dets([0, 0, 20, 20, 0.0])  # a second score, so that normalisation is defined
    assert evaluate_wider(gt, {"e/a": dets([0, 0, 4, 9, 1.0]), "e/b": other}).ap["easy"] == 1.0
    matches = match_predictions(gt, {"e/a": dets([0, 0, 4, 9, 1.0])})
    assert matches.best_iou[0] == 0.5
    assert evaluate_wider(gt, {"e/a": dets([0, 0, 3, 9, 1.0]), "e/b": other}).ap["easy"] == 0.25  # IoU 40/100: miss; P 1/2 at R 1/2


def test_a_single_constant_score_normalises_to_nan_and_scores_zero_like_the_official_code():
    gt = [image("e/a", [[0, 0, 20, 20]])]
    result = evaluate_wider(gt, {"e/a": dets([0, 0, 20, 20, 0.7])})
    assert result.ap["easy"] == 0.0 == reference_wider_eval(gt, {"e/a": dets([0, 0, 20, 20, 0.7])})["easy"][0]


def test_empty_images_and_missing_predictions():
    zero_face = image("e/empty", [[0, 0, 0, 0]], keep=[])  # the .mat's one all-zero row, nothing kept
    face = image("e/face", [[50, 50, 30, 30]])
    unseen = image("e/unseen", [[10, 10, 30, 30]])  # no predictions: only adds to the recall denominator
    preds = {"e/face": dets([50, 50, 30, 30, 1.0]),
             "e/empty": dets([300, 300, 30, 30, 0.0])}  # a false positive on the empty image
    result = evaluate_wider([zero_face, face, unseen], preds)
    hard = result.subsets["hard"]
    assert hard.faces == 2 and result.images_without_predictions == 1
    assert hard.recall[-1] == 0.5 and hard.precision[-1] == 0.5
    assert hard.ap == 0.5
    # official quirk: a detection on the dummy all-zero box matches it (IoU 1) and is ignored
    preds["e/empty"] = dets([0, 0, 0, 0, 0.0])
    assert evaluate_wider([zero_face, face, unseen], preds).subsets["hard"].precision[-1] == 1.0


def test_no_predictions_at_all_scores_zero():
    gt = [image("e/a", [[0, 0, 20, 20]])]
    for preds in ({}, {"e/a": np.zeros((0, 5))}):
        result = evaluate_wider(gt, preds)
        assert result.ap == {"easy": 0.0, "medium": 0.0, "hard": 0.0}
        assert np.all(result.subsets["easy"].recall == 0)


def test_score_ties_and_row_order_do_not_change_the_result():
    gt = [image("e/a", [[0, 0, 20, 20], [50, 0, 20, 20]]), image("e/b", [[0, 0, 40, 40]])]
    preds = {"e/a": dets([0, 0, 20, 20, 0.5], [1, 1, 20, 20, 0.5], [50, 0, 20, 20, 0.5], [90, 90, 9, 9, 0.5]),
             "e/b": dets([0, 0, 40, 40, 0.7], [300, 0, 40, 40, 0.2])}
    first = evaluate_wider(gt, preds)
    shuffled = {k: v[::-1].copy() for k, v in preds.items()}
    second = evaluate_wider(gt, shuffled)
    ref = reference_wider_eval(gt, preds)
    for s in ALL:
        assert first.subsets[s].ap == second.subsets[s].ap == ref[s][0]
        np.testing.assert_array_equal(first.subsets[s].precision, ref[s][1])


def test_subset_without_kept_faces_has_nan_ap_like_the_official_code():
    gt = [image("e/a", [[0, 0, 20, 20]], keep=[])]
    assert np.isnan(evaluate_wider(gt, {"e/a": dets([0, 0, 20, 20, 1.0])}).ap["easy"])


def test_thresholds_and_voc_ap_match_the_official_definitions():
    thr = score_thresholds()
    assert len(thr) == 1000 and thr[0] == 0.999 and thr[-1] == 0.0 and thr[499] == 0.5
    assert voc_ap(np.array([0.5, 1.0]), np.array([1.0, 0.5])) == 0.75
    assert voc_ap(np.array([0.0, 0.5]), np.array([np.nan, 1.0])) == 0.5


def test_malformed_predictions_are_rejected_with_the_image_named():
    gt = [image("e/a", [[0, 0, 20, 20]])]
    with pytest.raises(ValueError, match="e/a"):
        evaluate_wider(gt, {"e/a": np.zeros((2, 4))})
    with pytest.raises(ValueError, match="non-finite"):
        evaluate_wider(gt, {"e/a": dets([0, 0, 20, 20, np.nan])})
    result = evaluate_wider(gt, {"e/zzz": dets([0, 0, 20, 20, 1.0])})
    assert result.unknown_keys == ("e/zzz",)


@pytest.mark.parametrize("seed", range(6))
def test_random_sets_match_the_literal_official_loop_exactly(seed):
    gt, preds = synthetic_val_set(seed, images=25)
    ref = reference_wider_eval(gt, preds)
    result = evaluate_wider(gt, preds)
    for s in ALL:
        ap, precision, recall = ref[s]
        assert result.subsets[s].ap == ap
        np.testing.assert_array_equal(result.subsets[s].precision, precision)
        np.testing.assert_array_equal(result.subsets[s].recall, recall)


def test_crowded_images_are_matched_in_chunks_like_small_ones(monkeypatch):
    import facedet.evaluate.wider_eval as wider_eval

    gt, preds = synthetic_val_set(3, images=12, crowd=150)
    whole = evaluate_wider(gt, preds)
    monkeypatch.setattr(wider_eval, "_PAIRS_PER_CHUNK", 37)
    chunked = evaluate_wider(gt, preds)
    assert whole.ap == chunked.ap


def test_recall_by_face_size_counts_kept_faces_per_height_bin():
    gt = [image("e/a", [[0, 0, 8, 8], [100, 0, 20, 20], [200, 0, 60, 60]])]
    preds = {"e/a": dets([100, 0, 20, 20, 0.9], [200, 0, 60, 60, 0.2])}
    bins = recall_by_face_size(match_predictions(gt, preds), score_threshold=0.5, edges=(0, 10, 50, np.inf))
    assert [(b.label, b.faces, b.recalled) for b in bins] == [("0-10", 1, 0), ("10-50", 1, 1), ("50+", 1, 0)]
