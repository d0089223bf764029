"""Export the Keras SSD detector to TFLite, ending in the `TFLite_Detection_PostProcess` op.

The serving graph is the one TF OD API's `export_tflite_graph_lib_tf2.py` builds for SSD:

    image uint8 [1, H, W, 3] -> cast float32 (pixels 0..255) -> detector
      -> box_encodings [1, A, 4] (Faster R-CNN (ty, tx, th, tw), scales 10/10/5/5)
      -> sigmoid(class_logits) [1, A, 1]
      -> TFLite_Detection_PostProcess(box_encodings, scores, anchors (ycenter, xcenter, h, w) [A, 4])
      -> detection_boxes [1, N, 4] normalised [ymin, xmin, ymax, xmax] (not clipped),
         detection_classes [1, N] (0-based: face = 0), detection_scores [1, N], num_detections [1]

The op is declared through a placeholder `tf.function(experimental_implements=...)` that the
converter legalises into the custom op. Scores carry no background column: the op takes
`label_offset = scores.shape[-1] - num_classes` = 0, so output class 0 is 'face'.

Keras 3 pitfall: a hand-made `tf.Module` or a concrete-function conversion silently drops the
weights (NaN outputs, READ_VARIABLE errors in int8); the graph therefore goes through
`keras.export.ExportArchive` -> SavedModel -> `TFLiteConverter.from_saved_model`, and every
export is checked afterwards (`verify_tflite`).

int8 = full-integer post-training quantization with a representative dataset: uint8 input,
int8 network up to the class logits, then float: the sigmoid (SCORE_OP) and the post-process op (it has no
int8 kernel), float32 outputs. An int8 sigmoid would put every score on a 1/256 grid, which ties all
confident faces at 255/256 and flattens the top of the precision-recall curve; in float, each of the
int8 logits' 256 levels keeps its own score.
The interpreter lists the four outputs in an order of its own: find them by the signature
names in `OUTPUT_NAMES` (see `facedet.runtime.tflite_detector`), never by position.
"""

from __future__ import annotations

import logging
import os
import tempfile
from collections.abc import Iterable, Iterator, Sequence
from pathlib import Path
from typing import Literal

import numpy as np

from facedet.export.postprocess_options import with_detections_per_class
from facedet.model.boxes import SCALE_FACTORS, corners_to_centre
from facedet.process.atomic import atomic_path
from facedet.runtime.photo_fit import fit_to_input
from facedet.runtime.tflite_detector import (
    OUTPUT_NAMES,
    POSTPROCESS_OP,
    PostProcessParams,
    load_interpreter,
    quiet_interpreter_deprecation,
)

log = logging.getLogger(__name__)

SERVING_ENDPOINT = "serving_default"
INPUT_NAME = "image"
Quantize = Literal["int8", "float"]


NUM_CLASSES = 1  # 'face'
SCORE_OP = "LOGISTIC"  # the sigmoid on the class logits, left in float by the int8 quantizer

# Peak memory of exporting one input size (int8 + float, calibration, verification), measured with the
# default preset and 8 calibration images (`python bench/export_memory.py`, peak RSS of one process):
# 966 MiB at 256, 1,152 MiB at 512, 1,999 MiB at 1024 (2026-12-02, TF 2.21, a shared 2-core x86-64
# machine): about 900 MiB plus 1.1 KB per input pixel. It grows with the input's pixels
# (activations of the converter's calibration and the interpreter) plus the calibration images, held
# in memory as uint8 (3 bytes per pixel each).
EXPORT_BASE_BYTES = 900 * 2**20
EXPORT_BYTES_PER_INPUT_PX = 1080  # + 3 per calibration image: 1,104 with the 8 measured


class MemoryNeedError(ValueError):
    """An export would need more memory than the machine has; one line naming the param."""


def export_memory_need(input_size: int, calibration_images: int) -> int:
    """Bytes an export at a square `input_size` with `calibration_images` images needs at its peak (measured)."""
    return EXPORT_BASE_BYTES + (EXPORT_BYTES_PER_INPUT_PX + 3 * calibration_images) * input_size ** 2


def machine_memory() -> int:
    """Bytes of memory this machine has (physical; a container's cgroup limit when lower)."""
    total = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    for limit_file in ("/sys/fs/cgroup/memory.max", "/sys/fs/cgroup/memory/memory.limit_in_bytes"):
        try:
            text = Path(limit_file).read_text().strip()
        except OSError:
            continue
        if text.isdigit():
            total = min(total, int(text))
    return total


def require_memory(input_sizes: Sequence[int], calibration_images: int, available: int | None = None) -> None:
    """MemoryNeedError before any work when the largest of `input_sizes` needs more than the machine's
    memory (`available`, default `machine_memory()`)."""
    available = machine_memory() if available is None else available
    largest = max(input_sizes)
    need = export_memory_need(largest, calibration_images)
    if need > available:
        fits = [s for s in range(32, largest, 32) if export_memory_need(s, calibration_images) <= available]
        raise MemoryNeedError(
            f"params.yaml: 'export.input_sizes': exporting at {largest} needs about {need / 2**30:.1f} GB of memory "
            f"(measured: it grows with the input's pixels and export.representative_images: {calibration_images}), "
            f"this machine has {available / 2**30:.1f} GB: the largest size that fits is "
            f"{fits[-1] if fits else 'none'}")


def implements_signature(params: PostProcessParams) -> str:
    """The `experimental_implements` text (a NameAttrList proto) the converter turns into the
    `TFLite_Detection_PostProcess` op (single class 'face'; TF OD API's attribute names)."""
    y, x, h, w = SCALE_FACTORS  # the training box coder's
    attrs = [
        ("max_detections", "i", params.max_detections),
        ("max_classes_per_detection", "i", 1),
        ("detections_per_class", "i", params.max_detections),  # regular NMS only; dropped by the converter,
        # written back by facedet.export.postprocess_options
        ("use_regular_nms", "b", str(bool(params.use_regular_nms)).lower()),
        ("nms_score_threshold", "f", f"{params.score_threshold:.9g}"),
        ("nms_iou_threshold", "f", f"{params.nms_iou:.9g}"),
        ("y_scale", "f", y), ("x_scale", "f", x), ("h_scale", "f", h), ("w_scale", "f", w),
        ("num_classes", "i", NUM_CLASSES),
    ]
    parts = [f'name: "{POSTPROCESS_OP}"']
    parts += [f'attr {{ key: "{key}" value {{ {kind}: {value} }} }}' for key, kind, value in attrs]
    return " ".join(parts)


def op_anchors(anchors_yxyx: np.ndarray) -> np.ndarray:
    """(A, 4) normalised `[ymin, xmin, ymax, xmax]` -> float32 (A, 4) `(ycenter, xcenter, h, w)`, the op's
    layout; ValueError for a wrong shape or boxes without area (corners in another order?)."""
    a = np.asarray(anchors_yxyx, dtype=np.float64)
    if a.ndim != 2 or a.shape[1] != 4:
        raise ValueError(f"anchors must be (A, 4) [ymin, xmin, ymax, xmax], got shape {a.shape}")
    centre = corners_to_centre(a)
    if np.any(centre[:, 2:] <= 0):
        raise ValueError("anchors must have positive height and width ([ymin, xmin, ymax, xmax] order?)")
    return centre.astype(np.float32)


def split_outputs(outputs) -> tuple:
    """The model's outputs -> (box_encodings [B, A, 4], class_logits [B, A, C]).

    Accepts the contract's dict (`box_encodings`, `class_logits`) or a two-element list/tuple.
    """
    if isinstance(outputs, dict):
        missing = {"box_encodings", "class_logits"} - set(outputs)
        if missing:
            raise ValueError(f"model outputs lack {sorted(missing)}; got keys {sorted(outputs)}")
        return outputs["box_encodings"], outputs["class_logits"]
    if isinstance(outputs, (list, tuple)) and len(outputs) == 2:
        a, b = outputs
        if a.shape[-1] == 4 and b.shape[-1] != 4:
            return a, b
        if b.shape[-1] == 4 and a.shape[-1] != 4:
            return b, a
    raise ValueError("model must output {'box_encodings': [B, A, 4], 'class_logits': [B, A, C]}")


def model_input_size(model) -> tuple[int, int]:
    """(height, width) of a Keras model's static [B, H, W, 3] input."""
    shape = tuple(model.input_shape)
    if len(shape) != 4 or shape[-1] != 3 or shape[1] is None or shape[2] is None:
        raise ValueError(f"model input must be [B, H, W, 3] with static H, W; got {shape}")
    return int(shape[1]), int(shape[2])


def build_serving_archive(model, anchors_yxyx: np.ndarray, params: PostProcessParams):
    """A `keras.export.ExportArchive` whose `serving_default` endpoint is the full TFLite graph.

    Endpoint: `image` uint8 [1, H, W, 3] -> dict of `OUTPUT_NAMES` (values are placeholders in TF;
    the real work is the TFLite custom op).
    """
    import keras
    import tensorflow as tf

    height, width = model_input_size(model)
    box_shape = split_outputs(model.output)[0].shape
    anchors = op_anchors(anchors_yxyx)
    if box_shape[1] is not None and box_shape[1] != len(anchors):
        raise ValueError(f"model predicts {box_shape[1]} boxes but {len(anchors)} anchors were given")
    n = params.max_detections

    @tf.function(experimental_implements=implements_signature(params))
    def detection_postprocess(box_encodings, class_scores, anchors_centre):
        # Placeholder: only its signature matters; the converter replaces it with the custom op.
        del box_encodings, class_scores, anchors_centre
        return (tf.zeros([1, n, 4]), tf.zeros([1, n]), tf.zeros([1, n]), tf.zeros([1]))

    anchors_const = tf.constant(anchors, name="anchors")

    def serve(image):
        box_encodings, class_logits = split_outputs(model(tf.cast(image, tf.float32), training=False))
        scores = tf.sigmoid(class_logits)
        boxes, classes, det_scores, count = detection_postprocess(box_encodings, scores, anchors_const)
        return dict(zip(OUTPUT_NAMES, (boxes, classes, det_scores, count)))

    archive = keras.export.ExportArchive()
    archive.track(model)
    archive.add_endpoint(
        SERVING_ENDPOINT, serve, input_signature=[tf.TensorSpec([1, height, width, 3], tf.uint8, name=INPUT_NAME)]
    )
    return archive


def convert_saved_model(saved_model_dir: str | os.PathLike, quantize: Quantize,
                        representative: Sequence[np.ndarray] = ()) -> bytes:
    """SavedModel from `build_serving_archive` -> TFLite flatbuffer bytes.

    int8: full-integer PTQ calibrated on `representative` (uint8 [H, W, 3] images); builtin ops
    must all be int8 (the converter fails otherwise) but SCORE_OP; the custom op stays float. The public
    converter API cannot leave one op in float: it calibrates only (`_experimental_calibrate_only`), then
    quantizes with `mlir_quantize(denylisted_ops=...)`, the two halves of its own int8 path.
    """
    import tensorflow as tf
    from tensorflow.lite.python.convert import mlir_quantize

    converter = tf.lite.TFLiteConverter.from_saved_model(str(saved_model_dir), signature_keys=[SERVING_ENDPOINT])
    converter.allow_custom_ops = True
    if quantize == "int8":
        if not representative:
            raise ValueError("int8 export needs at least one representative image")

        def representative_dataset():
            for image in representative:
                yield {INPUT_NAME: image[None]}

        converter.optimizations = [tf.lite.Optimize.DEFAULT]
        converter.representative_dataset = representative_dataset
        converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8]
        converter._experimental_calibrate_only = True  # noqa: SLF001 (quantized below, SCORE_OP left float)
    elif quantize != "float":
        raise ValueError(f"quantize must be 'int8' or 'float', got {quantize!r}")
    with quiet_interpreter_deprecation():  # the int8 calibrator builds a tf.lite.Interpreter
        content = converter.convert()
    return mlir_quantize(content, denylisted_ops=[SCORE_OP]) if quantize == "int8" else content


def tflite_ops(model_content: bytes) -> list[dict]:
    """The model's operators in execution order (no delegate), each {'op_name', 'inputs', 'outputs'}."""
    import tensorflow as tf

    with quiet_interpreter_deprecation():
        interpreter = tf.lite.Interpreter(
            model_content=model_content,
            experimental_op_resolver_type=tf.lite.experimental.OpResolverType.BUILTIN_WITHOUT_DEFAULT_DELEGATES,
        )
    return [op for op in interpreter._get_ops_details() if op["op_name"] != "DELEGATE"]  # noqa: SLF001


def verify_tflite(model_path: str | os.PathLike, quantize: Quantize, probe_images: Sequence[np.ndarray],
                  keras_model=None, score_threshold: float = 0.0) -> None:
    """Raise RuntimeError unless the exported file is the graph we meant to ship.

    Checks: last op is the post-process op and feeds every output; uint8 input [1, H, W, 3];
    int8: the convolutions run in int8, the sigmoid in float, feeding the op's scores; the kept
    detections finite on `probe_images`, and not identical for different images that have detections
    (weights baked in); with `keras_model`: the best score on each probe matches the Keras model's
    (float: to 1e-3; int8: error beyond 0.3, warning beyond 0.1).
    """
    content = Path(model_path).read_bytes()
    ops = tflite_ops(content)
    if not ops or ops[-1]["op_name"] != POSTPROCESS_OP:
        raise RuntimeError(f"{model_path}: last op is {ops[-1]['op_name'] if ops else None}, not {POSTPROCESS_OP}")
    interpreter, outputs = load_interpreter(model_path)
    if set(ops[-1]["outputs"]) != {d["index"] for d in outputs.values()}:
        raise RuntimeError(f"{model_path}: model outputs are not the {POSTPROCESS_OP} outputs")
    (inp,) = interpreter.get_input_details()
    if inp["dtype"] != np.uint8 or len(inp["shape"]) != 4 or inp["shape"][0] != 1 or inp["shape"][3] != 3:
        raise RuntimeError(f"{model_path}: input is {inp['dtype'].__name__} {list(inp['shape'])}, "
                           "expected uint8 [1, H, W, 3]")
    if quantize == "int8":
        details = interpreter.get_tensor_details()
        float_convs = [op["op_name"] for op in ops if op["op_name"] in ("CONV_2D", "DEPTHWISE_CONV_2D")
                       and details[op["inputs"][0]]["dtype"] != np.int8]
        if float_convs:
            raise RuntimeError(f"{model_path}: {len(float_convs)} convolutions are not int8")
        sigmoids = [op for op in ops if op["op_name"] == SCORE_OP]
        if (len(sigmoids) != 1 or details[sigmoids[0]["inputs"][0]]["dtype"] != np.float32
                or ops[-1]["inputs"][1] != sigmoids[0]["outputs"][0]):
            raise RuntimeError(f"{model_path}: the scores do not reach {POSTPROCESS_OP} straight from a float "
                               f"{SCORE_OP} (an int8 tensor on the way puts every score on a 1/256 grid)")
    results = []
    for image in probe_images:
        interpreter.set_tensor(inp["index"], image[None])
        interpreter.invoke()
        res = {name: interpreter.get_tensor(d["index"]).copy() for name, d in outputs.items()}
        kept = int(res["num_detections"][0])  # the op leaves the rows past it unwritten (any bytes)
        if not all(np.all(np.isfinite(v[:, :kept] if name != "num_detections" else v)) for name, v in res.items()):
            raise RuntimeError(f"{model_path}: NaN/inf outputs (weights not baked in?)")
        results.append(res)
    detected = [i for i, res in enumerate(results) if res["num_detections"][0] >= 1]
    distinct = [i for i in detected[1:] if not np.array_equal(probe_images[i], probe_images[detected[0]])]
    if distinct and all(
        np.array_equal(results[i]["detection_scores"], results[detected[0]]["detection_scores"])
        and np.array_equal(results[i]["detection_boxes"], results[detected[0]]["detection_boxes"])
        for i in distinct
    ):
        raise RuntimeError(f"{model_path}: outputs do not depend on the input (weights not baked in?)")
    if keras_model is None:
        return
    for image, res in zip(probe_images, results):
        _, logits = split_outputs(keras_model(image[None].astype(np.float32), training=False))
        best = float(1 / (1 + np.exp(-np.max(np.asarray(logits, dtype=np.float64)))))
        got = float(res["detection_scores"][0, 0]) if res["num_detections"][0] >= 1 else 0.0
        if abs(best - score_threshold) < 2e-3:
            continue  # too close to the threshold to say whether the op keeps it
        if best < score_threshold:
            best = 0.0  # the op keeps scores >= threshold only
        error = abs(best - got)
        if error > (1e-3 if quantize == "float" else 0.3):  # int8: only a gross error (lost weights)
            raise RuntimeError(f"{model_path}: best score {got:.4f}, the Keras model gives {best:.4f}")
        if error > 0.1:
            log.warning("%s: int8 best score %.3f vs float Keras %.3f", model_path, got, best)


def export_tflite(model, anchors_yxyx: np.ndarray, representative_images: Iterable[np.ndarray],
                  out_path: str | os.PathLike, params: PostProcessParams, quantize: Quantize = "int8") -> Path:
    """Convert a Keras detector to a `.tflite` ending in TFLite_Detection_PostProcess; return `out_path`.

    model: Keras detector (contract in the module docstring), input [B, H, W, 3] pixels 0..255.
    anchors_yxyx: float32 (A, 4) normalised `[ymin, xmin, ymax, xmax]`, in the model's output order.
    representative_images: uint8 (H, W, 3) images already resized to the model input (calibration
      for int8; the first few also probe the exported file in both modes).
    params: the op's settings (params.yaml `export`: max_detections, score_threshold, nms_iou,
      use_regular_nms).
    Written atomically; verified (see `verify_tflite`) before it replaces `out_path`. int8 refuses a
    model with GroupNormalization (`head_norm: group`): the converter leaves part of it in float.
    """
    if quantize not in ("int8", "float"):
        raise ValueError(f"quantize must be 'int8' or 'float', got {quantize!r}")
    height, width = model_input_size(model)
    images = [np.asarray(im) for im in representative_images]
    if quantize == "int8" and not images:
        raise ValueError("int8 export needs at least one representative image")
    for im in images:
        if im.dtype != np.uint8 or im.shape != (height, width, 3):
            raise ValueError(f"representative images must be uint8 ({height}, {width}, 3), got {im.dtype} {im.shape}")
    if quantize == "int8" and (grouped := group_normalised_layers(model)):
        raise ValueError(f"int8 export: GroupNormalization ({', '.join(grouped)}; head_norm: group) does not quantize "
                         "to int8: the converter leaves its variance in float between quantize/dequantize pairs "
                         "(export float, or train with head_norm: batch)")
    probes = images[:2] if len(images) >= 2 else images + [np.full((height, width, 3), 128, np.uint8)]
    archive = build_serving_archive(model, anchors_yxyx, params)
    with tempfile.TemporaryDirectory(prefix="facedet-export-") as tmp:
        archive.write_out(tmp, verbose=False)
        content = with_detections_per_class(convert_saved_model(tmp, quantize, images), params.max_detections)
    with atomic_path(out_path) as tmp_path:
        tmp_path.write_bytes(content)
        verify_tflite(tmp_path, quantize, probes, keras_model=model, score_threshold=params.score_threshold)
    log.debug("wrote %s (%s, %.1f KiB)", out_path, quantize, len(content) / 1024)
    return Path(out_path)


def group_normalised_layers(model) -> list[str]:
    """Names of the model's GroupNormalization layers (the detector's `head_norm: group`)."""
    import keras

    return [layer.name for layer in model.layers if isinstance(layer, keras.layers.GroupNormalization)]


def representative_images(tfrecord_paths: Iterable[str | os.PathLike], count: int,
                          input_size: int | tuple[int, int], resize: str) -> Iterator[np.ndarray]:
    """`count` images spread evenly over the TFRecords (every k-th record, shards in sorted name
    order), decoded and fitted to the model input as the runner does (`resize`: 'stretch' or
    'letterbox', see facedet.runtime.photo_fit): uint8 (H, W, 3) each. Spread, because the first records of sorted WIDER shards all come from
    the first events (0--Parade), which would calibrate narrow activation ranges.

    Deterministic: no shuffling, so the same shards always calibrate the same way.
    """
    import tensorflow as tf

    from facedet.data.tfrecord_schema import parse_example

    size = (input_size, input_size) if isinstance(input_size, int) else tuple(input_size)
    paths = sorted(str(p) for p in tfrecord_paths)
    if not paths:
        raise FileNotFoundError("no TFRecord shards given for the representative dataset")
    if count <= 0:
        return
    total = sum(1 for _ in tf.data.TFRecordDataset(paths))  # raw records: no decoding
    stride = max(total // count, 1)
    dataset = tf.data.TFRecordDataset(paths).shard(stride, 0).take(count).map(parse_example)
    for example in dataset:
        image = tf.io.decode_image(example["image/encoded"], channels=3, expand_animations=False).numpy()
        yield fit_to_input(image, size, resize)[0]

