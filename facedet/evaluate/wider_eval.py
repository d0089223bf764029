"""The official WIDERFace Easy / Medium / Hard evaluation, vectorised with numpy.

Reproduces the official tools (MATLAB eval_tools `wider_eval.m` / `read_pred.m` / `norm_score.m` /
`evaluation.m`, and its python port wondervictor/WiderFace-Evaluation `evaluation.py`) number for number:

* scores are min-max normalised over every prediction of the val set (bounds start at min 1 /
  max 0 as in the python port; for scores in [0, 1] the MATLAB bounds give the same numbers);
* per image, every prediction takes the ground-truth face of highest IoU among *all* faces of the
  image (first one on ties, matches are not exclusive); IoU uses boxes converted to
  `x2 = x + w, y2 = y + h` and the +1 pixel convention (`(x2 - x1 + 1) * (y2 - y1 + 1)`);
* IoU >= 0.5 on a face the subset ignores: the prediction is neither a proposal nor a recall;
  on a kept face: the first such prediction recalls it, later ones are plain proposals;
* 1000 thresholds `1 - t/1000` (t = 1..1000) on the normalised score; at each, the proposals
  and recalled faces of the predictions scoring >= threshold are summed over the images;
  precision = recalled / proposals (NaN where there is no proposal yet, as in the official code),
  recall = recalled / all kept faces of the subset (images without predictions included);
* AP = VOC all-point interpolation of that curve (`VOCap`).

Images whose ground truth holds no box row, or that have no predictions, are skipped as in the
official loop (their kept faces still count in the recall denominator).

Why the vectorised form is exact: the official loop sorts the predictions of an image by score
(stable) and, at a threshold, looks at the prefix of those scoring >= threshold. Matches are not
exclusive, so the proposals of that prefix are the non-ignored predictions scoring >= threshold,
and the recalled faces are the kept faces whose best-scoring matching prediction scores
>= threshold. Both are per-prediction / per-face threshold indices, summed with `bincount`.

Boxes: ground truth pixel `x1, y1, w, h`; predictions pixel `x, y, w, h, score`.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field

import numpy as np

from facedet.data.wider_mat import SUBSETS, EvalImage
from facedet.model.boxes import pixel_xywh_to_xyxy

IOU_THRESHOLD = 0.5
THRESHOLD_COUNT = 1000
# IoU pairs evaluated at once: bounds memory (~20 float64 temporaries per pair) on crowded images
_PAIRS_PER_CHUNK = 1 << 21


def score_thresholds(count: int = THRESHOLD_COUNT) -> np.ndarray:
    """The official normalised-score thresholds `1 - t/count`, t = 1..count: float64 (count,)."""
    return 1.0 - np.arange(1, count + 1) / count


@dataclass(frozen=True)
class WiderMatches:
    """Every prediction matched to its best ground-truth face (subset independent; compute once).

    Faces are concatenated over the images in ground-truth order: face_boxes_xywh float64 (F, 4)
    pixel x1, y1, w, h; face_image int (F,). kept[subset]: bool (F,) the faces that count;
    keep_counts[subset]: number of kept indices listed in the ground truth (the recall denominator).
    Predictions (P,): pred_image int, pred_score float64 raw score, best_face int (global face index,
    -1 for an image without ground-truth rows), best_iou float64.
    """

    image_keys: tuple[str, ...]
    face_boxes_xywh: np.ndarray
    face_image: np.ndarray
    kept: dict[str, np.ndarray]
    keep_counts: dict[str, int]
    pred_image: np.ndarray
    pred_score: np.ndarray
    best_face: np.ndarray
    best_iou: np.ndarray
    iou_threshold: float = IOU_THRESHOLD
    images_without_predictions: int = 0
    unknown_keys: tuple[str, ...] = ()

    @property
    def matched(self) -> np.ndarray:
        """bool (P,): the prediction's best IoU reaches the threshold (an official match)."""
        return (self.best_face >= 0) & (self.best_iou >= self.iou_threshold)


@dataclass(frozen=True)
class SubsetResult:
    """The official PR curve of one subset.

    precision, recall: float64 (1000,), one point per threshold in `thresholds` (normalised scores
    0.999 ... 0.0, descending); precision is NaN where no prediction scores >= the threshold.
    ap: VOC all-point AP (NaN if the subset keeps no face); faces: the recall denominator.
    """

    subset: str
    ap: float
    precision: np.ndarray
    recall: np.ndarray
    thresholds: np.ndarray
    faces: int


@dataclass(frozen=True)
class WiderEvalResult:
    """Per-subset results plus the score normalisation (raw = min + norm * (max - min))."""

    subsets: dict[str, SubsetResult]
    score_min: float
    score_max: float
    predictions: int
    images: int
    images_without_predictions: int
    unknown_keys: tuple[str, ...] = field(default=())

    @property
    def ap(self) -> dict[str, float]:
        """{'easy': AP, 'medium': AP, 'hard': AP} (the subsets evaluated, in order)."""
        return {name: r.ap for name, r in self.subsets.items()}



# ---------------------------------------------------------------------------------------------
# matching


def _prediction_array(key: str, value: object) -> np.ndarray:
    arr = np.asarray(value, dtype=np.float64)
    if arr.size == 0:
        return np.zeros((0, 5))
    if arr.ndim != 2 or arr.shape[1] != 5:
        raise ValueError(f"predictions[{key!r}]: expected (K, 5) x, y, w, h, score, got shape {arr.shape}")
    return arr


def match_predictions(ground_truth: Sequence[EvalImage], predictions: Mapping[str, np.ndarray],
                      iou_threshold: float = IOU_THRESHOLD) -> WiderMatches:
    """Match each prediction to the ground-truth face of highest IoU (official rule), all images at once.

    ground_truth: the official val images (`facedet.data.wider_mat.read_eval_ground_truth`), boxes pixel
    x1, y1, w, h; predictions: 'event/stem' -> (K, 5) pixel x, y, w, h, score (a missing key means
    no detections; keys not in the ground truth are ignored and listed in `unknown_keys`).
    Raises ValueError for a malformed array, a non-finite value, or a keep index out of range.
    """
    keys = tuple(img.key for img in ground_truth)
    if len(set(keys)) != len(keys):
        raise ValueError("ground truth lists an image twice")
    face_boxes, face_counts, kept_idx = [], [], {s: [] for s in SUBSETS}
    keep_counts = {s: 0 for s in SUBSETS}
    pred_arrays, pred_counts = [], []
    offset = 0
    for img in ground_truth:
        boxes = np.asarray(img.boxes_xywh, dtype=np.float64).reshape(-1, 4)
        face_boxes.append(boxes)
        face_counts.append(len(boxes))
        for subset in SUBSETS:
            keep = np.asarray(img.keep.get(subset, ()), dtype=np.int64).reshape(-1)
            keep_counts[subset] += len(keep)  # official: count_face += length(keep_index)
            if len(keep) and (keep.min() < 1 or keep.max() > len(boxes)):
                raise ValueError(f"{img.key}: {subset} keep index out of 1..{len(boxes)}: {keep.tolist()}")
            kept_idx[subset].append(keep - 1 + offset)
        offset += len(boxes)
        arr = _prediction_array(img.key, predictions[img.key]) if img.key in predictions else np.zeros((0, 5))
        pred_arrays.append(arr)
        pred_counts.append(len(arr))
    known = set(keys)
    unknown = tuple(sorted(k for k in predictions if k not in known))

    faces = np.concatenate(face_boxes) if face_boxes else np.zeros((0, 4))
    face_counts_arr = np.asarray(face_counts, dtype=np.int64)
    face_start = np.cumsum(face_counts_arr) - face_counts_arr
    face_image = np.repeat(np.arange(len(keys)), face_counts_arr)
    kept = {}
    for subset in SUBSETS:
        mask = np.zeros(len(faces), dtype=bool)
        if kept_idx[subset]:
            mask[np.concatenate(kept_idx[subset])] = True
        kept[subset] = mask

    preds = np.concatenate(pred_arrays) if pred_arrays else np.zeros((0, 5))
    pred_counts_arr = np.asarray(pred_counts, dtype=np.int64)
    pred_image = np.repeat(np.arange(len(keys)), pred_counts_arr)
    if not np.all(np.isfinite(preds)):
        bad = int(pred_image[np.flatnonzero(~np.all(np.isfinite(preds), axis=1))[0]])
        raise ValueError(f"predictions[{keys[bad]!r}]: non-finite value (NaN or inf)")

    best_face, best_iou = _best_faces(preds[:, :4], pred_image, faces, face_start, face_counts_arr)
    return WiderMatches(
        image_keys=keys, face_boxes_xywh=faces, face_image=face_image, kept=kept, keep_counts=keep_counts,
        pred_image=pred_image, pred_score=preds[:, 4].copy(), best_face=best_face, best_iou=best_iou,
        iou_threshold=float(iou_threshold),
        images_without_predictions=int(np.sum(pred_counts_arr == 0)), unknown_keys=unknown)


def _corners(boxes_xywh: np.ndarray) -> tuple[np.ndarray, ...]:
    """(N, 4) pixel `x, y, w, h` -> pixel x1, y1, x2 = x1 + w, y2 = y1 + h, each (N,), and the official +1
    area `(x2-x1+1)*(y2-y1+1)`."""
    x1, y1, x2, y2 = pixel_xywh_to_xyxy(boxes_xywh).T
    return x1, y1, x2, y2, (x2 - x1 + 1) * (y2 - y1 + 1)


def _best_faces(pred_xywh: np.ndarray, pred_image: np.ndarray, faces_xywh: np.ndarray,
                face_start: np.ndarray, face_counts: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """For each prediction: the global index of its highest-IoU face of the same image (first on
    ties, -1 when the image has no face rows) and that IoU. Works on chunks of (pred, face) pairs."""
    n = len(pred_xywh)
    best_face = np.full(n, -1, dtype=np.int64)
    best_iou = np.full(n, -np.inf)
    if n == 0:
        return best_face, best_iou
    px1, py1, px2, py2, parea = _corners(pred_xywh)
    gx1, gy1, gx2, gy2, garea = _corners(faces_xywh)
    reps_all = face_counts[pred_image]
    ends = np.cumsum(reps_all)
    start = 0
    while start < n:
        # the largest stop with pairs(start:stop) <= chunk budget (at least one prediction)
        base = ends[start - 1] if start else 0
        stop = max(int(np.searchsorted(ends, base + _PAIRS_PER_CHUNK, side="right")), start + 1)
        reps = reps_all[start:stop]
        live = reps > 0
        if live.any():
            idx = np.arange(start, stop)[live]
            r = reps[live]
            seg = np.cumsum(r) - r
            total = int(r.sum())
            pp = np.repeat(idx, r)
            gg = np.repeat(face_start[pred_image[idx]] - seg, r) + np.arange(total)
            iw = np.minimum(px2[pp], gx2[gg]) - np.maximum(px1[pp], gx1[gg]) + 1
            ih = np.minimum(py2[pp], gy2[gg]) - np.maximum(py1[pp], gy1[gg]) + 1
            inter = iw * ih
            with np.errstate(divide="ignore", invalid="ignore"):
                iou = inter / (parea[pp] + garea[gg] - inter)
            iou[(iw <= 0) | (ih <= 0)] = 0.0
            iou[np.isnan(iou)] = -np.inf  # MATLAB's max skips NaN (degenerate negative-size boxes)
            seg_max = np.maximum.reduceat(iou, seg)
            at_max = np.flatnonzero(iou == np.repeat(seg_max, r))
            owner = np.repeat(np.arange(len(r)), r)[at_max]
            first = at_max[np.r_[True, owner[1:] != owner[:-1]]]
            best_face[idx] = gg[first]
            best_iou[idx] = seg_max
        start = stop
    return best_face, best_iou


# ---------------------------------------------------------------------------------------------
# scoring


def normalise_scores(scores: np.ndarray) -> tuple[np.ndarray, float, float]:
    """Official min-max normalisation over the whole prediction set: (norm, min, max).

    The bounds start at min 1 / max 0 (python port); a constant score gives 0/0 = NaN scores,
    which pass no threshold (the official tools behave the same way).
    """
    scores = np.asarray(scores, dtype=np.float64)
    lo = min(1.0, float(scores.min())) if len(scores) else 1.0
    hi = max(0.0, float(scores.max())) if len(scores) else 0.0
    with np.errstate(divide="ignore", invalid="ignore"):
        norm = (scores - lo) / (hi - lo)
    return norm, lo, hi


def _threshold_index(norm_scores: np.ndarray, thresholds: np.ndarray) -> np.ndarray:
    """Index of the first (highest) threshold each score passes (score >= thr); len(thresholds) if none."""
    ascending = thresholds[::-1]
    passed = np.searchsorted(ascending, norm_scores, side="right")
    passed[np.isnan(norm_scores)] = 0
    return len(thresholds) - passed


def voc_ap(recall: np.ndarray, precision: np.ndarray) -> float:
    """VOC all-point interpolated AP (official `VOCap`); NaN precisions are skipped like MATLAB's max."""
    mrec = np.concatenate(([0.0], recall, [1.0]))
    mpre = np.concatenate(([0.0], precision, [0.0]))
    mpre = np.fmax.accumulate(mpre[::-1])[::-1]
    i = np.flatnonzero(mrec[1:] != mrec[:-1])
    return float(np.sum((mrec[i + 1] - mrec[i]) * mpre[i + 1]))


def evaluate_matches(matches: WiderMatches, subsets: Iterable[str] = SUBSETS,
                     threshold_count: int = THRESHOLD_COUNT) -> WiderEvalResult:
    """The official PR curves and APs from `match_predictions` output."""
    thresholds = score_thresholds(threshold_count)
    in_scored_image = matches.best_face >= 0  # images without face rows are skipped officially
    norm, lo, hi = normalise_scores(matches.pred_score)
    t_index = _threshold_index(norm, thresholds)
    matched = matches.matched
    results = {}
    for subset in subsets:
        kept = matches.kept[subset]
        on_kept = np.zeros(len(norm), dtype=bool)
        on_kept[matched] = kept[matches.best_face[matched]]
        proposal = in_scored_image & ~(matched & ~on_kept)
        proposals = np.cumsum(np.bincount(t_index[proposal], minlength=threshold_count + 1)[:threshold_count])
        face_t = np.full(len(kept), threshold_count, dtype=np.int64)
        np.minimum.at(face_t, matches.best_face[on_kept], t_index[on_kept])
        recalled = np.cumsum(np.bincount(face_t[kept], minlength=threshold_count + 1)[:threshold_count])
        faces = matches.keep_counts[subset]
        with np.errstate(divide="ignore", invalid="ignore"):
            precision = recalled / proposals.astype(np.float64)
            recall = recalled / np.float64(faces)
        results[subset] = SubsetResult(subset=subset, ap=voc_ap(recall, precision), precision=precision,
                                       recall=recall, thresholds=thresholds, faces=faces)
    return WiderEvalResult(subsets=results, score_min=lo, score_max=hi, predictions=len(norm),
                           images=len(matches.image_keys),
                           images_without_predictions=matches.images_without_predictions,
                           unknown_keys=matches.unknown_keys)


def evaluate_wider(ground_truth: Sequence[EvalImage], predictions: Mapping[str, np.ndarray],
                   subsets: Iterable[str] = SUBSETS) -> WiderEvalResult:
    """Official WIDER Easy/Medium/Hard AP and PR curves.

    ground_truth: `facedet.data.wider_mat.read_eval_ground_truth(...)` (boxes pixel x1, y1, w, h);
    predictions: 'event/stem' -> (K, 5) pixel x, y, w, h, score in original image pixels (any
    order; a missing key means no detections).
    """
    return evaluate_matches(match_predictions(ground_truth, predictions), subsets)


# ---------------------------------------------------------------------------------------------
# recall by face size (for the report plots)

DEFAULT_SIZE_EDGES = (0, 10, 16, 24, 32, 48, 64, 96, 128, 256, np.inf)


@dataclass(frozen=True)
class SizeBinRecall:
    """Recall of the faces whose height (px) lies in [lower, upper)."""

    lower: float
    upper: float
    faces: int
    recalled: int

    @property
    def label(self) -> str:
        return f"{self.lower:g}+" if np.isinf(self.upper) else f"{self.lower:g}-{self.upper:g}"

    @property
    def recall(self) -> float:
        return self.recalled / self.faces if self.faces else float("nan")


def recalled_faces(matches: WiderMatches, score_threshold: float) -> np.ndarray:
    """bool (F,): faces that some prediction with raw score >= score_threshold matches (official rule)."""
    use = matches.matched & (matches.pred_score >= score_threshold)
    hit = np.zeros(len(matches.face_image), dtype=bool)
    hit[matches.best_face[use]] = True
    return hit


def recall_by_face_size(matches: WiderMatches, score_threshold: float, subset: str = "hard",
                        edges: Sequence[float] = DEFAULT_SIZE_EDGES) -> list[SizeBinRecall]:
    """Recall of `subset`'s kept faces per face-height bin, counting predictions with raw score
    >= score_threshold; edges are bin boundaries in pixels (face height, as WIDER's scale split)."""
    kept = matches.kept[subset]
    heights = matches.face_boxes_xywh[kept, 3]
    hit = recalled_faces(matches, score_threshold)[kept]
    rows = []
    for lower, upper in zip(edges[:-1], edges[1:]):
        in_bin = (heights >= lower) & (heights < upper)
        rows.append(SizeBinRecall(float(lower), float(upper), int(in_bin.sum()), int(hit[in_bin].sum())))
    return rows
