"""Box conventions and the Faster R-CNN box coder (scales 10/10/5/5), as the model, the loss and the
TFLite post-process op use them."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import tensorflow as tf

from facedet.model.boxes import (
    centre_to_corners,
    clip_pixel_xyxy,
    corners_to_centre,
    corners_to_pixel_xyxy,
    decode_boxes,
    encode_boxes,
    pairwise_iou,
    pixel_xywh_to_corners,
    pixel_xywh_to_xyxy,
    pixel_xyxy_to_xywh,
)
from facedet.runtime.photo_fit import corners_to_photo_xywh

REPO = Path(__file__).resolve().parents[1]
BOXES = np.array([[0.1, 0.2, 0.5, 0.4], [0.0, 0.0, 1.0, 1.0], [0.3, 0.3, 0.35, 0.42]], np.float32)


def test_centre_form_is_ycenter_xcenter_height_width():
    np.testing.assert_allclose(corners_to_centre(BOXES[:1]), [[0.3, 0.3, 0.4, 0.2]], atol=1e-7)
    np.testing.assert_allclose(centre_to_corners(corners_to_centre(BOXES)), BOXES, atol=1e-7)


def test_pixel_xywh_maps_to_corners_and_back_to_the_original_image():
    corners = pixel_xywh_to_corners(np.array([[60, 20, 60, 80]], np.float32), 200, 300)
    np.testing.assert_allclose(corners, BOXES[:1], atol=1e-7)
    # the way back is the detectors' one helper (facedet.runtime.photo_fit)
    xywh = corners_to_photo_xywh(BOXES[:1], np.array([0.9]), photo_size=(200, 300), extent=(200.0, 300.0))
    np.testing.assert_allclose(xywh, [[60, 20, 60, 80, 0.9]], atol=1e-4)


def test_iou_of_known_pairs():
    a = np.array([[0, 0, 2, 2], [0, 0, 1, 1]], np.float32)
    b = np.array([[1, 1, 3, 3], [0, 0, 2, 2], [5, 5, 5, 6]], np.float32)
    np.testing.assert_allclose(pairwise_iou(a, b), [[1 / 7, 1.0, 0.0], [0.0, 0.25, 0.0]], atol=1e-6)
    np.testing.assert_allclose(pairwise_iou(tf.constant(a), tf.constant(b)).numpy(), pairwise_iou(a, b), atol=1e-6)


def test_encoding_uses_the_10_10_5_5_scales():
    anchor = np.array([[0.4, 0.4, 0.6, 0.6]], np.float32)  # centre 0.5, side 0.2
    box = np.array([[0.42, 0.38, 0.62, 0.78]], np.float32)  # centre (0.52, 0.58), h 0.2, w 0.4
    np.testing.assert_allclose(encode_boxes(box, anchor), [[1.0, 4.0, 0.0, 5 * np.log(2.0)]], atol=1e-5)


def test_encode_then_decode_gives_the_boxes_back_in_numpy_and_tf():
    anchors = np.array([[0.0, 0.0, 0.2, 0.2], [0.25, 0.25, 0.75, 0.75], [0.3, 0.3, 0.4, 0.45]], np.float32)
    codes = encode_boxes(BOXES, anchors)
    np.testing.assert_allclose(decode_boxes(codes, anchors), BOXES, atol=1e-6)
    tf_codes = encode_boxes(tf.constant(BOXES), tf.constant(anchors))
    np.testing.assert_allclose(tf_codes.numpy(), codes, atol=1e-5)
    np.testing.assert_allclose(decode_boxes(tf_codes, tf.constant(anchors)).numpy(), BOXES, atol=1e-6)


def test_pixel_corners_convert_both_ways_and_clip_to_the_image():
    xywh = np.array([[-10, 20, 60, 80], [290, 190, 30, 30]], np.float32)
    xyxy = pixel_xywh_to_xyxy(xywh)
    np.testing.assert_array_equal(xyxy, [[-10, 20, 50, 100], [290, 190, 320, 220]])
    np.testing.assert_array_equal(pixel_xyxy_to_xywh(xyxy), xywh)
    np.testing.assert_array_equal(clip_pixel_xyxy(xyxy, 200, 300), [[0, 20, 50, 100], [290, 190, 300, 200]])
    np.testing.assert_allclose(corners_to_pixel_xyxy(BOXES[:1], 200, 300), [[60, 20, 120, 100]], atol=1e-4)
    as_tensor = clip_pixel_xyxy(tf.constant(xyxy), 200.0, 300.0)  # the same functions on TF tensors
    np.testing.assert_array_equal(as_tensor.numpy(), clip_pixel_xyxy(xyxy, 200, 300))


def test_the_numpy_runtime_converts_boxes_without_tensorflow():
    """A phone-side or numpy-only user imports the box conventions, the runner's photo mapping and the
    export manifest without starting TensorFlow."""
    code = ("import sys\nimport facedet.model.boxes, facedet.runtime.photo_fit, facedet.runtime.export_manifest\n"
            "assert 'tensorflow' not in sys.modules, 'tensorflow imported'\n")
    subprocess.run([sys.executable, "-c", code], check=True, cwd=REPO, env=dict(os.environ, PYTHONPATH=str(REPO)))
