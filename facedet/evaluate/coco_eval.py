"""COCO-style box metrics for the face detector, through pycocotools (the one bridge to it).

Ground truth: any objects with `image` ('event/name.jpg'), `width`, `height` and `boxes_xywh`
(float (N, 4) pixel x1, y1, w, h), e.g. `facedet.data.filtering.FilteredImage`. Detections:
'event/name' (the image path without '.jpg') -> (K, 5) pixel x, y, w, h, score.
Single category 'face' (id 1). Boxes with w <= 0 or h <= 0 are left out of the ground truth.
"""

from __future__ import annotations

import contextlib
import io
from collections.abc import Mapping, Sequence
from typing import Any, Protocol

import numpy as np

from facedet.data.wider_gt import eval_key

DEFAULT_MAX_DETECTIONS = (1, 100, 1000)


class ImageWithBoxes(Protocol):
    image: str
    width: int
    height: int
    boxes_xywh: np.ndarray


def coco_ground_truth(images: Sequence[ImageWithBoxes]) -> dict[str, Any]:
    """A COCO-format dataset dict: image ids 1..N in input order, category 1 'face'."""
    coco_images, annotations = [], []
    for image_id, img in enumerate(images, start=1):
        coco_images.append({"id": image_id, "file_name": img.image,
                            "width": int(img.width), "height": int(img.height)})
        for x, y, w, h in np.asarray(img.boxes_xywh, dtype=np.float64).reshape(-1, 4).tolist():
            if w > 0 and h > 0:
                annotations.append({"id": len(annotations) + 1, "image_id": image_id, "category_id": 1,
                                    "bbox": [x, y, w, h], "area": w * h, "iscrowd": 0})
    return {"images": coco_images, "annotations": annotations,
            "categories": [{"id": 1, "name": "face", "supercategory": "face"}]}


def coco_detections(images: Sequence[ImageWithBoxes], detections: Mapping[str, np.ndarray]) -> list[dict[str, Any]]:
    """Detections as COCO result dicts (image ids as in `coco_ground_truth`).

    Detections of images not in `images` (e.g. dropped by the filter) are left out.
    Raises ValueError for an array that is not (K, 5).
    """
    ids = {eval_key(img.image): i for i, img in enumerate(images, start=1)}
    results = []
    for key, dets in detections.items():
        if key not in ids:
            continue
        arr = np.asarray(dets, dtype=np.float64)
        if arr.size == 0:
            continue
        if arr.ndim != 2 or arr.shape[1] != 5:
            raise ValueError(f"detections[{key!r}]: expected (K, 5) x, y, w, h, score, got shape {arr.shape}")
        for x, y, w, h, s in arr.tolist():
            results.append({"image_id": ids[key], "category_id": 1, "bbox": [x, y, w, h], "score": s})
    return results


def coco_metrics(images: Sequence[ImageWithBoxes], detections: Mapping[str, np.ndarray],
                 max_detections: Sequence[int] = DEFAULT_MAX_DETECTIONS) -> dict[str, float]:
    """COCOeval 'bbox' metrics, pycocotools' output silenced.

    Returns floats: AP (IoU .50:.95), AP50, AP75, AP_small, AP_medium, AP_large at the largest
    of `max_detections` per image; AR_<m> for each m; AR_small/medium/large at the largest m.
    -1.0 where the ground truth has no face of that size (as pycocotools).
    (COCOeval.summarize() reads AP at maxDets=100 whatever maxDets holds, so we read the
    accumulated arrays ourselves, the same way summarize does.)
    """
    from pycocotools.coco import COCO
    from pycocotools.cocoeval import COCOeval

    max_dets = sorted(int(m) for m in max_detections)
    with contextlib.redirect_stdout(io.StringIO()):
        gt = COCO()
        gt.dataset = coco_ground_truth(images)
        gt.createIndex()
        results = coco_detections(images, detections)
        if results:
            dt = gt.loadRes(results)
        else:  # loadRes cannot take an empty list
            dt = COCO()
            dt.dataset = {"images": list(gt.dataset["images"]), "categories": list(gt.dataset["categories"]),
                          "annotations": []}
            dt.createIndex()
        evaluator = COCOeval(gt, dt, iouType="bbox")
        evaluator.params.maxDets = max_dets
        evaluator.evaluate()
        evaluator.accumulate()
    return _summary(evaluator, max_dets)


def _mean_valid(values: np.ndarray) -> float:
    valid = values[values > -1]
    return float(np.mean(valid)) if valid.size else -1.0


def _summary(evaluator: Any, max_dets: list[int]) -> dict[str, float]:
    p = evaluator.params
    precision = evaluator.eval["precision"]  # [T, R, K, A, M]
    recall = evaluator.eval["recall"]  # [T, K, A, M]
    top = len(max_dets) - 1

    def ap(area: str = "all", iou: float | None = None) -> float:
        s = precision[:, :, :, list(p.areaRngLbl).index(area), top]
        if iou is not None:
            s = s[np.flatnonzero(np.isclose(p.iouThrs, iou))]
        return _mean_valid(s)

    def ar(area: str = "all", m: int = top) -> float:
        return _mean_valid(recall[:, :, list(p.areaRngLbl).index(area), m])

    out = {"AP": ap(), "AP50": ap(iou=0.5), "AP75": ap(iou=0.75),
           "AP_small": ap("small"), "AP_medium": ap("medium"), "AP_large": ap("large")}
    for m, dets in enumerate(max_dets):
        out[f"AR_{dets}"] = ar(m=m)
    for area in ("small", "medium", "large"):
        out[f"AR_{area}"] = ar(area)
    return out
