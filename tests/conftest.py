"""Fixtures more than one test file uses. Plain helpers live in named modules beside this one
(face_shards, standin_detector, synthetic_wider, pipeline_copy): test files import those, never each other."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest


@pytest.fixture(scope="session")
def standin_tflite(tmp_path_factory) -> Path:
    """The stand-in detector (tests/standin_detector.py) exported to a float .tflite with a zero box head,
    so each detection is exactly its anchor: at most 20 faces, score >= 0.05, NMS IoU 0.4. Shared by the
    whole session: tests read it, copy it or cut a copy short, never change it."""
    from facedet.export.tflite import export_tflite
    from facedet.params.sections import ExportParams

    from standin_detector import build_standin, face_image, standin_anchors

    calibration = [face_image(np.random.default_rng(2), 8, 8)]  # a float export only probes with it
    path = tmp_path_factory.mktemp("standin") / "face_float.tflite"
    return export_tflite(build_standin(zero_boxes=True), standin_anchors(), calibration, path,
                         ExportParams(max_detections=20, score_threshold=0.05, nms_iou=0.4), quantize="float")
