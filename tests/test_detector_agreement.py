"""The Keras model that training saves and the float `.tflite` the export stage makes from it find the
same faces: a user who switches from one to the other (both `facedet.runtime.detector_protocol.Detector`s)
gets the same boxes in the same photo's pixels, best first, up to float rounding."""

from __future__ import annotations

import dataclasses

import keras
import numpy as np
import pytest

from facedet.export.tflite import export_tflite
from facedet.model.anchors import anchor_boxes
from facedet.model.config import DetectorConfig
from facedet.model.boxes import pairwise_iou, pixel_xywh_to_corners
from facedet.model.ssd import BATCH_NORM_MOMENTUM, build_detector
from facedet.params.sections import ExportParams
from facedet.runtime.detector_protocol import Detector
from facedet.runtime.keras_detector import KerasDetector
from facedet.runtime.tflite_detector import TFLiteDetector

from standin_detector import face_image

CONFIG = DetectorConfig(input_size=64, alpha=0.35, feature_strides=(8, 16, 32, 64), min_scale=0.1, max_scale=0.7,
                        aspect_ratios=(1.0, 0.5), interpolated_scale=True, head_channels=16)
# One set of post-process settings for both: the .tflite bakes them in, the Keras detector applies them.
PARAMS = ExportParams(max_detections=100, score_threshold=0.3, nms_iou=0.4)  # more room than NMS leaves
SCORE_TOLERANCE = 2e-3  # float32 arithmetic in two runtimes
MIN_IOU = 0.98


def photos(resize: str) -> list[np.ndarray]:
    """Photos both detectors see as the same uint8 pixels: at the model input size when the model
    stretches (the Keras detector resizes in float as training does, the .tflite takes uint8, so
    other sizes differ by rounding), any size and shape when it letterboxes (both fit the photo
    with facedet.runtime.photo_fit.fit_to_input)."""
    rng = np.random.default_rng(4)
    if resize == "stretch":
        return [face_image(rng, 10, 30), face_image(rng, 40, 4, side=20)]
    return [face_image(rng, 4, 8, side=24, height=48, width=40),
            face_image(rng, 30, 100, side=40, height=120, width=200),
            face_image(rng, 100, 10, side=30, height=160, width=90)]


def untrained_but_decisive(config: DetectorConfig) -> keras.Model:
    """A detector that scores anchors as distinctly as a trained one, without training: batch-norm
    statistics taken from a batch of photos (a fresh model's unit variances shrink every activation
    to ~0, so all anchors would tie at the class prior), and the class head scaled up so that the
    scores spread over (0, 1) and NMS has distinct boxes to choose from."""
    keras.utils.set_random_seed(0)
    model = build_detector(config)
    rng = np.random.default_rng(0)
    batch = np.stack([face_image(rng, *rng.integers(0, 48, 2)) for _ in range(16)]).astype(np.float32)
    norms = [layer for layer in model.layers if isinstance(layer, keras.layers.BatchNormalization)]
    for layer in norms:
        layer.momentum = 0.0  # the moving statistics become this batch's
    model(batch, training=True)
    for layer in norms:
        layer.momentum = BATCH_NORM_MOMENTUM
    head = model.get_layer("class_predictor")
    kernel, bias = head.get_weights()
    head.set_weights([kernel * 4.0, np.full_like(bias, -1.5)])
    return model


@pytest.fixture(scope="module")
def detectors(tmp_path_factory) -> dict[str, dict[str, Detector]]:
    """resize mode -> {'keras', 'tflite'}: the same weights as training saves them (model.keras +
    detector.json) and as the export stage ships them (float .tflite, its resize mode given)."""
    root = tmp_path_factory.mktemp("agreement")
    model = untrained_but_decisive(CONFIG)
    calibration = [face_image(np.random.default_rng(1), 20, 20)]
    tflite = export_tflite(model, anchor_boxes(CONFIG), calibration, root / "face_float.tflite", PARAMS,
                           quantize="float")
    found = {}
    for resize in ("stretch", "letterbox"):
        (root / resize).mkdir()
        model.save(root / resize / "model.keras")
        (root / resize / "detector.json").write_text(dataclasses.replace(CONFIG, resize=resize).to_json())
        found[resize] = {"keras": KerasDetector(root / resize, PARAMS), "tflite": TFLiteDetector(tflite, resize=resize)}
    return found


def confident(detections: np.ndarray) -> np.ndarray:
    """Rows clear of the score threshold (near it one detector may keep a box the other drops)."""
    return detections[detections[:, 4] >= PARAMS.score_threshold + SCORE_TOLERANCE]


def touches_the_border(row: np.ndarray, photo_hw: tuple[int, int]) -> bool:
    x, y, w, h = row[:4]
    return min(x, y) < 0.5 or x + w > photo_hw[1] - 0.5 or y + h > photo_hw[0] - 0.5


def assert_found_by(found: np.ndarray, other: np.ndarray, photo_hw: tuple[int, int]) -> None:
    """Every confident row of `found` has a row of `other` on the same box with the same score, but
    for at most one box at the photo's border: the Keras detector clips boxes to the photo before
    its NMS, the .tflite's post-process op after it, so a box sticking out of the photo can
    suppress a neighbour in one and not in the other."""
    if not len(found):
        return
    assert len(other), "the other detector finds nothing"
    iou = pairwise_iou(pixel_xywh_to_corners(found[:, :4].astype(np.float64), *photo_hw),
                       pixel_xywh_to_corners(other[:, :4].astype(np.float64), *photo_hw))
    unmatched = []
    for i, row in enumerate(found):
        same_box = iou[i] >= MIN_IOU
        if not same_box.any():
            unmatched.append(row)
            continue
        assert np.abs(other[same_box, 4] - row[4]).min() <= SCORE_TOLERANCE, (row, other[same_box])
    assert len(unmatched) <= 1 and all(touches_the_border(row, photo_hw) for row in unmatched), \
        f"boxes {unmatched} not found by the other detector"


@pytest.mark.parametrize("resize", ["stretch", "letterbox"])
def test_the_keras_model_and_the_float_tflite_find_the_same_faces(detectors, resize):
    images = photos(resize)
    keras_dets = list(detectors[resize]["keras"].detect_many(images))  # batched
    tflite_dets = list(detectors[resize]["tflite"].detect_many(images))  # one by one
    assert len(keras_dets) == len(tflite_dets) == len(images)
    compared = 0
    for image, ours, theirs in zip(images, keras_dets, tflite_dets):
        for dets in (ours, theirs):
            assert dets.dtype == np.float32 and dets.shape[1] == 5
            assert np.all(np.diff(dets[:, 4]) <= 0)  # best first
            assert np.all(dets[:, :2] >= 0) and np.all(dets[:, 0] + dets[:, 2] <= image.shape[1] + 1e-3)
            assert np.all(dets[:, 1] + dets[:, 3] <= image.shape[0] + 1e-3)
        assert_found_by(confident(ours), theirs, image.shape[:2])
        assert_found_by(confident(theirs), ours, image.shape[:2])
        np.testing.assert_allclose(ours[:5], theirs[:5], atol=SCORE_TOLERANCE, rtol=1e-3)  # the best five, in order
        compared += len(confident(ours))
    assert compared >= 5 * len(images), "too few detections to compare: the test would prove nothing"


def test_detect_is_detect_many_of_one_photo(detectors):
    image = photos("letterbox")[1]
    for detector in detectors["letterbox"].values():
        np.testing.assert_array_equal(detector.detect(image), next(iter(detector.detect_many([image]))))
