"""`facedet detect MODEL.tflite IMAGE_OR_DIR --out DIR`: run an exported face detector on photos.

For each image it writes DIR/<image stem>.json

    {"image": "<path as given>", "width": W, "height": H,
     "faces": [{"box_xywh": [x, y, w, h], "score": s}, ...]}

(boxes in pixels of the image as stored, after its EXIF orientation is applied; best first; only
faces with score >= --score-threshold) and DIR/<image stem>.jpg with those boxes drawn.
A directory is read one level deep (.jpg, .jpeg, .png, .bmp, .webp, sorted by name); with --recursive
its whole tree, and each image's outputs keep its path relative to that directory
(photos/2024/beach.jpg -> DIR/2024/beach.json, DIR/2024/beach.jpg), as WIDER's event folders need.

The model is any `.tflite` from `facedet.export.tflite` (uint8 input [1, H, W, 3], TFLite_Detection_PostProcess
outputs); images are resized to its input as in training (plain resize, aspect not kept).
TensorFlow is imported only when the command runs, so `facedet --help` stays fast.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import contextlib
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:
    from facedet.runtime.tflite_detector import TFLiteDetector

IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp", ".webp")
DEFAULT_SCORE_THRESHOLD = 0.5


@dataclass(frozen=True)
class ImageFaces:
    """Faces found in one image: `faces` float32 (K, 5) pixel `x, y, w, h, score`, best first."""

    image: Path
    width: int
    height: int
    faces: np.ndarray

    def to_json(self) -> dict:
        return {"image": str(self.image), "width": self.width, "height": self.height,
                "faces": [{"box_xywh": [round(float(v), 2) for v in row[:4]], "score": round(float(row[4]), 5)}
                          for row in self.faces]}


def output_name(image: Path, root: Path | None) -> Path:
    """Where an image's outputs go under the output directory, without suffix: its path relative to
    `root` (the directory given) or, for an image given alone, its stem."""
    return image.relative_to(root).with_suffix("") if root is not None else Path(image.stem)


def list_images(image_or_dir: str | os.PathLike, recursive: bool = False) -> list[Path]:
    """The image itself, or the images inside a directory (by suffix; directly inside it, or anywhere
    in its tree with `recursive`), sorted by relative path; hidden files and folders are skipped.

    Raises FileNotFoundError for a missing path, ValueError for a directory without images or
    with two images whose outputs would overwrite each other (same stem in the same folder).
    """
    path = Path(image_or_dir)
    if path.is_file():
        return [path]
    if not path.is_dir():
        raise FileNotFoundError(f"{path}: no such image or directory")
    found = path.rglob("*") if recursive else path.iterdir()
    images = sorted((p for p in found if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES
                     and not any(part.startswith(".") for part in p.relative_to(path).parts)),
                    key=lambda p: p.relative_to(path).as_posix())
    if not images:
        raise ValueError(f"{path}: no images ({', '.join(IMAGE_SUFFIXES)}) in this "
                         f"{'directory tree' if recursive else 'directory'}")
    names: dict[Path, Path] = {}
    for image in images:
        name = output_name(image, path)
        if name in names:
            raise ValueError(f"{names[name].relative_to(path)} and {image.relative_to(path)} share the stem "
                             f"'{name}': their outputs would collide; pass them one at a time")
        names[name] = image
    return images


def read_rgb(path: str | os.PathLike) -> np.ndarray:
    """uint8 (H, W, 3) RGB pixels of an image file, EXIF orientation applied.
    Raises ValueError (one line) when the file is not a readable image."""
    from PIL import Image, ImageOps, UnidentifiedImageError

    try:
        with Image.open(path) as img:
            img = ImageOps.exif_transpose(img)
            return np.asarray(img.convert("RGB"))
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError) as err:
        detail = str(err).splitlines()[0] if str(err) else type(err).__name__
        raise ValueError(f"{path}: cannot read image ({detail})") from None


def check_out_dir(out_dir: str | os.PathLike) -> None:
    """Raise ValueError (one line) if `out_dir` exists and is not a directory (or lies under a file)."""
    path = Path(out_dir)
    for where in (path, *path.parents):
        if where.exists() and not where.is_dir():
            raise ValueError(f"--out {out_dir}: {where} is a file, not a directory: give a directory for the results")
        if where.exists():
            return


def detect_faces(model: str | os.PathLike | TFLiteDetector, images: Iterable[str | os.PathLike],
                 out_dir: str | os.PathLike,
                 score_threshold: float = DEFAULT_SCORE_THRESHOLD, num_threads: int = 1,
                 on_error: Callable[[ValueError], None] | None = None,
                 root: str | os.PathLike | None = None) -> list[ImageFaces]:
    """Run the detector on each image; write out_dir/<name>.json and out_dir/<name>.jpg (atomically),
    <name> its path relative to `root` without suffix (default: its stem; see `output_name`).

    model: a TFLiteDetector or the path of an exported .tflite (checked before any image is read:
    FileNotFoundError if missing, ValueError if it is not a detector export).
    Returns the results of the images that were read. An unreadable image raises ValueError, or,
    with `on_error`, is passed to it and skipped.
    """
    from facedet.pipeline.atomic import atomic_path, write_text_atomic
    from facedet.evaluate.plots import draw_boxes
    from facedet.runtime.tflite_detector import TFLiteDetector

    if not 0.0 <= score_threshold <= 1.0:
        raise ValueError(f"score threshold must be in [0, 1], got {score_threshold}")
    check_out_dir(out_dir)
    detector = model if isinstance(model, TFLiteDetector) else TFLiteDetector(model, num_threads=num_threads)
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    results = []
    for image_path in map(Path, images):
        try:
            pixels = read_rgb(image_path)
        except ValueError as err:
            if on_error is None:
                raise
            on_error(err)
            continue
        faces = detector.detect(pixels)
        faces = faces[faces[:, 4] >= score_threshold]
        result = ImageFaces(image_path, pixels.shape[1], pixels.shape[0], faces)
        name = output_name(image_path, Path(root) if root is not None else None)
        (out_dir / name).parent.mkdir(parents=True, exist_ok=True)
        write_text_atomic(out_dir / f"{name}.json", json.dumps(result.to_json(), indent=2) + "\n")
        with atomic_path(out_dir / f"{name}.jpg") as tmp:
            draw_boxes(pixels, np.zeros((0, 4)), faces, min_score=score_threshold).save(tmp, format="JPEG", quality=90)
        results.append(result)
    return results


# ---------------------------------------------------------------------------------------------
# the command (facedet.cli)


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
    parser.add_argument("--threads", type=int, default=1, metavar="N", help="interpreter threads (default 1)")
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
