"""The SSD anchor generator: counts, centres and sizes a user can check by hand, in the order the
model's heads emit them; the detector config round-trips through detector.json."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest

from facedet.model.anchors import anchor_boxes, layer_box_shapes
from facedet.model.config import DetectorConfig, load_preset
from facedet.model.boxes import corners_to_centre
from facedet.params.loader import ParamsError


def test_anchor_count_centres_and_sizes_follow_the_strides_and_scales():
    config = DetectorConfig(input_size=64, feature_strides=(16, 32), min_scale=0.2, max_scale=0.6,
                            aspect_ratios=(1.0, 0.25), interpolated_scale=True)
    anchors = anchor_boxes(config)
    # stride 16 -> 4x4 cells, stride 32 -> 2x2 cells; 3 anchors per cell
    assert anchors.shape == (4 * 4 * 3 + 2 * 2 * 3, 4) and anchors.dtype == np.float32
    centre = corners_to_centre(anchors)
    # first cell of the first layer: centre (0.125, 0.125); scale 0.2, then ar 0.25: h 0.4 w 0.1,
    # then the interpolated square sqrt(0.2 * 0.6)
    np.testing.assert_allclose(centre[:3, :2], 0.125, atol=1e-6)
    np.testing.assert_allclose(centre[:3, 2:], [[0.2, 0.2], [0.4, 0.1], [math.sqrt(0.12)] * 2], atol=1e-6)
    # row-major: the second cell is one column to the right
    np.testing.assert_allclose(centre[3, :2], [0.125, 0.375], atol=1e-6)
    np.testing.assert_allclose(centre[12, :2], [0.375, 0.125], atol=1e-6)
    # last layer: 2x2 cells at 0.25/0.75, scale 0.6, interpolated sqrt(0.6 * 1.0)
    last = centre[48:]
    np.testing.assert_allclose(last[-1], [0.75, 0.75, math.sqrt(0.6), math.sqrt(0.6)], atol=1e-6)


def test_linear_scales_over_layers_like_the_tf_od_api():
    config = DetectorConfig(input_size=256, feature_strides=(8, 16, 32, 64), min_scale=0.1, max_scale=0.4,
                            aspect_ratios=(1.0,), interpolated_scale=False)
    assert [shape[0][0] for shape in layer_box_shapes(config)] == pytest.approx([0.1, 0.2, 0.3, 0.4])
    assert config.feature_sizes() == [32, 16, 8, 4]
    assert len(anchor_boxes(config)) == 32 * 32 + 16 * 16 + 8 * 8 + 4 * 4


def test_config_round_trips_through_detector_json(tmp_path):
    config = load_preset("ssd_mobilenet_v2_256")
    (tmp_path / "detector.json").write_text(config.to_json())
    assert DetectorConfig.from_json(tmp_path) == config
    np.testing.assert_array_equal(anchor_boxes(DetectorConfig.from_json(tmp_path / "detector.json")),
                                  anchor_boxes(config))


def test_bad_presets_fail_with_one_clear_line(tmp_path):
    with pytest.raises(ParamsError, match="not found"):
        load_preset("nope", tmp_path)
    (tmp_path / "odd.yaml").write_text("input_size: 250\n")
    with pytest.raises(ParamsError, match="multiple of 32"):
        load_preset("odd", tmp_path)
    (tmp_path / "typo.yaml").write_text("input_sise: 256\n")
    with pytest.raises(ParamsError, match="did you mean"):
        load_preset("typo", tmp_path)


def test_a_detector_rebuilt_at_a_larger_input_keeps_its_anchors_at_the_same_pixel_sizes():
    trained = DetectorConfig(input_size=256, feature_strides=(8, 16, 32, 64), min_scale=0.04, max_scale=0.75,
                             scale_spacing="geometric", aspect_ratios=(0.8,), interpolated_scale=True)
    bigger = trained.at_input_size(640)
    assert bigger.input_size == 640 and bigger.anchor_base_px == 256
    small, large = anchor_boxes(trained) * 256, anchor_boxes(bigger) * 640
    assert len(large) == (80 * 80 + 40 * 40 + 20 * 20 + 10 * 10) * 2
    # The first cell of each: the same boxes in pixels; cells are `stride` px apart in both.
    np.testing.assert_allclose(small[:2], large[:2], atol=1e-3)
    np.testing.assert_allclose(large[2, :2] - large[0, :2], [0, 8], atol=1e-3)
    sizes = lambda a: np.unique(np.round(a[:, 2:] - a[:, :2], 2), axis=0)  # noqa: E731
    np.testing.assert_allclose(sizes(small), sizes(large), atol=1e-2)
    assert DetectorConfig.from_dict(json.loads(bigger.to_json())) == bigger  # detector.json round-trip


def test_geometric_spacing_puts_equal_ratios_between_layers():
    config = DetectorConfig(input_size=256, feature_strides=(8, 16, 32), min_scale=0.05, max_scale=0.8,
                            scale_spacing="geometric", aspect_ratios=(1.0,), interpolated_scale=False)
    sides = [shapes[0][0] for shapes in layer_box_shapes(config)]
    np.testing.assert_allclose(sides, [0.05, 0.2, 0.8], rtol=1e-6)
