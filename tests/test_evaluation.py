"""The evaluate stages' scoring path on a small synthetic dataset: a detector that returns exactly the
ground truth scores AP 1.0 everywhere, one that finds nothing scores 0, and every report is written."""

from __future__ import annotations

import json

import numpy as np
import pytest

from facedet.data.filtering import load_filtered, run_filter
from facedet.data.images import decode_rgb
from facedet.data.synthetic import write_synthetic_dataset
from facedet.data.wider_archive import WiderArchive
from facedet.evaluate.score import evaluate_detector, int8_minus_float
from facedet.evaluate.submission import read_predictions
from facedet.params.sections import FilterParams, SyntheticParams
from facedet.runtime.detector_protocol import Detector


@pytest.fixture(scope="module")
def dataset(tmp_path_factory):
    root = tmp_path_factory.mktemp("wider")
    write_synthetic_dataset(SyntheticParams(seed=3, train_images=2, val_images=8, max_side=200), root / "raw")
    archive = WiderArchive(root / "raw")
    run_filter(archive, FilterParams(min_face_px=1), root / "interim", splits=("val",))
    return archive, load_filtered(root / "interim", "val"), root


class GroundTruthDetector(Detector):
    """Returns every valid face (the Hard subset) of each val image (in .mat order), scores from 0.9 down to 0.5
    (varied: the official protocol min-max normalises scores, so one constant score scores AP 0)."""

    def __init__(self, archive: WiderArchive):
        self.truth = iter(archive.eval_ground_truth())

    def detect(self, image: np.ndarray) -> np.ndarray:
        item = next(self.truth)
        boxes = item.boxes_xywh[item.keep["hard"] - 1].astype(np.float32)
        scores = np.linspace(0.9, 0.5, len(boxes), dtype=np.float32)[:, None]
        return np.concatenate([boxes, scores], axis=1)


class BlindDetector(Detector):
    """Finds nothing anywhere."""

    def detect(self, image: np.ndarray) -> np.ndarray:
        return np.zeros((0, 5), np.float32)


def test_a_perfect_detector_scores_one_and_every_report_is_written(dataset):
    archive, coco_images, root = dataset
    out = root / "reports"
    metrics = evaluate_detector(GroundTruthDetector(archive), archive, coco_images, out, images_to_draw=2)

    assert metrics["wider_easy_ap"] == metrics["wider_medium_ap"] == metrics["wider_hard_ap"] == 1.0
    assert metrics["coco_ap50"] > 0.98  # COCO's ground truth is the filtered table: boxes clipped to the image
    assert json.loads((out / "metrics.json").read_text()) == metrics
    predictions = read_predictions(out / "predictions", [g.key for g in archive.eval_ground_truth()])
    assert len(predictions) == 8
    for name in ("pr/easy.csv", "pr/medium.csv", "pr/hard.csv", "pr_curves.png", "recall_by_size.csv",
                 "recall_by_size.png", "detections.png"):
        assert (out / name).stat().st_size > 0, name


def test_a_detector_that_finds_nothing_scores_zero(dataset):
    archive, coco_images, root = dataset
    metrics = evaluate_detector(BlindDetector(), archive, coco_images, root / "empty", images_to_draw=0)
    assert metrics["wider_hard_ap"] == 0.0 and metrics["coco_ap50"] <= 0.0
    assert not (root / "empty" / "detections.png").exists()


def test_val_images_decode_to_rgb(dataset):
    archive, coco_images, _ = dataset
    image = decode_rgb(archive.read_image("val", coco_images[0].image))
    assert image.dtype == np.uint8 and image.shape == (coco_images[0].height, coco_images[0].width, 3)


def test_the_quantization_gap_is_int8_minus_float_at_each_size():
    metrics = {"int8": {"wider_easy_ap": 0.91, "coco_ap": 0.4, "seconds_per_image": 0.01, "file": "a.tflite"},
               "float": {"wider_easy_ap": 0.92, "coco_ap": 0.45, "seconds_per_image": 0.02, "file": "b.tflite"},
               "int8_640": {"wider_easy_ap": 0.95, "coco_ap": 0.5}, "float_640": {"wider_easy_ap": 0.9, "coco_ap": 0.5},
               "int8_320": {"wider_easy_ap": 0.8, "coco_ap": 0.3}}  # no float at 320: no gap
    gaps = int8_minus_float(metrics)
    assert list(gaps) == ["int8_minus_float", "int8_minus_float_640"]
    assert gaps["int8_minus_float"] == {"wider_easy_ap": -0.01, "coco_ap": -0.05}  # APs only, rounded to 1e-6
    assert gaps["int8_minus_float_640"] == {"wider_easy_ap": 0.05, "coco_ap": 0.0}
