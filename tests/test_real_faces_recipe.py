"""The real-faces recipe's knobs, set with `dvc exp run -S` (real photos get them from `auto`): the
native-scale preset, crops at the photo's own scale, evaluation at a larger input and an extra export
size. Every shipped file is int8 (or float) with uint8 input, ends in the post-process op, carries
metadata MediaPipe loads, and is scored as it is; the model card says which file was scored at which
input. (On the synthetic set, in a fresh copy: what is checked is the wiring, not the AP.)"""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import numpy as np
import pytest

from pipeline_copy import fresh_copy, run

RECIPE = ["model.preset=ssd_mobilenet_v2_native_256", "train.augment.scale_crop=1.0",
          "train.positive_iou=0.35", "train.negative_iou=0.3", "evaluate.input_size=320",
          "export.input_sizes=[320]", "export.score_threshold=0.0"]  # 12 steps: keep the op's low scores


@pytest.fixture(scope="module")
def experiment(tmp_path_factory) -> Path:
    repo = fresh_copy(tmp_path_factory.mktemp("recipe") / "facedet")
    run(["dvc", "exp", "run", *[arg for pair in RECIPE for arg in ("-S", pair)]], repo)
    return repo


@pytest.mark.slow
def test_the_export_stage_ships_each_requested_size_and_says_how_to_feed_it(experiment):
    from facedet.export.tflite import verify_tflite
    from facedet.runtime.export_manifest import read_manifest
    from facedet.runtime.tflite_detector import TFLiteDetector

    entries = {m.variant: m for m in read_manifest(experiment / "models/export")}
    assert set(entries) == {"int8", "float", "int8_320", "float_320"}
    for variant, entry in entries.items():
        path = experiment / "models/export" / entry.file
        detector = TFLiteDetector(path)
        assert detector.input_size == (entry.input_size,) * 2 and detector.resize == "letterbox"
        probe = np.full((entry.input_size, entry.input_size, 3), 128, np.uint8)
        verify_tflite(path, entry.quantize, [probe])  # uint8 input, post-process op last, int8 convs
    assert entries["int8"].input_size == 256


@pytest.mark.slow
def test_the_evaluation_stages_score_each_file_at_its_own_input(experiment):
    keras = json.loads((experiment / "reports/evaluate/metrics.json").read_text())
    assert keras["input_size"] == 320
    shipped = json.loads((experiment / "reports/evaluate_tflite/metrics.json").read_text())
    assert {k for k in shipped if not k.startswith("int8_minus")} == {"int8", "float", "int8_320", "float_320"}
    assert shipped["int8_320"]["file"] == "face_detector_int8_320.tflite" and shipped["int8_320"]["input_size"] == 320
    assert 0.0 <= shipped["int8_320"]["wider_hard_ap"] <= 1.0 and "int8_minus_float_320" in shipped
    assert (experiment / "reports/evaluate_tflite/sizes/int8_320/predictions").is_dir()
    card = (experiment / "models/model_card.md").read_text()
    assert "`face_detector_int8_320.tflite`" in card and "letterbox" in card
    assert "| input_size | 320 |" in card.replace(".0000", "")


@pytest.mark.slow
def test_mediapipe_loads_the_larger_int8_file_and_detects(experiment):
    if importlib.util.find_spec("mediapipe") is None:
        pytest.skip("MediaPipe Tasks is not installed on this platform")
    import mediapipe as mp
    from mediapipe.tasks.python import BaseOptions, vision

    path = experiment / "models/export/face_detector_int8_320.tflite"
    options = vision.ObjectDetectorOptions(base_options=BaseOptions(model_asset_path=str(path)),
                                           score_threshold=0.0, max_results=5)
    image = np.random.default_rng(0).integers(0, 255, (240, 320, 3), dtype=np.uint8)
    with vision.ObjectDetector.create_from_options(options) as detector:
        result = detector.detect(mp.Image(image_format=mp.ImageFormat.SRGB, data=image))
    assert result.detections and all(d.categories[0].category_name == "face" for d in result.detections)
