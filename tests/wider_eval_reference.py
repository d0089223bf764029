"""The slow, literal reference of the official WIDER FACE evaluation.

A line-by-line port of the official MATLAB eval_tools (read_pred.m sorting, norm_score.m,
evaluation.m: image_evaluation / image_pr_info / dataset_pr_info, and VOCap), with the python
port's score bounds (min starts at 1, max at 0). Loops over images, predictions and the 1000
thresholds exactly like the originals, so it is slow: tests/test_wider_eval.py checks
facedet.evaluate.wider_eval against it and bench/wider_eval_speed.py times it. Nothing else uses it.
"""

from __future__ import annotations

import math

import numpy as np


def _matlab_max(a: float, b: float) -> float:
    """MATLAB max(a, b): NaN is ignored unless both are NaN."""
    if math.isnan(a):
        return b
    if math.isnan(b):
        return a
    return max(a, b)


def boxoverlap(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """IoU of boxes a (n, 4) x1 y1 x2 y2 with one box b, +1 pixel convention (boxoverlap.m)."""
    x1 = np.maximum(a[:, 0], b[0])
    y1 = np.maximum(a[:, 1], b[1])
    x2 = np.minimum(a[:, 2], b[2])
    y2 = np.minimum(a[:, 3], b[3])
    w = x2 - x1 + 1
    h = y2 - y1 + 1
    inter = w * h
    aarea = (a[:, 2] - a[:, 0] + 1) * (a[:, 3] - a[:, 1] + 1)
    barea = (b[2] - b[0] + 1) * (b[3] - b[1] + 1)
    with np.errstate(divide="ignore", invalid="ignore"):
        o = inter / (aarea + barea - inter)
    o[w <= 0] = 0
    o[h <= 0] = 0
    return o


def image_evaluation(pred_info, gt_bbx, ignore, iou_thresh):
    pred_info = pred_info.copy()
    gt_bbx = gt_bbx.copy()
    pred_recall = np.zeros(len(pred_info))
    recall_list = np.zeros(len(gt_bbx))
    proposal_list = np.ones(len(pred_info))
    pred_info[:, 2] = pred_info[:, 0] + pred_info[:, 2]
    pred_info[:, 3] = pred_info[:, 1] + pred_info[:, 3]
    gt_bbx[:, 2] = gt_bbx[:, 0] + gt_bbx[:, 2]
    gt_bbx[:, 3] = gt_bbx[:, 1] + gt_bbx[:, 3]
    for h in range(len(pred_info)):
        overlap_list = boxoverlap(gt_bbx, pred_info[h, :4])
        # [max_overlap, idx] = max(overlap_list): NaN skipped, first index on ties
        max_overlap, idx = float("nan"), 0
        for k, o in enumerate(overlap_list):
            if not math.isnan(o) and (math.isnan(max_overlap) or o > max_overlap):
                max_overlap, idx = float(o), k
        if max_overlap >= iou_thresh:
            if ignore[idx] == 0:
                recall_list[idx] = -1
                proposal_list[h] = -1
            elif recall_list[idx] == 0:
                recall_list[idx] = 1
        pred_recall[h] = len(np.flatnonzero(recall_list == 1))
    return pred_recall, proposal_list


def image_pr_info(thresh_num, pred_info, proposal_list, pred_recall):
    img_pr_info = np.zeros((thresh_num, 2))
    for t in range(1, thresh_num + 1):
        thresh = 1 - t / thresh_num
        found = np.flatnonzero(pred_info[:, 4] >= thresh)
        if len(found) == 0:
            img_pr_info[t - 1, :] = 0
        else:
            r_index = found[-1]
            img_pr_info[t - 1, 0] = len(np.flatnonzero(proposal_list[: r_index + 1] == 1))
            img_pr_info[t - 1, 1] = pred_recall[r_index]
    return img_pr_info


def dataset_pr_info(thresh_num, org_pr_curve, count_face):
    pr_curve = np.zeros((thresh_num, 2))
    with np.errstate(divide="ignore", invalid="ignore"):
        for i in range(thresh_num):
            pr_curve[i, 0] = np.float64(org_pr_curve[i, 1]) / org_pr_curve[i, 0]
            pr_curve[i, 1] = np.float64(org_pr_curve[i, 1]) / count_face
    return pr_curve


def vocap(rec, prec) -> float:
    mrec = np.concatenate(([0.0], rec, [1.0]))
    mpre = np.concatenate(([0.0], prec, [0.0]))
    for i in range(len(mpre) - 2, -1, -1):
        mpre[i] = _matlab_max(mpre[i], mpre[i + 1])
    i = np.flatnonzero(mrec[1:] != mrec[:-1]) + 1
    return float(np.sum((mrec[i] - mrec[i - 1]) * mpre[i]))


def reference_wider_eval(ground_truth, predictions, subsets=("easy", "medium", "hard"),
                         thresh_num=1000, iou_thresh=0.5):
    """subset -> (ap, precision (thresh_num,), recall (thresh_num,)), computed the official way.

    ground_truth: list of facedet.data.wider_mat.EvalImage; predictions: 'event/stem' -> (K, 5) x y w h score.
    """
    # read_pred.m: per image, sort by score, descending (MATLAB's sort keeps ties in order)
    pred_list = {}
    for img in ground_truth:
        if img.key in predictions and len(predictions[img.key]):
            bbx = np.asarray(predictions[img.key], dtype=np.float64).reshape(-1, 5)
            pred_list[img.key] = bbx[np.argsort(-bbx[:, 4], kind="stable")]
    # norm_score
    max_score, min_score = 0.0, 1.0
    for bbx in pred_list.values():
        max_score = max(max_score, float(np.max(bbx[:, 4])))
        min_score = min(min_score, float(np.min(bbx[:, 4])))
    for bbx in pred_list.values():
        with np.errstate(divide="ignore", invalid="ignore"):
            bbx[:, 4] = (bbx[:, 4] - min_score) / (max_score - min_score)
    out = {}
    for subset in subsets:
        org_pr_curve = np.zeros((thresh_num, 2))
        count_face = 0
        for img in ground_truth:
            gt_bbx = np.asarray(img.boxes_xywh, dtype=np.float64).reshape(-1, 4)
            pred_info = pred_list.get(img.key)
            keep_index = np.asarray(img.keep.get(subset, ()), dtype=np.int64)
            count_face += len(keep_index)
            if len(gt_bbx) == 0 or pred_info is None:
                continue
            ignore = np.zeros(len(gt_bbx))
            if len(keep_index):
                ignore[keep_index - 1] = 1
            pred_recall, proposal_list = image_evaluation(pred_info, gt_bbx, ignore, iou_thresh)
            org_pr_curve += image_pr_info(thresh_num, pred_info, proposal_list, pred_recall)
        pr_curve = dataset_pr_info(thresh_num, org_pr_curve, count_face)
        out[subset] = (vocap(pr_curve[:, 1], pr_curve[:, 0]), pr_curve[:, 0], pr_curve[:, 1])
    return out


def synthetic_val_set(seed: int, images: int = 40, mean_faces: float = 12.3, crowd: int = 0):
    """Random ground truth and predictions shaped like WIDER val, for the cross-checks and the bench.

    Returns (list of facedet.data.wider_mat.EvalImage, {'event/stem': (K, 5) x y w h score}). Integer face
    boxes (as in the .mat); a few zero-face images (one all-zero row, nothing kept); nested keep
    sets (easy: valid and height >= 40, medium: >= 20, hard: valid); detections jittered around
    faces (some duplicated), false positives, scores rounded to 6 decimals (ties happen), a few
    images without predictions. `crowd` > 0 adds one image with that many faces.
    """
    from facedet.data.wider_mat import EvalImage

    rng = np.random.default_rng(seed)
    gt, preds = [], {}
    for i in range(images):
        n = crowd if (crowd and i == images // 2) else int(rng.geometric(1.0 / (1.0 + mean_faces)) - 1)
        event = f"{i % 61}--Event{i % 61}"
        stem = f"{i % 61}_Event_img_{i}"
        if n == 0:
            gt.append(EvalImage(event, stem, np.zeros((1, 4)), {s: np.zeros(0, np.int64) for s in ("easy", "medium", "hard")}))
        else:
            w = np.exp(rng.uniform(np.log(3), np.log(300), n)).round()
            h = (w * rng.uniform(1.0, 1.4, n)).round()
            xy = rng.uniform(0, 1000, (n, 2)).round()
            boxes = np.column_stack([xy, w, h])
            valid = rng.random(n) > 0.02
            idx = np.arange(1, n + 1)
            keep = {"hard": idx[valid], "medium": idx[valid & (h >= 20)], "easy": idx[valid & (h >= 40)]}
            gt.append(EvalImage(event, stem, boxes, keep))
        if rng.random() < 0.05:
            continue  # no prediction file for this image
        faces = gt[-1].boxes_xywh if n else np.zeros((0, 4))
        found = faces[rng.random(len(faces)) < np.clip(faces[:, 3] / 40.0, 0.2, 0.95)] if n else faces
        dup = found[rng.random(len(found)) < 0.15]
        det = np.concatenate([found, dup])
        det = det + rng.normal(0, 0.08, det.shape) * np.repeat(det[:, 2:3], 4, axis=1)
        k = int(rng.poisson(3))
        fp = np.column_stack([rng.uniform(0, 1000, (k, 2)), rng.uniform(4, 100, (k, 2))])
        det = np.concatenate([det, fp])
        scores = np.concatenate([rng.beta(5, 2, len(det) - len(fp)), rng.beta(1, 4, len(fp))]).round(6)
        preds[gt[-1].key] = np.column_stack([det.round(2), scores])
    return gt, preds
