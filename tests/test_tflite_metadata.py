"""Shipping to mobile: after `write_detector_metadata`, an exported detector carries the label file
('face') and its normalisation, MediaPipe Tasks' ObjectDetector loads the file as it is and finds
the same faces as our own runner, and our runner still finds the outputs by name.

The metadata writer (tflite-support) and MediaPipe are installed by the project on Linux x86_64
(requirements-nodeps.txt, requirements.txt). A client that is not installed (no wheel for this
platform) skips its tests with the reason; one that is installed but broken (say libusb-1.0
missing) fails them.
"""

from __future__ import annotations

import importlib.util
import io
import sys

import numpy as np
import pytest
from PIL import Image

from facedet.data.synthetic import render_image
from facedet.export.metadata import (
    LABEL_FILE,
    MetadataWriterUnavailable,
    read_detector_metadata,
    write_detector_metadata,
    writer_unavailable_reason,
)
from facedet.export.tflite import export_tflite
from facedet.params.sections import ExportParams
from facedet.runtime.photo_fit import resize_bilinear
from facedet.runtime.tflite_detector import OUTPUT_NAMES, TFLiteDetector, load_interpreter

from standin_detector import SIZE, build_standin, face_image, standin_anchors

METADATA_NAME = {"detection_boxes": "location", "detection_classes": "category",
                 "detection_scores": "score", "num_detections": "number of detections"}


def require_installed(module: str, what: str) -> None:
    """Skip when `module` is not installed at all; an installed but broken one fails later, loudly."""
    if importlib.util.find_spec(module) is None:
        pytest.skip(f"{what} is not installed on this platform ({module} not found)")


@pytest.fixture(scope="module")
def exported(tmp_path_factory):
    """The stand-in detector exported to int8 and float, then given metadata: {quantize: (plain, with metadata)}."""
    require_installed("tensorflow_lite_support", "the TFLite metadata writer (tflite-support)")
    if reason := writer_unavailable_reason():
        pytest.fail(reason)
    out = tmp_path_factory.mktemp("metadata")
    rng = np.random.default_rng(1)
    calibration = [face_image(rng, *rng.integers(0, SIZE - 16, 2)) for _ in range(8)]
    files = {}
    for quantize in ("int8", "float"):
        plain = export_tflite(build_standin(), standin_anchors(), calibration, out / f"plain_{quantize}.tflite",
                              ExportParams(max_detections=10, score_threshold=0.05, nms_iou=0.4), quantize=quantize)
        shipped = write_detector_metadata(plain, ["face"], out / f"face_{quantize}.tflite", name="stand-in",
                                          version="0.1.0", description="test model")
        files[quantize] = (plain, shipped)
    return files


def synthetic_val_image() -> np.ndarray:
    """One scene of the synthetic dataset (faces, distractors), resized to the stand-in's input."""
    jpeg, rows = render_image(np.random.default_rng(11), max_faces=6, min_side=160, max_side=240)
    assert len(rows)  # a scene with faces
    image = np.asarray(Image.open(io.BytesIO(jpeg)).convert("RGB"))
    return resize_bilinear(image, (SIZE, SIZE))


@pytest.mark.parametrize("quantize", ["int8", "float"])
def test_metadata_carries_the_face_label_and_the_normalisation(exported, quantize):
    plain, shipped = exported[quantize]
    assert read_detector_metadata(plain) is None
    meta = read_detector_metadata(shipped)
    assert meta.labels == ["face"]
    assert meta.norm_mean == [127.5] and meta.norm_std == [127.5]
    assert (meta.name, meta.version, meta.description) == ("stand-in", "0.1.0", "test model")
    # Each output's metadata names what it is, whatever order the interpreter lists them in.
    interpreter, outputs = load_interpreter(shipped)
    by_index = {d["index"]: name for d, name in zip(interpreter.get_output_details(), meta.output_names)}
    assert {name: by_index[d["index"]] for name, d in outputs.items()} == METADATA_NAME
    assert LABEL_FILE == "labels.txt"


@pytest.mark.parametrize("quantize", ["int8", "float"])
def test_our_runner_finds_the_same_faces_with_metadata(exported, quantize):
    plain, shipped = exported[quantize]
    image = face_image(np.random.default_rng(5), 20, 30, height=96, width=80)
    before, after = TFLiteDetector(plain).detect(image), TFLiteDetector(shipped).detect(image)
    assert len(after) > 0
    np.testing.assert_array_equal(before, after)
    _, outputs = load_interpreter(shipped)
    assert set(outputs) == set(OUTPUT_NAMES)


@pytest.mark.parametrize("quantize", ["int8", "float"])
def test_mediapipe_object_detector_loads_the_file_and_returns_faces(exported, quantize):
    require_installed("mediapipe", "MediaPipe Tasks")
    import mediapipe as mp
    from mediapipe.tasks.python import BaseOptions, vision

    _, shipped = exported[quantize]
    image = synthetic_val_image()
    options = vision.ObjectDetectorOptions(base_options=BaseOptions(model_asset_path=str(shipped)),
                                           score_threshold=0.0, max_results=-1)
    with vision.ObjectDetector.create_from_options(options) as detector:
        result = detector.detect(mp.Image(image_format=mp.ImageFormat.SRGB, data=np.ascontiguousarray(image)))
    # Ours on the same model-sized image (no resize on either side). MediaPipe reports whole pixels,
    # moves a box's top-left corner into the image but keeps its size: compare the same way.
    boxes, scores = TFLiteDetector(shipped).detect_normalised(image)
    ymin, xmin, ymax, xmax = (boxes * SIZE).T
    ours = np.column_stack([np.maximum(xmin, 0), np.maximum(ymin, 0), xmax - xmin, ymax - ymin, scores])
    assert len(result.detections) == len(ours) > 0
    for detection in result.detections:
        assert [c.category_name for c in detection.categories] == ["face"]
        box, score = detection.bounding_box, detection.categories[0].score
        xywh = np.array([box.origin_x, box.origin_y, box.width, box.height], np.float32)
        close = np.all(np.abs(ours[:, :4] - xywh) <= 1.0, axis=1) & (np.abs(ours[:, 4] - score) <= 1e-3)
        assert close.any(), f"MediaPipe detection {xywh} {score:.4f} not among ours:\n{ours}"


def test_writing_the_metadata_again_later_gives_the_same_bytes(exported, tmp_path, monkeypatch):
    # the populator stamps the label file with the time of writing; DVC's cache needs the same bytes
    import time

    plain, shipped = exported["int8"]
    monkeypatch.setattr(time, "time", lambda: 2_000_000_000.0)  # 2033, not the fixture's moment
    again = write_detector_metadata(plain, ["face"], tmp_path / "again.tflite", name="stand-in",
                                    version="0.1.0", description="test model")
    assert again.read_bytes() == shipped.read_bytes()


def test_a_model_without_the_postprocess_op_is_refused(tmp_path):
    require_installed("tensorflow_lite_support", "the TFLite metadata writer (tflite-support)")
    import keras
    import tensorflow as tf

    classifier = keras.Sequential([keras.Input((32, 32, 3)), keras.layers.GlobalAveragePooling2D()])
    path = tmp_path / "classifier.tflite"
    path.write_bytes(tf.lite.TFLiteConverter.from_keras_model(classifier).convert())
    with pytest.raises(ValueError, match="TFLite_Detection_PostProcess"):
        write_detector_metadata(path, ["face"], tmp_path / "out.tflite")
    assert not (tmp_path / "out.tflite").exists()


def test_a_missing_writer_says_how_to_install_it(tmp_path, monkeypatch):
    for name in [m for m in sys.modules if m.startswith("tensorflow_lite_support")] or ["tensorflow_lite_support"]:
        monkeypatch.setitem(sys.modules, name, None)  # as if not installed: importing it fails
    reason = writer_unavailable_reason()
    assert "requirements-nodeps.txt" in reason and "libusb" in reason
    with pytest.raises(MetadataWriterUnavailable, match="tflite-support"):
        write_detector_metadata(tmp_path / "any.tflite", ["face"])
