"""The detector model: the input/output contract, one box per anchor, and a model.keras file that
loads with plain `keras.models.load_model`."""

from __future__ import annotations

import keras
import numpy as np
import pytest

from facedet.anchors import DetectorConfig, anchor_boxes
from facedet.model import BackboneWeightsError, build_detector, load_detector

TINY = DetectorConfig(input_size=64, alpha=0.35, feature_strides=(8, 16, 32, 64), min_scale=0.1, max_scale=0.7,
                      aspect_ratios=(1.0, 0.5), interpolated_scale=True, head_channels=16)


def test_outputs_match_the_anchor_count_and_start_at_the_class_prior():
    model = build_detector(TINY)
    outputs = model(np.random.default_rng(0).uniform(0, 255, (2, 64, 64, 3)).astype(np.float32))
    anchors = len(anchor_boxes(TINY))
    assert anchors == (8 * 8 + 4 * 4 + 2 * 2 + 1) * 3
    assert tuple(outputs["box_encodings"].shape) == (2, anchors, 4)
    assert tuple(outputs["class_logits"].shape) == (2, anchors, 1)
    # bias prior init: every anchor starts near p(face) = 0.01
    probability = 1 / (1 + np.exp(-np.asarray(outputs["class_logits"])))
    assert 0.001 < float(np.median(probability)) < 0.1


def test_saved_model_loads_without_custom_objects(tmp_path):
    model = build_detector(TINY)
    model.save(tmp_path / "model.keras")
    (tmp_path / "detector.json").write_text(TINY.to_json())
    loaded, config = load_detector(tmp_path)
    assert config == TINY
    image = np.full((1, 64, 64, 3), 128.0, np.float32)
    before, after = model(image), keras.models.load_model(tmp_path / "model.keras")(image)
    np.testing.assert_allclose(np.asarray(before["class_logits"]), np.asarray(after["class_logits"]), atol=1e-5)
    assert set(loaded.output) == {"box_encodings", "class_logits"}


def test_missing_backbone_weights_file_is_a_clear_error(tmp_path):
    with pytest.raises(BackboneWeightsError, match="not found"):
        build_detector(TINY, str(tmp_path / "missing.weights.h5"))
