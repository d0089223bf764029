"""The detector model: the input/output contract, one box per anchor for every preset in configs/,
a model.keras file that loads with plain `keras.models.load_model`, and clear errors for backbone
weights that cannot be had."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import keras
import numpy as np
import pytest

from facedet.model.anchors import anchor_boxes, layer_box_shapes
from facedet.model.config import DetectorConfig, load_preset
from facedet.model.ssd import BackboneWeightsError, at_input_size, build_detector, load_detector
from facedet.process.paths import CONFIGS_DIR
from facedet.train.save import save_detector

REPO = Path(__file__).resolve().parents[1]
PRESETS = sorted(p.stem for p in (REPO / CONFIGS_DIR).glob("*.yaml"))

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


def test_the_presets_include_the_seeds_224_and_a_320():
    assert {"ssd_mobilenet_v2_224", "ssd_mobilenet_v2_256", "ssd_mobilenet_v2_320"} <= set(PRESETS)
    seed = load_preset("ssd_mobilenet_v2_224", REPO / CONFIGS_DIR)
    assert (seed.input_size, seed.alpha, seed.aspect_ratios) == (224, 1.0, (1.0, 2.0, 0.5))


@pytest.mark.parametrize("preset", PRESETS)
def test_every_preset_builds_a_model_with_one_output_per_anchor_and_reaches_small_faces(preset):
    config = load_preset(preset, REPO / CONFIGS_DIR)
    model = build_detector(config)
    anchors = anchor_boxes(config)
    assert model.input_shape == (None, config.input_size, config.input_size, 3)
    assert tuple(model.output["box_encodings"].shape) == (None, len(anchors), 4)
    assert tuple(model.output["class_logits"].shape) == (None, len(anchors), 1)
    assert min(config.feature_strides) in (8, 16)  # a high-resolution first layer
    smallest_px = min(min(h, w) for h, w in layer_box_shapes(config)[0]) * config.input_size
    assert 6 <= smallest_px <= 16, smallest_px


def test_imagenet_weights_offline_is_one_clear_error(monkeypatch):
    from keras.src.applications import mobilenet_v2

    def offline(*args, **kwargs):
        raise Exception("URL fetch failure: [Errno -3] Temporary failure in name resolution")

    monkeypatch.setattr(mobilenet_v2.file_utils, "get_file", offline)
    config = DetectorConfig(input_size=96, alpha=0.35, feature_strides=(8, 16, 32), head_channels=16)
    with pytest.raises(BackboneWeightsError, match="backbone_weights=imagenet needs to download") as error:
        build_detector(config, "imagenet")
    assert "\n" not in str(error.value) and "none" in str(error.value)


def test_the_trained_weights_run_at_a_larger_input_with_anchors_at_the_same_pixel_sizes(tmp_path):
    """Fully convolutional: the same weights, more cells, the same anchor boxes in pixels; a saved
    detector loads straight at the larger input."""
    model = build_detector(TINY)
    bigger, config = at_input_size(model, TINY, 128)
    assert config.input_size == 128 and bigger.count_params() == model.count_params()
    assert len(anchor_boxes(config)) == (16 * 16 + 8 * 8 + 4 * 4 + 2 * 2) * 3
    for a, b in zip(model.get_weights(), bigger.get_weights()):
        np.testing.assert_array_equal(a, b)
    save_detector(model, TINY, tmp_path / "detector")
    loaded, loaded_config = load_detector(tmp_path / "detector", input_size=128)
    assert loaded_config == config and loaded.input_shape == (None, 128, 128, 3)


def tower_layers(model: keras.Model, tower: str) -> list[str]:
    return sorted(f"{type(layer).__name__} {layer.name}" for layer in model.layers if layer.name.startswith(tower))


def test_head_norm_normalises_the_towers_all_levels_share():
    image = np.random.default_rng(1).uniform(0, 255, (2, 64, 64, 3)).astype(np.float32)
    plain = build_detector(TINY)
    assert tower_layers(plain, "box_tower") == ["SeparableConv2D box_tower"]  # the default head, as before
    # batch: one conv shared by the levels, one BatchNormalization per level (a level's statistics are its own)
    batch = build_detector(dataclasses.replace(TINY, head_norm="batch"))
    assert tower_layers(batch, "box_tower") == [
        "BatchNormalization box_tower_bn_s16", "BatchNormalization box_tower_bn_s32",
        "BatchNormalization box_tower_bn_s64", "BatchNormalization box_tower_bn_s8",
        "ReLU box_tower_relu", "SeparableConv2D box_tower"]
    # group: conv and GroupNormalization both shared (SCRFD's head), 16 channels in gcd(16, 16) = 16 groups
    group = build_detector(dataclasses.replace(TINY, head_norm="group"))
    assert tower_layers(group, "class_tower") == [
        "GroupNormalization class_tower_gn", "ReLU class_tower_relu", "SeparableConv2D class_tower"]
    assert group.get_layer("class_tower_gn").groups == 16
    for model in (batch, group):
        outputs = model(image, training=False)
        assert tuple(outputs["box_encodings"].shape) == tuple(plain(image)["box_encodings"].shape)
        assert np.all(np.isfinite(np.asarray(outputs["class_logits"])))
        assert not model.get_layer("box_tower").use_bias  # the normalisation's offset replaces the bias


def test_head_norm_travels_in_detector_json_and_the_default_file_is_unchanged(tmp_path):
    assert "head_norm" not in TINY.to_json()  # the default detector.json keeps its bytes
    config = dataclasses.replace(TINY, head_norm="group")
    model = build_detector(config)
    save_detector(model, config, tmp_path)
    loaded, loaded_config = load_detector(tmp_path)  # plain Keras layers: no custom objects
    assert loaded_config == config
    image = np.full((1, 64, 64, 3), 90.0, np.float32)
    np.testing.assert_allclose(np.asarray(loaded(image)["class_logits"]), np.asarray(model(image)["class_logits"]),
                               atol=1e-5)
    bigger, _ = load_detector(tmp_path, input_size=128)  # rebuilt with its normalisation, weights in place
    assert tower_layers(bigger, "class_tower") == tower_layers(model, "class_tower")
