"""The released model (models/release/): what a user who clones the project finds faces with before
training anything. Each file is the export stage's own (int8, uint8 input, post-process op, metadata
MediaPipe loads), under 4 MB, the one its model card describes (same sha256), and the params and dvc.lock
of the run that made it travel with it; `facedet detect` without a model finds real faces with it."""

from __future__ import annotations

import importlib.util
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from facedet.params.loader import parse_params, read_params_file
from facedet.params.recipes import resolve_auto
from facedet.process.hashing import sha256_of
from facedet.runtime.export_manifest import read_manifest
from facedet.runtime.tflite_detector import TFLiteDetector

REPO = Path(__file__).resolve().parents[1]
RELEASE = REPO / "models" / "release"
RELEASED = sorted(RELEASE.glob("*.tflite"))
WIDER = REPO.parent / "shared" / "realfaces" / "widerface"
MAX_BYTES = 4 * 1024 * 1024


def test_the_release_ships_a_phone_file_a_640_and_an_896_file_under_4_mb():
    assert sorted(p.name for p in RELEASED) == ["face_detector_int8_320.tflite", "face_detector_int8_640.tflite",
                                                "face_detector_int8_896.tflite"]
    assert all(p.stat().st_size <= MAX_BYTES for p in RELEASED)


@pytest.mark.parametrize("path", RELEASED, ids=lambda p: p.name)
def test_each_released_file_is_the_one_its_model_card_describes(path):
    from facedet.export.tflite import verify_tflite

    card = json.loads((RELEASE / "model_card.json").read_text())
    entry = next(m for m in read_manifest(RELEASE) if m.file == path.name)
    assert card["files"][entry.variant]["sha256"] == sha256_of(path)
    detector = TFLiteDetector(path)
    assert detector.input_size == (entry.input_size,) * 2 and detector.resize == "letterbox"
    probe = np.full((entry.input_size, entry.input_size, 3), 128, np.uint8)
    verify_tflite(path, "int8", [probe])  # uint8 input, int8 convs, TFLite_Detection_PostProcess last


def test_the_release_carries_the_params_and_lock_of_the_run_that_made_it():
    # both read as DVC writes them (YAML 1.2 floats such as 4e-05)
    params = read_params_file(RELEASE / "params.yaml")
    lock = parse_params((RELEASE / "dvc.lock").read_text(), "dvc.lock")
    card = json.loads((RELEASE / "model_card.json").read_text())
    for section, stage in (("train", "train"), ("export", "export"), ("model", "train")):
        assert lock["stages"][stage]["params"]["params.yaml"][section] == params[section], section
    assert card["params"] == resolve_auto(params).params  # the card lists each `auto` knob as its recipe set it
    backbone = card["backbone"]
    assert backbone["backbone_weights"] == params["train"]["backbone_weights"] and len(backbone["sha256"]) == 64
    assert card["reproduce"]["exact"] is True and card["reproduce"]["command"].endswith("&& dvc repro")


@pytest.mark.skipif(importlib.util.find_spec("mediapipe") is None, reason="MediaPipe Tasks is not installed")
@pytest.mark.parametrize("path", RELEASED, ids=lambda p: p.name)
def test_mediapipe_loads_each_released_file(path):
    import mediapipe as mp
    from mediapipe.tasks.python import BaseOptions, vision

    options = vision.ObjectDetectorOptions(base_options=BaseOptions(model_asset_path=str(path)),
                                           score_threshold=0.0, max_results=5)
    image = np.random.default_rng(0).integers(0, 255, (240, 320, 3), dtype=np.uint8)
    with vision.ObjectDetector.create_from_options(options) as detector:
        result = detector.detect(mp.Image(image_format=mp.ImageFormat.SRGB, data=image))
    assert all(d.categories[0].category_name == "face" for d in result.detections)


@pytest.mark.skipif(not WIDER.is_dir(), reason=f"{WIDER} absent (../shared is not beside the checkout)")
def test_detect_without_a_model_finds_the_faces_of_real_photos(tmp_path):
    from facedet.data.wider_mat import read_eval_ground_truth
    from facedet.evaluate.wider_eval import match_predictions, recalled_faces

    ground_truth = [g for g in read_eval_ground_truth(WIDER / "eval_tools" / "ground_truth")
                    if 1 <= len(g.keep["easy"]) <= 4][:6]  # photos with a few clear faces
    photos = tmp_path / "photos"
    photos.mkdir()
    for item in ground_truth:
        Image.open(WIDER / "WIDER_val" / "images" / item.image).save(photos / Path(item.image).name)
    out = tmp_path / "detections"
    subprocess.run([sys.executable, "-m", "facedet.cli", "detect", str(photos), "--out", str(out),
                    "--score-threshold", "0.3"], check=True, cwd=REPO, capture_output=True)
    predictions = {}
    for item in ground_truth:
        faces = json.loads((out / f"{Path(item.image).stem}.json").read_text())["faces"]
        predictions[item.key] = np.array([[*f["box_xywh"], f["score"]] for f in faces], np.float32).reshape(-1, 5)
    matches = match_predictions(ground_truth, predictions)
    found = recalled_faces(matches, 0.3)[matches.kept["easy"]]
    assert found.mean() >= 0.6, f"the released model found {found.mean():.2f} of the {len(found)} clear faces"
