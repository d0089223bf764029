"""`facedet detect MODEL.tflite IMAGE_OR_DIR --out DIR`: run an exported face detector on photos.

For each image it writes DIR/<image stem>.json and DIR/<image stem>.jpg with the boxes drawn (the
formats: facedet.runtime.detect); with --recursive a directory's whole tree, each image's outputs at
its relative path. The model is any `.tflite` from `facedet.export.tflite` (uint8 input [1, H, W, 3],
TFLite_Detection_PostProcess outputs), run by facedet.runtime.tflite_detector (resize as its
export.json says, else plain resize). TensorFlow is imported only when the command runs, so
`facedet --help` stays fast.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import sys
from collections.abc import Iterator
from pathlib import Path

from facedet.runtime.detect import check_out_dir, detect_faces, list_images, output_name

DEFAULT_SCORE_THRESHOLD = 0.5  # what a user wants drawn; the evaluation keeps far lower scores (params.yaml)


def _threshold(text: str) -> float:
    value = float(text)
    if not 0.0 <= value <= 1.0:
        raise argparse.ArgumentTypeError(f"must be in [0, 1], got {text}")
    return value


def add_parser(subparsers: argparse._SubParsersAction) -> argparse.ArgumentParser:
    """The detect subcommand."""
    parser = subparsers.add_parser(
        "detect", help="find faces in images with an exported .tflite detector",
        description="Run an exported face detector (.tflite from the export stage, e.g. "
                    "models/export/face_detector_int8.tflite) on an image or on every image in a directory. "
                    "Writes OUT/<image stem>.json ({\"image\", \"width\", \"height\", \"faces\": [{\"box_xywh\": "
                    "[x, y, w, h] in pixels, \"score\"}]}, best first) and OUT/<image stem>.jpg with the boxes drawn; "
                    "with --recursive, every image in the directory's tree, its outputs at its relative path "
                    "(DIR/a/b.jpg -> OUT/a/b.json, OUT/a/b.jpg). "
                    "Exit status 1 if the model or an image cannot be used (each named on one line), "
                    "2 for usage errors.")
    parser.add_argument("model", metavar="MODEL.tflite", help="exported detector (uint8 input, post-process outputs)")
    parser.add_argument("images", metavar="IMAGE_OR_DIR", help="an image, or a directory of images")
    parser.add_argument("--recursive", "-r", action="store_true",
                        help="read the directory's whole tree; outputs keep each image's relative path")
    parser.add_argument("--out", required=True, metavar="DIR", help="output directory (created if missing)")
    parser.add_argument("--score-threshold", type=_threshold, default=DEFAULT_SCORE_THRESHOLD, metavar="S",
                        help=f"keep faces with score >= S (default {DEFAULT_SCORE_THRESHOLD})")
    parser.add_argument("--threads", type=int, default=1, metavar="N",
                        help="threads of the interpreter (XNNPACK) and of the resize (default 1)")
    return parser


@contextlib.contextmanager
def quiet_native_stderr() -> Iterator[None]:
    """Send file descriptor 2 to /dev/null: hides what TensorFlow's C++ side prints while it loads
    (CPU / oneDNN banners, 'Created TensorFlow Lite XNNPACK delegate'). Python exceptions raised
    inside still propagate and are reported after it is restored."""
    sys.stderr.flush()
    saved = os.dup(2)
    try:
        with open(os.devnull, "w") as devnull:
            os.dup2(devnull.fileno(), 2)
        yield
    finally:
        os.dup2(saved, 2)
        os.close(saved)


def run(args: argparse.Namespace) -> int:
    images = list_images(args.images, recursive=args.recursive)
    root = Path(args.images) if Path(args.images).is_dir() else None
    check_out_dir(args.out)
    with quiet_native_stderr():
        from facedet.runtime.tflite_detector import TFLiteDetector

        detector = TFLiteDetector(args.model, num_threads=max(1, args.threads))
    failed: list[ValueError] = []

    def report(err: ValueError) -> None:
        failed.append(err)
        print(f"facedet detect: error: {err}", file=sys.stderr)

    results = detect_faces(detector, images, args.out, args.score_threshold, on_error=report, root=root)
    for result in results:
        print(f"{result.image}: {len(result.faces)} face{'s' * (len(result.faces) != 1)} -> "
              f"{Path(args.out) / output_name(result.image, root)}.json")
    return 1 if failed else 0
