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

from facedet.data.images import read_photo
from facedet.runtime.detector import Detector

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
    # a link to nowhere (or to itself) is listed too: reading it names it, as any unreadable image
    images = sorted((p for p in found if (p.is_file() or p.is_symlink()) and p.suffix.lower() in IMAGE_SUFFIXES
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


def check_out_dir(out_dir: str | os.PathLike) -> None:
    """Raise ValueError (one line) if `out_dir` exists and is not a directory (or lies under a file)."""
    path = Path(out_dir)
    for where in (path, *path.parents):
        if where.exists() and not where.is_dir():
            raise ValueError(f"--out {out_dir}: {where} is a file, not a directory: give a directory for the results")
        if where.exists():
            return


def detect_faces(detector: Detector, images: Iterable[str | os.PathLike], out_dir: str | os.PathLike,
                 score_threshold: float, on_error: Callable[[ValueError], None] | None = None,
                 root: str | os.PathLike | None = None) -> list[ImageFaces]:
    """Run the detector on each image; write out_dir/<name>.json and out_dir/<name>.jpg (atomically),
    <name> its path relative to `root` without suffix (default: its stem; see `output_name`); keep
    faces with score >= `score_threshold`.

    Returns the results of the images that were read (`facedet.data.images.read_photo`: as displayed,
    a photo larger than DETECT_MAX_SIDE detected scaled down, its boxes given in full-size pixels; the
    drawing is of the scaled-down photo). An unreadable or refused image raises ValueError, or, with
    `on_error`, is passed to it and skipped.
    """
    from facedet.pipeline.atomic import atomic_path, write_text_atomic
    from facedet.runtime.drawing import draw_boxes

    if not 0.0 <= score_threshold <= 1.0:
        raise ValueError(f"score threshold must be in [0, 1], got {score_threshold}")
    check_out_dir(out_dir)
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    results = []
    for image_path in map(Path, images):
        try:
            photo = read_photo(image_path)
        except ValueError as err:
            if on_error is None:
                raise
            on_error(err)
            continue
        pixels = photo.pixels  # as displayed; a photo over DETECT_MAX_SIDE scaled down
        drawn = detector.detect(pixels)
        drawn = drawn[drawn[:, 4] >= score_threshold]
        faces = np.concatenate([drawn[:, :4] / photo.scale, drawn[:, 4:]], axis=1).astype(np.float32)
        result = ImageFaces(image_path, photo.width, photo.height, faces)
        name = output_name(image_path, Path(root) if root is not None else None)
        (out_dir / name).parent.mkdir(parents=True, exist_ok=True)
        write_text_atomic(out_dir / f"{name}.json", json.dumps(result.to_json(), indent=2) + "\n")
        with atomic_path(out_dir / f"{name}.jpg") as tmp:
            draw_boxes(pixels, np.zeros((0, 4)), drawn, min_score=score_threshold).save(tmp, format="JPEG", quality=90)
        results.append(result)
    return results
