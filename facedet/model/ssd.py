"""SSD face detector: Keras MobileNetV2 backbone, a light feature pyramid and shared SSD heads.

Contract (what training, export and the runtime detectors rely on): input float32 [B, S, S, 3], RGB
pixel values 0..255 (normalised to [-1, 1] by a Rescaling layer inside the model); outputs a dict of
`box_encodings` float32 [B, A, 4] (Faster R-CNN `(ty, tx, th, tw)`, scales 10/10/5/5) and
`class_logits` float32 [B, A, 1] (pre-sigmoid, class 'face'), anchors in `facedet.model.anchors` order.
Only standard Keras layers are used, so `keras.models.load_model` needs no custom objects.
"""

from __future__ import annotations

import contextlib
import math
import os
import re
import socket
from pathlib import Path

import keras
import tensorflow as tf
from keras import layers

from facedet.model.anchors import anchor_boxes
from facedet.model.backbone_weights import BackboneWeightsError, load_backbone_weights
from facedet.model.config import DetectorConfig

# MobileNetV2 layers read at each stride (the TF OD API's ssd_mobilenet_v2 taps, plus stride 8).
BACKBONE_TAPS = {8: "block_6_expand_relu", 16: "block_13_expand_relu", 32: "out_relu"}
# `stride32_tap: block_16_project`: the last bottleneck's output instead of the 1x1 conv to 1280
# channels after it (at alpha 0.35 that conv and its lateral are ~225k of ~620k weights).
STRIDE32_TAPS = {"out_relu": "out_relu", "block_16_project": "block_16_project_BN"}
CLASS_PRIOR = 0.01  # initial face probability of every anchor (bias prior init)
# Keras' MobileNetV2 uses batch-norm momentum 0.999: its moving statistics would lag ~1000 steps
# behind weights trained from scratch in a few thousand steps, so inference would see stale ones.
BATCH_NORM_MOMENTUM = 0.99


def _conv_bn_relu(x, filters: int, name: str, kernel: int = 1, strides: int = 1):
    x = layers.Conv2D(filters, kernel, strides=strides, padding="same", use_bias=False, name=f"{name}_conv")(x)
    x = layers.BatchNormalization(name=f"{name}_bn")(x)
    return layers.ReLU(6.0, name=f"{name}_relu")(x)


def _downsample(x, filters: int, name: str):
    """Extra SSD layer: 1x1 conv, 3x3 depthwise stride 2, 1x1 conv (all BN + ReLU6)."""
    x = _conv_bn_relu(x, filters, f"{name}_reduce")
    x = layers.DepthwiseConv2D(3, strides=2, padding="same", use_bias=False, name=f"{name}_dw")(x)
    x = layers.BatchNormalization(name=f"{name}_dw_bn")(x)
    x = layers.ReLU(6.0, name=f"{name}_dw_relu")(x)
    return _conv_bn_relu(x, filters, f"{name}_project")


@contextlib.contextmanager
def _socket_timeout(seconds: float | None):
    """Keras' weight download (urllib, no timeout of its own) gives up after `seconds` without data (None: never)."""
    before = socket.getdefaulttimeout()
    socket.setdefaulttimeout(seconds)
    try:
        yield
    finally:
        socket.setdefaulttimeout(before)


def build_backbone(image, config: DetectorConfig, weights: str | None = None,
                   download_timeout_s: float | None = None) -> keras.Model:
    """MobileNetV2 (no top) applied to `image`, float32 [B, S, S, 3] already scaled to [-1, 1] (the
    scaling its ImageNet weights were trained with: `keras.applications.mobilenet_v2.preprocess_input`).

    weights: None (random init), 'imagenet' (Keras downloads them; fails with one clear line offline, or
    when the server sends nothing for `download_timeout_s`: train passes `train.download_timeout_s`), or the
    path to a Keras HDF5 weights file of this MobileNetV2 (e.g. Keras'
    `mobilenet_v2_weights_tf_dim_ordering_tf_kernels_1.0_224_no_top.h5`),
    loaded layer by layer by name (`facedet.model.backbone_weights`).
    """
    if weights in (None, "none"):
        weights = None
    shape = (config.input_size, config.input_size, 3)
    if weights not in (None, "imagenet"):
        backbone = keras.applications.MobileNetV2(input_shape=shape, alpha=config.alpha, include_top=False,
                                                  weights=None, input_tensor=image)
        load_backbone_weights(backbone, weights)
        return backbone
    try:
        with _socket_timeout(download_timeout_s):
            return keras.applications.MobileNetV2(
                input_shape=shape, alpha=config.alpha, include_top=False, weights=weights, input_tensor=image
            )
    except Exception as err:  # download errors
        if download_timeout_s is not None and (isinstance(err, TimeoutError) or "timed out" in str(err)):
            raise BackboneWeightsError(
                f"backbone_weights=imagenet: the download sent nothing for {download_timeout_s:g} s "
                "(train.download_timeout_s; offline or a stalled proxy?): use 'none' or a local weights file path"
            ) from None
        raise BackboneWeightsError(
            "backbone_weights=imagenet needs to download MobileNetV2 weights (offline?): "
            f"use 'none' or a local weights file path ({type(err).__name__}: {err})"
        ) from None


def backbone_block(layer_name: str) -> int | None:
    """MobileNetV2's block of a backbone layer: 0 for the stem (`Conv1`, `bn_Conv1`, `expanded_conv_*`),
    i for `block_<i>_*`, 17 for the last 1x1 conv (`Conv_1`, `Conv_1_bn`, `out_relu`); None for a layer
    of ours (pyramid, heads) or without a block."""
    if layer_name in ("Conv1", "bn_Conv1", "Conv1_relu") or layer_name.startswith("expanded_conv_"):
        return 0
    if match := re.match(r"block_(\d+)_", layer_name):
        return int(match.group(1))
    return 17 if layer_name in ("Conv_1", "Conv_1_bn", "out_relu") else None


def build_detector(config: DetectorConfig, backbone_weights: str | None = None, download_timeout_s: float | None = None,
                   frozen_backbone_batch_norm: bool = False, frozen_backbone_blocks: int = 0) -> keras.Model:
    """The SSD detector for `config` (see the module docstring for the input/output contract).

    frozen_backbone_batch_norm: the backbone's BatchNormalization layers are not trainable, so they run in
    inference mode with the statistics, gamma and beta they were loaded with (detectron2's FrozenBN).
    frozen_backbone_blocks: the backbone's stem and blocks below this index (`backbone_block`) are not
    trainable at all (detectron2's FREEZE_AT): no gradients flow through them, which saves their backward pass."""
    size = config.input_size
    image = keras.Input((size, size, 3), name="image", dtype="float32")
    normalised = layers.Rescaling(1.0 / 127.5, offset=-1.0, name="normalise")(image)
    backbone = build_backbone(normalised, config, backbone_weights, download_timeout_s)
    for layer in backbone.layers:
        block = backbone_block(layer.name)
        if (block is not None and block < frozen_backbone_blocks) or (
                frozen_backbone_batch_norm and isinstance(layer, layers.BatchNormalization)):
            layer.trainable = False
    channels = config.head_channels

    # Pyramid: backbone taps up to stride 32, extra downsampling layers beyond.
    tap_strides = [s for s in config.feature_strides if s <= 32]
    taps = {**BACKBONE_TAPS, 32: STRIDE32_TAPS[config.stride32_tap]}
    features = {s: _conv_bn_relu(backbone.get_layer(taps[s]).output, channels, f"lateral_s{s}")
                for s in tap_strides}
    if config.fpn:
        for fine, coarse in zip(tap_strides[-2::-1], tap_strides[:0:-1]):
            up = layers.UpSampling2D(coarse // fine, interpolation="nearest", name=f"up_s{coarse}_to_s{fine}")(
                features[coarse])
            merged = layers.Add(name=f"merge_s{fine}")([features[fine], up])
            features[fine] = _conv_bn_relu(merged, channels, f"smooth_s{fine}")
    previous = backbone.get_layer(taps[32]).output
    for stride in (s for s in config.feature_strides if s > 32):
        previous = _downsample(previous, channels, f"extra_s{stride}")
        features[stride] = previous

    # Heads shared by all levels: separable 3x3 conv, then 1x1 predictors.
    k = config.anchors_per_cell
    box_tower = _head_tower(config, "box_tower")
    box_out = layers.Conv2D(k * 4, 1, name="box_predictor")
    class_tower = _head_tower(config, "class_tower")
    prior = keras.initializers.Constant(-math.log((1 - CLASS_PRIOR) / CLASS_PRIOR))
    class_out = layers.Conv2D(k, 1, bias_initializer=prior, name="class_predictor")
    boxes, logits = [], []
    for stride in config.feature_strides:
        f = features[stride]
        boxes.append(layers.Reshape((-1, 4), name=f"boxes_s{stride}")(box_out(box_tower(f, stride))))
        logits.append(layers.Reshape((-1, 1), name=f"logits_s{stride}")(class_out(class_tower(f, stride))))
    box_encodings = layers.Concatenate(axis=1, name="box_encodings")(boxes)
    class_logits = layers.Concatenate(axis=1, name="class_logits")(logits)
    model = keras.Model(image, {"box_encodings": box_encodings, "class_logits": class_logits},
                        name=f"ssd_mobilenet_v2_{size}")
    for layer in model.layers:
        if isinstance(layer, layers.BatchNormalization):
            layer.momentum = BATCH_NORM_MOMENTUM
    expected = len(anchor_boxes(config))
    if model.output["box_encodings"].shape[1] != expected:
        raise AssertionError(f"heads emit {model.output['box_encodings'].shape[1]} boxes, anchors: {expected}")
    return model


def _head_tower(config: DetectorConfig, name: str):
    """The tower every level's features pass through before a predictor: `tower(features, stride)`.

    head_norm 'none': separable 3x3 conv with ReLU. 'batch': the shared conv, then one BatchNormalization
    per level (`<name>_bn_s<stride>`) and ReLU. 'group': the shared conv, one GroupNormalization shared by
    all levels (gcd(head_channels, 16) groups) and ReLU.
    """
    if config.head_norm == "none":
        conv = layers.SeparableConv2D(config.head_channels, 3, padding="same", activation="relu", name=name)
        return lambda features, stride: conv(features)
    conv = layers.SeparableConv2D(config.head_channels, 3, padding="same", use_bias=False, name=name)
    relu = layers.ReLU(name=f"{name}_relu")
    if config.head_norm == "group":
        norm = layers.GroupNormalization(math.gcd(config.head_channels, 16), name=f"{name}_gn")
        return lambda features, stride: relu(norm(conv(features)))
    return lambda features, stride: relu(layers.BatchNormalization(name=f"{name}_bn_s{stride}")(conv(features)))


def at_input_size(model: keras.Model, config: DetectorConfig, input_size: int) -> tuple[keras.Model, DetectorConfig]:
    """The trained `model` rebuilt at a square `input_size` px input with the same weights (every
    layer is convolutional) and its anchors at the same pixel sizes (`DetectorConfig.at_input_size`)."""
    if input_size == config.input_size:
        return model, config
    bigger = config.at_input_size(input_size)
    rebuilt = build_detector(bigger)
    rebuilt.set_weights(model.get_weights())
    return rebuilt, bigger


def load_detector(model_dir: str | os.PathLike, input_size: int | None = None) -> tuple[keras.Model, DetectorConfig]:
    """Load `model.keras` + `detector.json` written by training; with `input_size`, rebuilt at that
    square input (see `at_input_size`)."""
    model_dir = Path(model_dir)
    model = keras.models.load_model(model_dir / "model.keras", compile=False)
    config = DetectorConfig.from_json(model_dir / "detector.json")
    return at_input_size(model, config, input_size) if input_size else (model, config)


def resize_for_model(image: tf.Tensor, input_size: int) -> tf.Tensor:
    """(H, W, 3) or (B, H, W, 3) image -> float32 [.., S, S, 3] 0..255: the plain bilinear resize
    (aspect not kept, like TF OD API's fixed_shape_resizer) used for training and inference alike."""
    return tf.image.resize(tf.cast(image, tf.float32), [input_size, input_size], method="bilinear")
