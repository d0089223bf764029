"""Running an exported detector: `TFLiteDetector(path).detect(image)` on an original-size photo
returns pixel `x, y, w, h, score` rows in that photo, best first."""

from __future__ import annotations

import json
import tracemalloc

import cv2
import keras
import numpy as np
import pytest
import tensorflow as tf

from facedet.export.tflite import export_tflite
from facedet.params.sections import ExportParams
from facedet.runtime.photo_fit import LETTERBOX_FILL, fit_to_input
from facedet.runtime.export_manifest import MANIFEST_NAME
from facedet.runtime.tflite_detector import TFLiteDetector

from standin_detector import GRID, build_standin, face_image, standin_anchors


@pytest.fixture(scope="module")
def anchor_box_model(tmp_path_factory):
    """Float export of the stand-in whose box head is zero: each detection is exactly its anchor."""
    rng = np.random.default_rng(2)
    calibration = [face_image(rng, 8, 8), face_image(rng, 40, 24)]
    path = tmp_path_factory.mktemp("runner") / "face_float.tflite"
    return export_tflite(build_standin(zero_boxes=True), standin_anchors(), calibration, path,
                         ExportParams(max_detections=20, score_threshold=0.5, nms_iou=0.4), quantize="float")


def test_detections_map_back_to_original_pixels(anchor_box_model):
    detector = TFLiteDetector(anchor_box_model, num_threads=1)
    assert detector.input_size == (64, 64)
    # A 128 x 256 photo (not square: the resize does not keep the aspect); model cells are
    # 16 px high, 32 px wide here. A bright 16 x 32 block filling grid cell (row 2, column 5).
    height, width = 128, 256
    cell_h, cell_w = height // GRID, width // GRID
    photo = face_image(np.random.default_rng(3), 2 * cell_h, 5 * cell_w, height=height, width=width,
                       square_hw=(cell_h, cell_w))
    dets = detector.detect(photo)
    assert dets.dtype == np.float32 and dets.shape[1] == 5
    assert np.all(np.diff(dets[:, 4]) <= 0)  # best first
    # Best: the small anchor (1/8 of the side) centred on that cell = exactly the cell in pixels.
    np.testing.assert_allclose(dets[0, :4], [5 * cell_w, 2 * cell_h, cell_w, cell_h], atol=1e-3)
    # Second: the large anchor (1/4 of the side) on the same centre.
    np.testing.assert_allclose(dets[1, :4], [4.5 * cell_w, 1.5 * cell_h, 2 * cell_w, 2 * cell_h], atol=1e-3)
    assert dets[0, 4] > 0.99


def test_boxes_are_clipped_to_the_photo(anchor_box_model):
    # A bright corner cell: its large anchor reaches outside the image and must be clipped.
    photo = face_image(np.random.default_rng(4), 0, 0, height=80, width=120, square_hw=(10, 15))
    dets = TFLiteDetector(anchor_box_model).detect(photo)
    assert len(dets) >= 2
    assert np.all(dets[:, 0] >= 0) and np.all(dets[:, 1] >= 0)
    assert np.all(dets[:, 0] + dets[:, 2] <= 120 + 1e-3) and np.all(dets[:, 1] + dets[:, 3] <= 80 + 1e-3)
    np.testing.assert_allclose(dets[1, :4], [0, 0, 15 * 1.5, 10 * 1.5], atol=1e-3)


def test_an_empty_photo_gives_an_empty_array(anchor_box_model):
    dark = np.zeros((50, 70, 3), np.uint8)
    dets = TFLiteDetector(anchor_box_model).detect(dark)
    assert dets.shape == (0, 5) and dets.dtype == np.float32


def test_wrong_inputs_give_clear_errors(anchor_box_model, tmp_path):
    detector = TFLiteDetector(anchor_box_model)
    with pytest.raises(ValueError, match="uint8"):
        detector.detect(np.zeros((32, 32, 3), np.float32))
    with pytest.raises(ValueError, match=r"\(H, W, 3\)"):
        detector.detect(np.zeros((32, 32), np.uint8))
    with pytest.raises(FileNotFoundError):
        TFLiteDetector(tmp_path / "missing.tflite")
    # A classifier-like model with float input is not a detector export.
    classifier = keras.Sequential([keras.Input((32, 32, 3)), keras.layers.GlobalAveragePooling2D()])
    path = tmp_path / "classifier.tflite"
    path.write_bytes(tf.lite.TFLiteConverter.from_keras_model(classifier).convert())
    with pytest.raises(ValueError, match="TFLite_Detection_PostProcess outputs"):
        TFLiteDetector(path)


def test_letterbox_keeps_the_aspect_and_maps_boxes_back_to_the_photo(anchor_box_model):
    """A model trained on native-scale crops sees photos letterboxed: a 128 x 256 photo fills the top
    half of the square input at scale 1/4, and a bright 32 x 32 block comes back where it was."""
    photo = face_image(np.random.default_rng(5), 32, 160, side=32, height=128, width=256)
    fitted, extent = fit_to_input(photo, (64, 64), "letterbox")
    assert fitted.shape == (64, 64, 3) and extent == (256.0, 256.0)
    assert np.all(fitted[32:] == LETTERBOX_FILL)  # the padding below the photo
    dets = TFLiteDetector(anchor_box_model, resize="letterbox").detect(photo)
    # The block is cell (row 1, column 5) of the 8 px grid at 1/4 scale: its small anchor, in photo px.
    np.testing.assert_allclose(dets[0, :4], [160, 32, 32, 32], atol=1e-3)


def test_the_runner_takes_the_resize_mode_from_the_export_manifest(anchor_box_model, tmp_path):
    shipped = tmp_path / anchor_box_model.name
    shipped.write_bytes(anchor_box_model.read_bytes())
    assert TFLiteDetector(shipped).resize == "stretch"  # no manifest: the plain resize
    (tmp_path / MANIFEST_NAME).write_text(json.dumps({"models": [
        {"file": shipped.name, "variant": "float", "quantize": "float", "input_size": 64, "resize": "letterbox",
         "trained_input_size": 64}]}))
    assert TFLiteDetector(shipped).resize == "letterbox"
    assert TFLiteDetector(shipped, resize="stretch").resize == "stretch"
    with pytest.raises(ValueError, match="resize must be one of"):
        TFLiteDetector(shipped, resize="squash")


@pytest.mark.parametrize("resize", ["stretch", "letterbox"])
def test_a_call_allocates_no_model_input_sized_buffer(anchor_box_model, resize):
    """The photo is fitted straight into the interpreter's input tensor: what one warm call allocates
    (numpy and OpenCV arrays, as tracemalloc sees them) stays below one model input (64 x 64 x 3)."""
    detector = TFLiteDetector(anchor_box_model, resize=resize)
    photo = face_image(np.random.default_rng(6), 100, 300, side=60, height=480, width=640)
    detector.detect(photo)
    tracemalloc.start()
    detector.detect(photo)
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    assert peak < 64 * 64 * 3, f"one call allocated {peak} bytes"


@pytest.mark.parametrize("resize", ["stretch", "letterbox"])
def test_the_three_phases_of_a_call_are_detect(anchor_box_model, resize):
    """prepare -> invoke -> read_detections (what a benchmark times apart) gives what detect gives,
    and prepare leaves in the model's input what fit_to_input makes of the photo."""
    detector = TFLiteDetector(anchor_box_model, resize=resize)
    photo = face_image(np.random.default_rng(7), 40, 90, side=30, height=120, width=200)
    fitted = detector.prepare(photo)
    model_input = detector._interpreter.get_tensor(detector._input["index"])[0]  # noqa: SLF001
    expected, extent = fit_to_input(photo, (64, 64), resize)
    np.testing.assert_array_equal(model_input, expected)
    assert fitted.photo_size == (120, 200) and fitted.extent == extent
    detector.invoke()
    staged = detector.read_detections(fitted)
    assert len(staged) and np.array_equal(staged, detector.detect(photo))


def test_threads_as_the_user_asks(anchor_box_model):
    """num_threads is the interpreter's and OpenCV's (the resize) alike."""
    for threads in (2, 1):
        TFLiteDetector(anchor_box_model, num_threads=threads)
        assert cv2.getNumThreads() == threads
