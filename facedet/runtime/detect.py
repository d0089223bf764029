"""Run a face detector over photos and write what `facedet detect` promises (the library under
facedet.cli.detect): list the images of a path, read each (EXIF orientation applied), detect, and
write, for each image, OUT/<name>.json

    {"image": "<path as given>", "width": W, "height": H,
     "faces": [{"box_xywh": [x, y, w, h], "score": s}, ...]}

(boxes in pixels of the image as stored, after its EXIF orientation is applied; best first; only
faces with score >= the threshold) and OUT/<name>.jpg with those boxes drawn. A directory is read
one level deep (.jpg, .jpeg, .png, .bmp, .webp, sorted by name), or, recursively, its whole tree,
each image's outputs keeping its path relative to that directory (photos/2024/beach.jpg ->
OUT/2024/beach.json, OUT/2024/beach.jpg), as WIDER's event folders need.

Any `facedet.runtime.detector.Detector` runs here (the command uses the exported `.tflite`).
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from facedet.runtime.detector import Detector
from facedet.runtime.output_guard import OutputGuard

IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp", ".webp")


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


def detect_faces(detector: Detector, images: Iterable[str | os.PathLike], out_dir: str | os.PathLike,
                 score_threshold: float, on_error: Callable[[ValueError], None] | None = None,
                 root: str | os.PathLike | None = None) -> list[ImageFaces]:
    """Run the detector on each image; write out_dir/<name>.json and out_dir/<name>.jpg (atomically),
    <name> its path relative to `root` without suffix (default: its stem; see `output_name`); keep
    faces with score >= `score_threshold`.

    Returns the results of the images that were read. An unreadable image raises ValueError, or,
    with `on_error`, is passed to it and skipped. Nothing is written into `root`, nor over a file in
    `out_dir` that detect did not write (facedet.runtime.output_guard): ValueError before any output.
    """
    from facedet.pipeline.atomic import atomic_path, write_text_atomic
    from facedet.runtime.drawing import draw_boxes

    if not 0.0 <= score_threshold <= 1.0:
        raise ValueError(f"score threshold must be in [0, 1], got {score_threshold}")
    images = [Path(p) for p in images]
    root = Path(root) if root is not None else None
    guard = OutputGuard(out_dir, [root] if root is not None else [], images)
    names = [output_name(image_path, root) for image_path in images]
    guard.check(Path(f"{name}{suffix}") for name in names for suffix in (".json", ".jpg"))
    results = []
    for image_path, name in zip(images, names):
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
        write_text_atomic(guard.record(Path(f"{name}.json")), json.dumps(result.to_json(), indent=2) + "\n")
        with atomic_path(guard.record(Path(f"{name}.jpg"))) as tmp:
            draw_boxes(pixels, np.zeros((0, 4)), faces, min_score=score_threshold).save(tmp, format="JPEG", quality=90)
        results.append(result)
    return results
