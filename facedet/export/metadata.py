"""The one adapter over the TFLite model-metadata writer (tflite-support), and the description it packs
(`metadata_description`); swap the writer here only.

Mobile clients (MediaPipe Tasks' ObjectDetector, the TFLite Task Library) refuse a detection model
without TFLite metadata: they read the input normalisation, the label file and which output is
which from it. `write_detector_metadata` packs, into an exported face detector (uint8 input
[1, H, W, 3], four outputs of TFLite_Detection_PostProcess), the ObjectDetector metadata:
input 'image' (RGB, mean/std 127.5: the model maps pixels to [-1, 1] itself, so a uint8 client
feeds raw pixels), outputs 'location' (normalised [ymin, xmin, ymax, xmax]), 'category' (0-based
class ids, label file `labels.txt`), 'score' and 'number of detections'.

The writer comes from `tflite-support==0.4.4`, installed with `--no-deps` (its `protobuf<4` pin
would break TensorFlow; see requirements-nodeps.txt); its native modules link against libusb-1.0,
which minimal Linux images lack, so we load the copy the `libusb-package` wheel ships before
importing them (no system package needed). Only
`tensorflow_lite_support.metadata.python` is imported, never the top-level `tflite_support`
package (it pulls the Task Library and its protobuf pin). The model graph, tensor names and
signature are left as they are: `facedet.runtime.tflite_detector` finds the outputs by name before and after.
"""

from __future__ import annotations

import ctypes
import json
import os
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from types import SimpleNamespace

from facedet.model.config import DetectorConfig
from facedet.process.atomic import atomic_path
from facedet.process.zips import with_fixed_member_dates
from facedet.runtime.tflite_detector import POSTPROCESS_OP, PostProcessParams

LABEL_FILE = "labels.txt"
NORM_MEAN = 127.5  # uint8 pixels p -> (p - 127.5) / 127.5 in [-1, 1], what the model does inside
NORM_STD = 127.5
OUTPUT_METADATA_NAMES = ("location", "category", "score", "number of detections")  # the op's output ports
INSTALL_HINT = ("install the metadata writer: pip install -r requirements.txt (libusb-package, for libusb-1.0) "
                "&& pip install --no-deps -r requirements-nodeps.txt (tflite-support==0.4.4)")

RESIZE_TEXT = {"stretch": "plain resize, aspect not kept",
               "letterbox": "letterbox: aspect kept, photo at the top-left, grey padding"}


class MetadataWriterUnavailable(ImportError):
    """The tflite-support metadata writer cannot be imported here (message says why and what to install)."""


@dataclass(frozen=True)
class DetectorMetadata:
    """What a client reads from the metadata of an exported detector."""

    name: str
    version: str
    description: str
    author: str
    license: str
    labels: list[str]          # 0-based class ids of the 'category' output
    norm_mean: list[float]
    norm_std: list[float]
    output_names: list[str]    # metadata name of each model output, in the model's output order
    min_parser_version: str


def _load_bundled_libusb() -> None:
    """Load libusb-1.0 from the `libusb-package` wheel, so the writer's native modules find it by
    soname (libusb-1.0.so.0) even where the system has none. A no-op when the wheel is absent."""
    try:
        import libusb_package
    except ImportError:
        return
    library = Path(libusb_package.__file__).with_name("libusb-1.0.so")
    if library.is_file():
        ctypes.CDLL(str(library), mode=ctypes.RTLD_GLOBAL)


def _writer_modules() -> SimpleNamespace:
    """The tflite-support modules used here: object_detector, metadata_info, writer_utils,
    metadata (reader/populator), schema (metadata flatbuffer schema), model_schema (TFLite model schema)."""
    _load_bundled_libusb()
    try:
        from tensorflow_lite_support.metadata import metadata_schema_py_generated as schema
        from tensorflow_lite_support.metadata import schema_py_generated as model_schema
        from tensorflow_lite_support.metadata.python import metadata
        from tensorflow_lite_support.metadata.python.metadata_writers import (
            metadata_info,
            object_detector,
            writer_utils,
        )
    except ImportError as err:  # package missing, or its native module lacks libusb-1.0
        raise MetadataWriterUnavailable(f"TFLite metadata writer unavailable ({err}); {INSTALL_HINT}") from err
    return SimpleNamespace(object_detector=object_detector, metadata_info=metadata_info,
                           writer_utils=writer_utils, metadata=metadata, schema=schema,
                           model_schema=model_schema)


def writer_unavailable_reason() -> str | None:
    """None when the metadata writer imports, else one line saying why not and what to install."""
    try:
        _writer_modules()
    except MetadataWriterUnavailable as err:
        return str(err)
    return None


def check_postprocess_outputs(model_buffer: bytes) -> None:
    """Raise ValueError unless the model's outputs are the four outputs of TFLite_Detection_PostProcess
    with tensor indices ascending in port order (boxes, classes, scores, count).

    The ObjectDetector writer assigns 'location', 'category', 'score', 'number of detections' to the
    output tensors sorted by index, which is only right when the op's ports ascend.
    """
    model = _writer_modules().model_schema.Model.GetRootAsModel(bytearray(model_buffer), 0)
    subgraph = model.Subgraphs(0)
    outputs = list(subgraph.OutputsAsNumpy())
    for i in range(subgraph.OperatorsLength()):
        op = subgraph.Operators(i)
        code = model.OperatorCodes(op.OpcodeIndex()).CustomCode()
        if code is not None and code.decode() == POSTPROCESS_OP:
            ports = list(op.OutputsAsNumpy())
            if sorted(ports) != sorted(outputs) or len(ports) != len(OUTPUT_METADATA_NAMES):
                raise ValueError(f"model outputs {outputs} are not the {POSTPROCESS_OP} outputs {ports}")
            if ports != sorted(ports):
                raise ValueError(f"{POSTPROCESS_OP} output tensors {ports} do not ascend in port order; "
                                 "the ObjectDetector metadata writer would mislabel them")
            return
    raise ValueError(f"model has no {POSTPROCESS_OP} op: not an SSD face detector export")


def write_detector_metadata(model_path: str | os.PathLike, labels: Sequence[str],
                            out_path: str | os.PathLike | None = None, *, name: str = "face detector",
                            version: str = "", description: str = "", author: str = "",
                            license: str = "") -> Path:
    """Pack ObjectDetector metadata and the label file into `model_path`; write to `out_path`
    (default: in place), atomically. Returns the written path.

    labels: class names, one per 0-based class id of the 'category' output (here ['face']).
    Raises MetadataWriterUnavailable when tflite-support cannot be imported, ValueError when the
    model is not an SSD export ending in TFLite_Detection_PostProcess.
    """
    tfls = _writer_modules()
    info = tfls.metadata_info
    model_path = Path(model_path)
    out_path = Path(out_path) if out_path is not None else model_path
    model_buffer = bytearray(model_path.read_bytes())
    check_postprocess_outputs(model_buffer)
    if not labels or any(not label or "\n" in label for label in labels):
        raise ValueError(f"labels must be non-empty single-line names, got {list(labels)}")
    with tempfile.TemporaryDirectory(prefix="facedet-metadata-") as tmp:
        label_path = Path(tmp) / LABEL_FILE
        label_path.write_text("\n".join(labels) + "\n", encoding="utf-8")
        writer = tfls.object_detector.MetadataWriter.create_from_metadata_info(
            model_buffer,
            general_md=info.GeneralMd(name=name, version=version, description=description,
                                               author=author, licenses=license),
            input_md=info.InputImageTensorMd(
                name="image", description="RGB image, uint8 pixels, resized to the model input (aspect not kept).",
                norm_mean=[NORM_MEAN], norm_std=[NORM_STD],
                color_space_type=tfls.schema.ColorSpaceType.RGB,
                tensor_type=tfls.writer_utils.get_input_tensor_types(model_buffer)[0]),
            output_category_md=info.CategoryTensorMd(
                name="category", description="0-based class id of each detection (0 = face).",
                label_files=[info.LabelFileMd(file_path=str(label_path))]),
            output_score_md=info.ClassificationTensorMd(
                name="score", description="Sigmoid score of each detection, descending."),
        )
        populated = writer.populate()
    with atomic_path(out_path) as tmp_path:
        tmp_path.write_bytes(with_fixed_member_dates(bytes(populated)))  # the populator stamps the label file's time
    return out_path


def read_detector_metadata(model_path: str | os.PathLike) -> DetectorMetadata | None:
    """The metadata packed in a .tflite (None when it carries none), as clients would read it."""
    buffer = Path(model_path).read_bytes()
    try:
        displayer = _writer_modules().metadata.MetadataDisplayer.with_model_buffer(buffer)
    except ValueError:  # "The model does not have metadata."
        return None
    meta = json.loads(displayer.get_metadata_json())
    subgraph = meta["subgraph_metadata"][0]
    norm = next((unit["options"] for unit in subgraph["input_tensor_metadata"][0].get("process_units", [])
                 if unit.get("options_type") == "NormalizationOptions"), {})
    outputs = subgraph["output_tensor_metadata"]
    label_names = [f["name"] for out in outputs for f in out.get("associated_files", [])
                   if f.get("type") == "TENSOR_VALUE_LABELS"]
    labels = (displayer.get_associated_file_buffer(label_names[0]).decode("utf-8").splitlines()
              if label_names else [])
    return DetectorMetadata(
        name=meta.get("name", ""), version=meta.get("version", ""), description=meta.get("description", ""),
        author=meta.get("author", ""), license=meta.get("license", ""), labels=labels,
        norm_mean=list(norm.get("mean", [])), norm_std=list(norm.get("std", [])),
        output_names=[out["name"] for out in outputs], min_parser_version=meta.get("min_parser_version", ""),
    )


def metadata_description(config: DetectorConfig, params: PostProcessParams, quantize: str) -> str:
    """The model description packed into the .tflite metadata (`config` at the file's input size,
    `params` the post-process op's settings, params.yaml `export`)."""
    nms = "regular" if params.use_regular_nms else "fast"
    weights = "int8 (post-training full-integer quantization), uint8 input" if quantize == "int8" else "float32"
    return (f"SSD MobileNetV2 (alpha {config.alpha}) face detector, input {config.input_size}x{config.input_size} "
            f"RGB uint8 ({RESIZE_TEXT[config.resize]}); {weights}; ends in TFLite_Detection_PostProcess: "
            f"up to {params.max_detections} faces, score >= {params.score_threshold}, {nms} NMS at IoU "
            f"{params.nms_iou}; boxes normalised [ymin, xmin, ymax, xmax], class 0 = face.")
