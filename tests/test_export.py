"""Exporting a detector to TFLite: a user calls `export_tflite` and gets a file that ends in
TFLite_Detection_PostProcess, takes uint8 pixels, and finds what the Keras model finds."""

from __future__ import annotations

import dataclasses

import keras
import numpy as np
import pytest
import tensorflow as tf

from facedet.export.tflite import POSTPROCESS_OP, export_tflite, representative_images, tflite_ops
from facedet.model.anchors import anchor_boxes
from facedet.model.config import DetectorConfig
from facedet.model.ssd import build_detector
from facedet.params.sections import ExportParams
from facedet.runtime.photo_fit import resize_bilinear
from facedet.runtime.tflite_detector import OUTPUT_NAMES, load_interpreter

from standin_detector import SIZE, build_standin, face_image, standin_anchors

MAX_DETECTIONS, SCORE_THRESHOLD, IOU = 10, 0.05, 0.45  # none the ExportParams default: the file must follow them
PARAMS = ExportParams(max_detections=MAX_DETECTIONS, score_threshold=SCORE_THRESHOLD, nms_iou=IOU)


def calibration_images(n: int = 12) -> list[np.ndarray]:
    rng = np.random.default_rng(1)
    return [face_image(rng, *rng.integers(0, SIZE - 16, 2)) for _ in range(n)]


@pytest.fixture(scope="module")
def model():
    return build_standin()


@pytest.fixture(scope="module")
def exported(model, tmp_path_factory):
    out = tmp_path_factory.mktemp("export")
    anchors, images = standin_anchors(), calibration_images()
    return {
        q: export_tflite(model, anchors, images, out / f"face_{q}.tflite", PARAMS, quantize=q)
        for q in ("float", "int8")
    }


def reference_detections(model, image: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Independent numpy decode (Faster R-CNN 10/10/5/5) + greedy NMS of the Keras outputs."""
    out = model(image[None].astype(np.float32), training=False)
    enc = np.asarray(out["box_encodings"])[0].astype(np.float64)
    scores = 1 / (1 + np.exp(-np.asarray(out["class_logits"])[0, :, 0].astype(np.float64)))
    a = standin_anchors().astype(np.float64)
    ha, wa = a[:, 2] - a[:, 0], a[:, 3] - a[:, 1]
    yc, xc = enc[:, 0] / 10 * ha + (a[:, 0] + a[:, 2]) / 2, enc[:, 1] / 10 * wa + (a[:, 1] + a[:, 3]) / 2
    h, w = np.exp(enc[:, 2] / 5) * ha, np.exp(enc[:, 3] / 5) * wa
    boxes = np.stack([yc - h / 2, xc - w / 2, yc + h / 2, xc + w / 2], 1)
    order = [i for i in np.argsort(-scores, kind="stable") if scores[i] >= SCORE_THRESHOLD]
    keep: list[int] = []
    for i in order:
        if len(keep) == MAX_DETECTIONS:
            break
        if all(iou(boxes[i], boxes[j]) <= IOU for j in keep):
            keep.append(i)
    return boxes[keep], scores[keep]


def iou(a: np.ndarray, b: np.ndarray) -> float:
    inter = max(0.0, min(a[2], b[2]) - max(a[0], b[0])) * max(0.0, min(a[3], b[3]) - max(a[1], b[1]))
    union = (a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter
    return inter / union if union > 0 else 0.0


def postprocess_op(path) -> tuple[dict, np.ndarray]:
    """The file's TFLite_Detection_PostProcess op as the interpreter reads it: its custom options (a
    flexbuffer map of the attributes it runs with) and its anchors (its third input, a constant float32
    (A, 4) `(ycenter, xcenter, h, w)`)."""
    from flatbuffers import flexbuffers
    from tensorflow.lite.python import schema_py_generated as schema

    model = schema.ModelT.InitFromPackedBuf(path.read_bytes(), 0)
    graph = model.subgraphs[0]
    [op] = [op for op in graph.operators
            if model.operatorCodes[op.opcodeIndex].customCode == b"TFLite_Detection_PostProcess"]
    anchors = graph.tensors[op.inputs[2]]
    assert anchors.type == schema.TensorType.FLOAT32
    return (flexbuffers.Loads(bytes(op.customOptions)),
            np.frombuffer(bytes(model.buffers[anchors.buffer].data), np.float32).reshape(-1, 4))


def run_tflite(path, image):
    interpreter, outputs = load_interpreter(path)
    interpreter.set_tensor(interpreter.get_input_details()[0]["index"], image[None])
    interpreter.invoke()
    res = {name: interpreter.get_tensor(d["index"]) for name, d in outputs.items()}
    n = int(res["num_detections"][0])
    return res, res["detection_boxes"][0, :n], res["detection_scores"][0, :n]


def test_int8_file_takes_uint8_pixels_and_ends_in_the_postprocess_op(exported):
    interpreter, outputs = load_interpreter(exported["int8"])
    (inp,) = interpreter.get_input_details()
    assert inp["dtype"] == np.uint8 and list(inp["shape"]) == [1, SIZE, SIZE, 3]
    ops = tflite_ops(exported["int8"].read_bytes())
    assert ops[-1]["op_name"] == POSTPROCESS_OP
    details = interpreter.get_tensor_details()
    assert any(op["op_name"] == "CONV_2D" and details[op["inputs"][0]]["dtype"] == np.int8 for op in ops)
    # Four float outputs, found by name: boxes [1,N,4], classes [1,N], scores [1,N], count [1].
    assert set(outputs) == set(OUTPUT_NAMES)
    shapes = {name: list(d["shape"]) for name, d in outputs.items()}
    assert shapes == {"detection_boxes": [1, MAX_DETECTIONS, 4], "detection_classes": [1, MAX_DETECTIONS],
                      "detection_scores": [1, MAX_DETECTIONS], "num_detections": [1]}
    assert all(d["dtype"] == np.float32 for d in outputs.values())


def test_float_export_matches_numpy_decode_and_nms(model, exported):
    image = face_image(np.random.default_rng(5), 20, 30)
    res, boxes, scores = run_tflite(exported["float"], image)
    ref_boxes, ref_scores = reference_detections(model, image)
    assert len(scores) == len(ref_scores) > 0
    np.testing.assert_allclose(scores, ref_scores, atol=1e-5)
    np.testing.assert_allclose(boxes, ref_boxes, atol=1e-4)
    assert np.all(res["detection_classes"][0, : len(scores)] == 0)  # 0-based: face = 0


def test_regular_nms_gives_the_same_single_class_detections(model, exported, tmp_path):
    regular = export_tflite(model, standin_anchors(), calibration_images(2), tmp_path / "regular.tflite",
                            dataclasses.replace(PARAMS, use_regular_nms=True), quantize="float")
    image = face_image(np.random.default_rng(7), 4, 44)
    _, boxes, scores = run_tflite(regular, image)
    _, fast_boxes, fast_scores = run_tflite(exported["float"], image)
    np.testing.assert_allclose(scores, fast_scores, atol=1e-6)
    np.testing.assert_allclose(boxes, fast_boxes, atol=1e-6)
    assert postprocess_op(regular)[0]["use_regular_nms"]  # as asked, read back from the file


def test_regular_nms_keeps_as_many_faces_as_max_detections_says_past_the_kernels_100(tmp_path):
    # Zero box encodings: the detections are the 128 anchors themselves, none overlapping another
    # by IoU 0.45, so all 128 survive NMS; the kernel's default would keep 100 per class.
    params = dataclasses.replace(PARAMS, max_detections=128, score_threshold=1e-6, use_regular_nms=True)
    regular = export_tflite(build_standin(zero_boxes=True), standin_anchors(), calibration_images(2),
                            tmp_path / "regular.tflite", params, quantize="float")
    _, boxes, scores = run_tflite(regular, np.full((SIZE, SIZE, 3), 128, np.uint8))
    assert len(scores) == 128
    assert postprocess_op(regular)[0]["detections_per_class"] == 128


def test_int8_export_finds_the_same_faces_loosely(model, exported):
    image = face_image(np.random.default_rng(6), 36, 8)
    res, boxes, scores = run_tflite(exported["int8"], image)
    ref_boxes, ref_scores = reference_detections(model, image)
    for name in OUTPUT_NAMES:
        assert np.all(np.isfinite(res[name]))
    assert abs(scores[0] - ref_scores[0]) < 0.05
    assert iou(boxes[0], ref_boxes[0]) > 0.8
    confident = ref_scores > 0.5
    for ref in ref_boxes[confident]:
        assert max(iou(ref, b) for b in boxes) > 0.7
    assert np.all(res["detection_classes"][0, : len(scores)] == 0)


def test_int8_scores_near_one_keep_apart_instead_of_tying_at_255_of_256(model, exported):
    # The face's best anchors score ~0.9997 and ~0.999 in float; an int8 sigmoid would tie them at
    # 255/256 (and every other confident face with them), flattening the top of the PR curve.
    image = face_image(np.random.default_rng(6), 36, 8)
    _, _, scores = run_tflite(exported["int8"], image)
    _, ref_scores = reference_detections(model, image)
    assert ref_scores[1] > 255 / 256
    assert scores[0] > scores[1] > 255 / 256
    np.testing.assert_allclose(scores[:2], ref_scores[:2], atol=5e-4)
    ops = tflite_ops(exported["int8"].read_bytes())
    [sigmoid] = [op for op in ops if op["op_name"] == "LOGISTIC"]
    assert ops[-1]["op_name"] == POSTPROCESS_OP and ops[-1]["inputs"][1] == sigmoid["outputs"][0]


def test_the_postprocess_op_in_the_file_runs_with_the_export_params_the_box_coder_and_the_anchors(exported):
    """Read back from each exported file, in TF OD API's attribute names: the params asked for, one class,
    the training box coder's scales (10, 10, 5, 5), and the anchors given as corners, now centre and size."""
    corners = standin_anchors().astype(np.float64)
    centres = np.column_stack([(corners[:, 0] + corners[:, 2]) / 2, (corners[:, 1] + corners[:, 3]) / 2,
                               corners[:, 2] - corners[:, 0], corners[:, 3] - corners[:, 1]])
    expected = {"max_detections": MAX_DETECTIONS, "detections_per_class": MAX_DETECTIONS,
                "max_classes_per_detection": 1, "num_classes": 1,
                "nms_score_threshold": pytest.approx(SCORE_THRESHOLD), "nms_iou_threshold": pytest.approx(IOU),
                "use_regular_nms": False, "y_scale": 10.0, "x_scale": 10.0, "h_scale": 5.0, "w_scale": 5.0}
    for quantize, path in exported.items():
        options, anchors = postprocess_op(path)
        assert options == expected, quantize
        np.testing.assert_allclose(anchors, centres, atol=1e-7, err_msg=quantize)


def test_bad_requests_fail_before_converting(model, tmp_path):
    images = calibration_images(2)
    with pytest.raises(ValueError, match="anchors"):
        export_tflite(model, standin_anchors()[:100], images, tmp_path / "x.tflite", PARAMS, quantize="float")
    with pytest.raises(ValueError, match="quantize"):
        export_tflite(model, standin_anchors(), images, tmp_path / "x.tflite", PARAMS, quantize="int16")
    with pytest.raises(ValueError, match="representative"):
        export_tflite(model, standin_anchors(), [], tmp_path / "x.tflite", PARAMS, quantize="int8")
    with pytest.raises(ValueError, match="uint8"):
        export_tflite(model, standin_anchors(), [np.zeros((32, 32, 3), np.uint8)], tmp_path / "x.tflite", PARAMS)
    assert not list(tmp_path.iterdir())  # nothing half-written


def _example(colour: int, height: int, width: int) -> bytes:
    jpeg = tf.io.encode_jpeg(np.full((height, width, 3), colour, np.uint8)).numpy()
    feature = {
        "image/encoded": tf.train.Feature(bytes_list=tf.train.BytesList(value=[jpeg])),
        "image/height": tf.train.Feature(int64_list=tf.train.Int64List(value=[height])),
        "image/width": tf.train.Feature(int64_list=tf.train.Int64List(value=[width])),
    }
    return tf.train.Example(features=tf.train.Features(feature=feature)).SerializeToString()


def test_representative_images_spread_evenly_over_the_records_in_shard_order(tmp_path):
    colours = [[10, 20, 30], [40, 50, 60]]  # shard 0, shard 1
    paths = []
    for shard, shard_colours in enumerate(colours):
        path = tmp_path / f"train.record-{shard:05d}-of-00002"
        with tf.io.TFRecordWriter(str(path)) as writer:
            for c in shard_colours:
                writer.write(_example(c, 48, 80))
        paths.append(path)
    images = list(representative_images(reversed(paths), count=3, input_size=32, resize="stretch"))
    assert [im.shape for im in images] == [(32, 32, 3)] * 3 and all(im.dtype == np.uint8 for im in images)
    assert [int(round(im.mean())) for im in images] == pytest.approx([10, 30, 50], abs=2)  # every 2nd of 6
    again = list(representative_images(paths, count=3, input_size=32, resize="stretch"))
    assert all(np.array_equal(a, b) for a, b in zip(images, again))


def test_resize_matches_tf_image_resize():
    """The runtime's resize (OpenCV, fixed-point weights) gives the float resize training uses to
    within one grey level, about one value in eight off by one: below the int8 model's input step
    (2/255 after the [-1, 1] normalisation, i.e. one grey level)."""
    image = np.random.default_rng(0).integers(0, 256, (37, 91, 3)).astype(np.uint8)
    for size in [(64, 64), (20, 200), (16, 40)]:
        ours = resize_bilinear(image, size).astype(int)
        theirs = np.rint(tf.image.resize(image, size).numpy()).astype(int)
        assert np.abs(ours - theirs).max() <= 1 and np.abs(ours - theirs).mean() < 0.15


def test_a_model_that_keeps_no_face_on_the_probes_exports(tmp_path):
    """When the post-process op keeps nothing, the rows of its outputs are left unwritten (whatever
    bytes the arena held, NaN among them): the export checks only the rows the op kept."""
    config = DetectorConfig(input_size=128, alpha=0.35, feature_strides=(8, 16, 32, 64), min_scale=0.04,
                            max_scale=0.75, aspect_ratios=(0.8,), interpolated_scale=False, head_channels=64)
    keras.utils.set_random_seed(0)
    model = build_detector(config)
    head = model.get_layer("class_predictor")
    kernel, bias = head.get_weights()
    head.set_weights([kernel * 1e-3, np.full_like(bias, -5.0)])  # every score ~0.007 < the 0.02 threshold
    rng = np.random.default_rng(0)
    calibration = [rng.integers(0, 256, (128, 128, 3)).astype(np.uint8) for _ in range(2)]
    path = export_tflite(model, anchor_boxes(config), calibration, tmp_path / "none.tflite", ExportParams())
    assert path.is_file()


HEAD_NORM_DETECTOR = DetectorConfig(input_size=64, alpha=0.35, feature_strides=(8, 16, 32, 64), min_scale=0.1,
                                    max_scale=0.7, aspect_ratios=(1.0,), interpolated_scale=True, head_channels=16)


def test_int8_export_refuses_a_group_normalised_head_with_one_line(tmp_path):
    """GroupNorm does not quantize cleanly (measured: the converter leaves 14 of its ops in float
    between quantize/dequantize pairs), so an int8 file of `head_norm: group` is refused up front."""
    model = build_detector(dataclasses.replace(HEAD_NORM_DETECTOR, head_norm="group"))
    images = [np.full((64, 64, 3), 128, np.uint8)]
    with pytest.raises(ValueError, match=r"int8 export: GroupNormalization \(class_tower_gn, box_tower_gn|"
                                         r"int8 export: GroupNormalization \(box_tower_gn, class_tower_gn") as error:
        export_tflite(model, anchor_boxes(HEAD_NORM_DETECTOR), images, tmp_path / "face.tflite", PARAMS)
    assert "\n" not in str(error.value) and not (tmp_path / "face.tflite").exists()


@pytest.mark.slow
def test_a_batch_normalised_head_exports_to_int8_with_its_norm_folded_away(tmp_path):
    config = dataclasses.replace(HEAD_NORM_DETECTOR, head_norm="batch")
    rng = np.random.default_rng(0)
    images = [rng.integers(0, 255, (64, 64, 3), dtype=np.uint8) for _ in range(4)]
    paths = {norm: export_tflite(build_detector(dataclasses.replace(config, head_norm=norm)), anchor_boxes(config),
                                 images, tmp_path / f"{norm}.tflite", PARAMS) for norm in ("none", "batch")}
    ops = {norm: sorted(op["op_name"] for op in tflite_ops(path.read_bytes())) for norm, path in paths.items()}
    assert ops["batch"] == ops["none"]  # the same int8 graph: each level's batch norm is folded into its conv
