"""COCO metrics of the detector: the bridge gives what a direct pycocotools run gives."""

import contextlib
import io
from dataclasses import dataclass

import numpy as np
import pytest
from pycocotools.coco import COCO
from pycocotools.cocoeval import COCOeval

from facedet.evaluate.coco_eval import coco_detections, coco_ground_truth, coco_metrics


@dataclass
class Img:  # the fields of facedet.data.filtering.FilteredImage the bridge reads
    image: str
    width: int
    height: int
    boxes_xywh: np.ndarray


def random_set(seed=0, n=12):
    rng = np.random.default_rng(seed)
    images, dets = [], {}
    for i in range(n):
        k = int(rng.integers(0, 8))
        wh = rng.uniform(8, 150, (k, 2))
        xy = rng.uniform(0, 300, (k, 2))
        boxes = np.column_stack([xy, wh]).astype(np.float32)
        images.append(Img(f"e/img_{i}.jpg", 480, 400, boxes))
        jitter = boxes + rng.normal(0, 3, boxes.shape)
        fp = np.column_stack([rng.uniform(0, 300, (3, 2)), rng.uniform(8, 80, (3, 2))])
        det = np.concatenate([jitter, fp])
        dets[f"e/img_{i}"] = np.column_stack([det, rng.random(len(det))])
    return images, dets


def direct_stats(images, dets, max_dets):
    with contextlib.redirect_stdout(io.StringIO()):
        gt = COCO()
        gt.dataset = coco_ground_truth(images)
        gt.createIndex()
        dt = gt.loadRes(coco_detections(images, dets))
        ev = COCOeval(gt, dt, "bbox")
        ev.params.maxDets = list(max_dets)
        ev.evaluate()
        ev.accumulate()
        ev.summarize()
    return ev.stats


def test_metrics_equal_a_direct_pycocotools_summary():
    images, dets = random_set()
    ours = coco_metrics(images, dets, max_detections=(1, 10, 100))
    stats = direct_stats(images, dets, (1, 10, 100))
    names = ["AP", "AP50", "AP75", "AP_small", "AP_medium", "AP_large", "AR_1", "AR_10", "AR_100",
             "AR_small", "AR_medium", "AR_large"]
    for i, name in enumerate(names):
        assert ours[name] == pytest.approx(stats[i], abs=1e-12), name
    assert 0 < ours["AP50"] <= 1


def test_large_max_detections_are_used_for_every_ap():
    images, dets = random_set(1)
    ours = coco_metrics(images, dets)  # maxDets 1, 100, 1000
    stats = direct_stats(images, dets, (1, 100, 1000))
    assert ours["AP50"] == pytest.approx(stats[1], abs=1e-12)  # summarize reads AP50 at maxDets[2]
    assert ours["AR_1000"] == pytest.approx(stats[8], abs=1e-12)
    assert set(ours) >= {"AP", "AP_small", "AR_1", "AR_100"}


def test_perfect_and_empty_detections():
    images = [Img("e/a.jpg", 200, 200, np.array([[10, 10, 50, 60]], np.float32))]
    assert coco_metrics(images, {"e/a": np.array([[10, 10, 50, 60, 0.9]])})["AP"] == pytest.approx(1.0)
    empty = coco_metrics(images, {})
    assert empty["AP"] == 0.0 and empty["AP_small"] == -1.0  # no small face in the ground truth: -1 as COCO


def test_detections_of_images_outside_the_ground_truth_are_left_out():
    images = [Img("e/a.jpg", 200, 200, np.array([[10, 10, 50, 60]], np.float32))]
    dets = {"e/a": np.array([[10, 10, 50, 60, 0.9]]), "e/dropped_by_filter": np.array([[1, 1, 5, 5, 0.99]])}
    assert coco_metrics(images, dets)["AP"] == pytest.approx(1.0)
    with pytest.raises(ValueError, match="e/a"):
        coco_metrics(images, {"e/a": np.zeros((2, 4))})
