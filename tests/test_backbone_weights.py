"""A pretrained start: a Keras HDF5 weights file of the backbone lands in the layers it names, in the
input scaling it was trained with; a file of another width, another architecture or a truncated one stops
with one line naming the file; frozen blocks and frozen batch norm stay as loaded; the weights' sha256
goes into the trained model's lineage."""

from __future__ import annotations

import json
import os
from pathlib import Path

import h5py
import keras
import numpy as np
import pytest

from facedet.model.backbone_weights import BackboneWeightsError, backbone_weights_record
from facedet.model.config import DetectorConfig, load_preset
from facedet.model.ssd import backbone_block, build_detector
from facedet.process.hashing import sha256_of
from facedet.train.save import save_detector

SMALL = DetectorConfig(input_size=96, alpha=0.35, feature_strides=(8, 16, 32), head_channels=16)
SHARED_WEIGHTS = (Path(__file__).resolve().parents[2] / "shared" / "weights"
                  / "mobilenet_v2_weights_tf_dim_ordering_tf_kernels_1.0_224_no_top.h5")


def write_keras_weights_file(model: keras.Model, path: Path, reverse: bool = False) -> None:
    """The layout of Keras' downloaded `*_no_top.h5`: root attribute `layer_names`, one group per layer
    with `weight_names` ('<layer>/<variable>') and one dataset each. `reverse` stores the layers in the
    opposite order, so only a load by name puts them back."""
    weighted = [layer for layer in model.layers if layer.weights]
    with h5py.File(path, "w") as file:
        order = weighted[::-1] if reverse else weighted
        file.attrs["layer_names"] = [layer.name.encode() for layer in order]
        for layer in order:
            group = file.create_group(layer.name)
            names = [f"{layer.name}/{v.name}" for v in layer.weights]
            group.attrs["weight_names"] = [n.encode() for n in names]
            for name, variable in zip(names, layer.weights):
                group.create_dataset(name, data=variable.numpy())


def random_mobilenet(alpha: float, seed: int) -> keras.Model:
    keras.utils.set_random_seed(seed)
    model = keras.applications.MobileNetV2(input_shape=(96, 96, 3), alpha=alpha, include_top=False, weights=None)
    for layer in model.layers:  # batch-norm statistics too: they must land as well
        if isinstance(layer, keras.layers.BatchNormalization):
            rng = np.random.default_rng(seed)
            layer.set_weights([rng.uniform(0.5, 1.5, w.shape).astype(np.float32) for w in layer.get_weights()])
    return model


def test_a_weights_file_lands_in_the_layers_it_names(tmp_path):
    source = random_mobilenet(0.35, seed=1)
    write_keras_weights_file(source, tmp_path / "backbone.h5", reverse=True)
    detector = build_detector(SMALL, str(tmp_path / "backbone.h5"))
    compared = 0
    for layer in source.layers:
        if layer.weights and layer.name in {x.name for x in detector.layers}:
            for want, got in zip(layer.get_weights(), detector.get_layer(layer.name).get_weights()):
                np.testing.assert_array_equal(got, want, err_msg=layer.name)
            compared += 1
    assert compared >= 100  # every conv and batch norm of the backbone the detector uses


def test_photos_are_scaled_as_the_imagenet_weights_expect():
    detector = build_detector(SMALL)
    pixels = np.array([0.0, 64.0, 127.5, 255.0], np.float32)
    scaled = detector.get_layer("normalise")(pixels)
    np.testing.assert_allclose(np.asarray(scaled), keras.applications.mobilenet_v2.preprocess_input(pixels.copy()),
                               atol=1e-6)


def test_weights_of_another_width_stop_with_one_line_naming_the_file_and_the_layer(tmp_path):
    write_keras_weights_file(random_mobilenet(0.5, seed=2), tmp_path / "alpha_0.5.h5")
    with pytest.raises(BackboneWeightsError) as error:
        build_detector(SMALL, str(tmp_path / "alpha_0.5.h5"))
    message = str(error.value)
    # alpha 0.35 and 0.5 share the stem's widths; the first block that differs is named
    assert "alpha_0.5.h5: layer 'block_1_project' kernel is (1, 1, 48, 16) in the file" in message
    assert "the model needs (1, 1, 48, 8)" in message and "another width" in message
    assert "\n" not in message


def test_weights_of_another_architecture_stop_with_one_line(tmp_path):
    keras.utils.set_random_seed(3)
    other = keras.applications.MobileNet(input_shape=(96, 96, 3), alpha=0.25, include_top=False, weights=None)
    write_keras_weights_file(other, tmp_path / "mobilenet_v1.h5")
    with pytest.raises(BackboneWeightsError) as error:
        build_detector(SMALL, str(tmp_path / "mobilenet_v1.h5"))
    assert "mobilenet_v1.h5: no layer 'Conv1'" in str(error.value) and "\n" not in str(error.value)


def test_a_truncated_weights_file_stops_with_one_line(tmp_path):
    write_keras_weights_file(random_mobilenet(0.35, seed=4), tmp_path / "backbone.h5")
    data = (tmp_path / "backbone.h5").read_bytes()
    (tmp_path / "backbone.h5").write_bytes(data[: len(data) // 2])
    with pytest.raises(BackboneWeightsError) as error:
        build_detector(SMALL, str(tmp_path / "backbone.h5"))
    assert "backbone.h5: cannot be read" in str(error.value) and "\n" not in str(error.value)


def test_frozen_blocks_and_frozen_batch_norm_are_left_out_of_training():
    detector = build_detector(SMALL, frozen_backbone_blocks=6, frozen_backbone_batch_norm=True)
    by_name = {layer.name: layer for layer in detector.layers}
    assert not by_name["Conv1"].trainable and not by_name["block_5_project"].trainable
    assert by_name["block_6_expand"].trainable and not by_name["block_6_expand_BN"].trainable
    assert by_name["lateral_s8_bn"].trainable  # ours: trained as before
    assert [backbone_block(n) for n in ("bn_Conv1", "expanded_conv_project", "block_12_add", "lateral_s8_bn")] \
        == [0, 0, 12, None]
    plain = build_detector(SMALL)
    assert len(detector.trainable_weights) < len(plain.trainable_weights)


def test_the_trained_model_records_which_weights_it_started_from(tmp_path):
    write_keras_weights_file(random_mobilenet(0.35, seed=5), tmp_path / "backbone.h5")
    record = backbone_weights_record(str(tmp_path / "backbone.h5"))
    save_detector(build_detector(SMALL), SMALL, tmp_path / "detector", record)
    saved = json.loads((tmp_path / "detector" / "backbone.json").read_text())
    assert saved == {"backbone_weights": str(tmp_path / "backbone.h5"), "sha256": sha256_of(tmp_path / "backbone.h5")}
    assert backbone_weights_record("none") == {"backbone_weights": "none", "sha256": None}


@pytest.mark.skipif(not SHARED_WEIGHTS.is_file(), reason=f"{SHARED_WEIGHTS} absent (../shared is not beside the checkout)")
def test_keras_imagenet_file_loads_into_the_depth_1_preset_as_keras_loads_it():
    config = load_preset("ssd_mobilenet_v2_1.0_native_256")
    detector = build_detector(config, os.fspath(SHARED_WEIGHTS))
    reference = keras.applications.MobileNetV2(input_shape=(256, 256, 3), alpha=1.0, include_top=False,
                                               weights=os.fspath(SHARED_WEIGHTS))
    names = {layer.name for layer in detector.layers}
    compared = 0
    for layer in reference.layers:
        if layer.weights and layer.name in names:
            for want, got in zip(layer.get_weights(), detector.get_layer(layer.name).get_weights()):
                np.testing.assert_array_equal(got, want, err_msg=layer.name)
            compared += 1
    assert compared == 102  # every weighted layer up to block_16_project_BN (the stride-32 tap)
