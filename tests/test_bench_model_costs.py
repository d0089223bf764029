"""`python bench/model_costs.py` times untrained detectors of a preset exported to int8, the
photo-shaped (non-square) input among them: its anchors must be as many as the heads' outputs, in
their order, at the pixel sizes of the square model's."""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pytest

from facedet.model.anchors import anchor_boxes
from facedet.model.config import DetectorConfig

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "bench"))
from model_costs import SCORE_ALL, Variant, build_model, grid_anchors, variant_config  # noqa: E402

CONFIG = DetectorConfig(input_size=64, alpha=0.35, feature_strides=(8, 16, 32, 64), min_scale=0.1, max_scale=0.7,
                        aspect_ratios=(0.8,), interpolated_scale=True, head_channels=16)


def test_square_anchors_are_the_models_own():
    np.testing.assert_array_equal(grid_anchors(CONFIG, 64, 64), anchor_boxes(CONFIG))


def test_a_landscape_input_has_an_anchor_per_head_output_at_the_same_pixel_sizes():
    variant = Variant("landscape", height=32, width=64, candidates="all")
    config = variant_config(CONFIG, variant)
    anchors = grid_anchors(config, 32, 64)
    # Stride 8: 4 x 8 cells, 16: 2 x 4, 32: 1 x 2, 64: 1 x 1; two anchors per cell.
    assert len(anchors) == (32 + 8 + 2 + 1) * 2
    model = build_model(config, variant, [np.full((32, 64, 3), v, np.uint8) for v in (20, 200)])
    outputs = model(np.zeros((1, 32, 64, 3), np.float32))
    assert outputs["box_encodings"].shape == (1, len(anchors), 4)
    scores = 1 / (1 + np.exp(-np.asarray(outputs["class_logits"])))
    assert scores == pytest.approx(SCORE_ALL, abs=0.01)  # every anchor a candidate of the post-process op
    square = anchor_boxes(config)
    # The first anchor of each: the same box in pixels (the landscape input is half as high).
    np.testing.assert_allclose((anchors[0, 2:] - anchors[0, :2]) * [32, 64], (square[0, 2:] - square[0, :2]) * 64,
                               rtol=1e-5)
    # The centres of the stride-8 cells of the first row: (j + 0.5) / 8 across, 0.5 / 4 down.
    np.testing.assert_allclose((anchors[0:16:2, 1] + anchors[0:16:2, 3]) / 2, (np.arange(8) + 0.5) / 8, rtol=1e-6)
    np.testing.assert_allclose((anchors[0:16:2, 0] + anchors[0:16:2, 2]) / 2, 0.5 / 4, rtol=1e-6)
