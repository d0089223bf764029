"""Run an exported face detector `.tflite` (uint8 input, ends in TFLite_Detection_PostProcess).

`TFLiteDetector(path)` is a `facedet.runtime.detector_protocol.Detector`: `detect(image)` takes an original
RGB uint8 (H, W, 3) image and returns numpy float32 (K, 5) pixel `x, y, w, h, score` in that image,
sorted by score descending.

Photos are fitted to the model input (stretch or letterbox) and boxes mapped back by
facedet.runtime.photo_fit, as for the Keras model. The export stage records each file's resize mode
in `export.json` beside it (facedet.runtime.export_manifest), which the runner reads when not told.

A call is three phases, public so that a benchmark can time them apart (`StagedDetector`):
`prepare` fits the photo straight into the interpreter's input tensor (no per-call buffer),
`invoke` runs the model (network + post-process op), `read_detections` maps the op's outputs
to the photo. `num_threads` is the interpreter's (XNNPACK's) thread count, and OpenCV's for the
resize (its pool is process-wide: the last detector built sets it).

Outputs are found by their signature names (`OUTPUT_NAMES`), or, for files from other exporters
(TF OD API: 'TFLite_Detection_PostProcess', ':1', ':2', ':3'), by tensor name and shape —
never by position: the interpreter lists them in an order of its own.
"""

from __future__ import annotations

import contextlib
import os
import warnings
from collections.abc import Iterator
from pathlib import Path
from typing import Protocol

import cv2
import numpy as np

from facedet.runtime.detector_protocol import Fitted, NmsParams, StagedDetector, check_rgb
from facedet.runtime.photo_fit import RESIZE_MODES, corners_to_photo_xywh, fit_to_input
from facedet.runtime.export_manifest import resize_of
from facedet.runtime.tflite_check import check_tflite_file

POSTPROCESS_OP = "TFLite_Detection_PostProcess"  # the custom op every exported detector ends in
OUTPUT_NAMES = ("detection_boxes", "detection_classes", "detection_scores", "num_detections")


class PostProcessParams(NmsParams, Protocol):
    """The `TFLite_Detection_PostProcess` settings an export bakes into the file (params.yaml `export`)."""

    @property
    def use_regular_nms(self) -> bool: ...


def interpreter_class():
    """`ai_edge_litert.interpreter.Interpreter` if installed, else `tf.lite.Interpreter`."""
    try:
        from ai_edge_litert.interpreter import Interpreter
    except ImportError:
        import tensorflow as tf

        Interpreter = tf.lite.Interpreter
    return Interpreter


@contextlib.contextmanager
def quiet_interpreter_deprecation() -> Iterator[None]:
    """Silence tf.lite.Interpreter's deprecation warning (we prefer ai_edge_litert when installed)."""
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=".*tf.lite.Interpreter is deprecated.*")
        yield


def load_interpreter(path: str | os.PathLike, num_threads: int = 1):
    """-> (allocated interpreter, {output name in OUTPUT_NAMES: output tensor details}).

    The file is checked first (`check_tflite_file`): a truncated or foreign file is a one-line
    ValueError, never an interpreter crash."""
    check_tflite_file(path)
    Interpreter = interpreter_class()
    try:
        with quiet_interpreter_deprecation():
            interpreter = Interpreter(model_path=str(path), num_threads=num_threads)
        interpreter.allocate_tensors()
    except (RuntimeError, ValueError) as err:
        detail = (str(err).strip().splitlines() or [type(err).__name__])[0]
        raise ValueError(f"{path}: the TFLite interpreter cannot load this model ({detail})") from None
    return interpreter, find_outputs(interpreter, path)


def find_outputs(interpreter, path: str | os.PathLike = "model") -> dict[str, dict]:
    """Map OUTPUT_NAMES to the interpreter's output details, by signature name, else name + shape."""
    by_index = {d["index"]: d for d in interpreter.get_output_details()}
    found: dict[str, dict] = {}
    signatures = interpreter.get_signature_list()
    if len(signatures) == 1:
        runner = interpreter.get_signature_runner(next(iter(signatures)))
        for name, detail in runner.get_output_details().items():
            if name in OUTPUT_NAMES and detail["index"] in by_index:
                found[name] = by_index[detail["index"]]
    if len(found) != len(OUTPUT_NAMES):
        found = _outputs_by_shape(list(by_index.values()))
    if found is None or len(found) != len(OUTPUT_NAMES):
        shapes = {d["name"]: [int(v) for v in d["shape"]] for d in by_index.values()}
        raise ValueError(f"{path}: expected the four TFLite_Detection_PostProcess outputs "
                         f"{list(OUTPUT_NAMES)}, got {shapes}")
    return found


def _outputs_by_shape(details: list[dict]) -> dict[str, dict] | None:
    if len(details) != 4:
        return None
    boxes = [d for d in details if len(d["shape"]) == 3 and d["shape"][-1] == 4]
    count = [d for d in details if list(d["shape"]) == [1]]
    pairs = [d for d in details if len(d["shape"]) == 2]
    if len(boxes) != 1 or len(count) != 1 or len(pairs) != 2:
        return None
    classes = [d for d in pairs if "class" in d["name"].lower() or d["name"].endswith(":1")]
    scores = [d for d in pairs if "score" in d["name"].lower() or d["name"].endswith(":2")]
    if len(classes) != 1 or len(scores) != 1 or classes[0] is scores[0]:
        return None
    return dict(zip(OUTPUT_NAMES, (boxes[0], classes[0], scores[0], count[0])))


class TFLiteDetector(StagedDetector):
    """A face detector `.tflite` with uint8 input [1, H, W, 3] and the four post-process outputs.

    resize: 'stretch' or 'letterbox' (see facedet.runtime.photo_fit); None: as the file's `export.json`
    entry says, else 'stretch'.
    """

    def __init__(self, path: str | os.PathLike, num_threads: int = 1, resize: str | None = None):
        self.path = Path(path)
        self._interpreter, self._outputs = load_interpreter(self.path, num_threads)
        inputs = self._interpreter.get_input_details()
        if len(inputs) != 1:
            raise ValueError(f"{self.path}: expected one input image tensor, got {len(inputs)} inputs")
        self._input = inputs[0]
        shape = list(self._input["shape"])
        if self._input["dtype"] != np.uint8 or len(shape) != 4 or shape[0] != 1 or shape[3] != 3:
            raise ValueError(f"{self.path}: input is {np.dtype(self._input['dtype']).name} {shape}; "
                             "expected uint8 [1, H, W, 3] (an image detector exported by facedet.export.tflite)")
        if resize is None:
            resize = resize_of(self.path)
        if resize not in RESIZE_MODES:
            raise ValueError(f"{self.path}: resize must be one of {RESIZE_MODES}, got {resize!r}")
        self.resize = resize
        self._input_tensor = self._interpreter.tensor(self._input["index"])
        cv2.setNumThreads(num_threads)

    @property
    def input_size(self) -> tuple[int, int]:
        """(height, width) of the model input, px."""
        return int(self._input["shape"][1]), int(self._input["shape"][2])

    def prepare(self, image: np.ndarray) -> Fitted:
        """Fit an RGB uint8 (H, W, 3) photo into the model's input tensor, in place; -> where it went."""
        image = check_rgb(image)
        buffer = self._input_tensor()[0]  # a view of the interpreter's own input: nothing allocated
        _, extent = fit_to_input(image, self.input_size, self.resize, out=buffer)
        del buffer  # the interpreter refuses to run while a view of its buffers is alive
        return Fitted(image.shape[:2], extent)

    def invoke(self) -> None:
        """Run the model on the prepared input: network, then the post-process op (decode + NMS)."""
        self._interpreter.invoke()

    def read_detections(self, fitted: Fitted) -> np.ndarray:
        """The op's outputs -> float32 (K, 5) pixel `x, y, w, h, score` in the photo `prepare` was
        given (clipped to it), score-descending."""
        boxes, scores = self._normalised_outputs()
        return corners_to_photo_xywh(boxes, scores, fitted.photo_size, fitted.extent)

    def detect_normalised(self, image_resized: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Run on a uint8 image already at `input_size`: -> (boxes (K, 4) normalised
        `[ymin, xmin, ymax, xmax]`, unclipped; scores (K,)), in the op's order (score descending)."""
        self._interpreter.set_tensor(self._input["index"], image_resized[None])
        self._interpreter.invoke()
        return self._normalised_outputs()

    def _normalised_outputs(self) -> tuple[np.ndarray, np.ndarray]:
        get = lambda name: self._interpreter.get_tensor(self._outputs[name]["index"])  # noqa: E731
        count = int(get("num_detections").reshape(-1)[0])
        boxes = get("detection_boxes")[0, :count].astype(np.float32)
        scores = get("detection_scores")[0, :count].astype(np.float32)
        return boxes, scores
