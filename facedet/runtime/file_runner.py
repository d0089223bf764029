"""Run a face detector over photos and videos and write what `facedet detect` promises (the library
under facedet.cli.detect): list the inputs of a path, read each (EXIF orientation applied), detect,
and write, for each image, OUT/<name>.json

    {"image": "<path as given>", "width": W, "height": H,
     "faces": [{"box_xywh": [x, y, w, h], "score": s}, ...]}

(boxes in pixels of the image as stored, after its EXIF orientation is applied; best first; only
faces with score >= the threshold) and OUT/<name>.jpg with those boxes drawn, each labelled with its
score; for each video, OUT/<name>.mp4 (every frame, boxes drawn) and OUT/<name>.jsonl (one line per
frame: {"frame": i, "time_s": t, "width", "height", "faces": [...]}). A directory is read one level
deep (IMAGE_SUFFIXES, VIDEO_SUFFIXES, sorted by name), or, recursively, its whole tree, each input's
outputs keeping its path relative to that directory (photos/2024/beach.jpg -> OUT/2024/beach.json,
OUT/2024/beach.jpg), as WIDER's event folders need. Nothing is written into the input tree nor over
a file detect did not write (facedet.runtime.output_guard).

Any `facedet.runtime.detector_protocol.Detector` runs here (the command uses the exported `.tflite`).
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from facedet.data.images import read_photo
from facedet.runtime.detector_protocol import Detector
from facedet.runtime.output_guard import OutputGuard

IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp", ".webp")
VIDEO_SUFFIXES = (".mp4", ".avi", ".mov", ".mkv", ".webm", ".m4v")
VIDEO_FOURCC = "mp4v"  # the drawn video: MPEG-4 Part 2 in .mp4, which every OpenCV wheel can write


def is_video(path: Path) -> bool:
    """Whether `path` is read as a video (by its suffix)."""
    return path.suffix.lower() in VIDEO_SUFFIXES


def faces_to_json(faces: np.ndarray) -> list[dict]:
    """(K, 5) pixel `x, y, w, h, score` rows -> [{"box_xywh": [x, y, w, h], "score": s}, ...]."""
    return [{"box_xywh": [round(float(v), 2) for v in row[:4]], "score": round(float(row[4]), 5)} for row in faces]


@dataclass(frozen=True)
class ImageFaces:
    """Faces found in one image: `faces` float32 (K, 5) pixel `x, y, w, h, score`, best first.
    `label`: how the image is named in the JSON (its path as given, or the URL it came from)."""

    image: Path
    width: int
    height: int
    faces: np.ndarray
    label: str | None = None

    def to_json(self) -> dict:
        return {"image": self.label or str(self.image), "width": self.width, "height": self.height,
                "faces": faces_to_json(self.faces)}


def output_name(image: Path, root: Path | None) -> Path:
    """Where an input's outputs go under the output directory, without suffix: its path relative to
    `root` (the directory given) or, for an input given alone, its stem."""
    return image.relative_to(root).with_suffix("") if root is not None else Path(image.stem)


def list_inputs(image_or_dir: str | os.PathLike, recursive: bool = False) -> list[Path]:
    """The image or video itself, or the images and videos inside a directory (by suffix; directly
    inside it, or anywhere in its tree with `recursive`), sorted by relative path; hidden files and
    folders are skipped.

    Raises FileNotFoundError for a missing path, ValueError for a directory without inputs (with a
    hint toward `--recursive` when it holds folders) or with two inputs whose outputs would
    overwrite each other (same stem in the same folder).
    """
    path = Path(image_or_dir)
    if path.is_file():
        return [path]
    if not path.is_dir():
        raise FileNotFoundError(f"{path}: no such image, video or directory")
    suffixes = IMAGE_SUFFIXES + VIDEO_SUFFIXES
    found = path.rglob("*") if recursive else path.iterdir()
    # a link to nowhere (or to itself) is listed too: reading it names it, as any unreadable image
    inputs = sorted((p for p in found if (p.is_file() or p.is_symlink()) and p.suffix.lower() in suffixes
                     and not any(part.startswith(".") for part in p.relative_to(path).parts)),
                    key=lambda p: p.relative_to(path).as_posix())
    if not inputs:
        folders = sorted(p for p in path.iterdir() if p.is_dir() and not p.name.startswith("."))
        hint = (f"; it holds {len(folders)} folder{'s' * (len(folders) != 1)} ({folders[0].name}, ...): "
                f"add --recursive to read them" if folders and not recursive else "")
        raise ValueError(f"{path}: no images ({', '.join(IMAGE_SUFFIXES)}) or videos ({', '.join(VIDEO_SUFFIXES)}) "
                         f"{'in this directory tree' if recursive else 'directly in this directory'}{hint}")
    names: dict[Path, Path] = {}
    for item in inputs:
        name = output_name(item, path)
        if name in names:
            raise ValueError(f"{names[name].relative_to(path)} and {item.relative_to(path)} share the stem "
                             f"'{name}': their outputs would collide; pass them one at a time")
        names[name] = item
    return inputs


def detect_each(detector: Detector, images: Iterable[Path], score_threshold: float,
                on_error: Callable[[ValueError], None] | None = None,
                labels: dict[Path, str] | None = None) -> Iterator[tuple[ImageFaces, np.ndarray, np.ndarray]]:
    """(result, the pixels detected on, their faces) of each image that reads: `result.faces` with score
    >= the threshold in the photo's full-size pixels, the same faces (K, 5) in the detected pixels' frame. The photo is `facedet.data.images.read_photo`'s: as displayed, one larger
    than DETECT_MAX_SIDE detected scaled down (`Photo.scale`). An unreadable or refused image raises
    ValueError, or, with `on_error`, is passed to it and skipped."""
    if not 0.0 <= score_threshold <= 1.0:
        raise ValueError(f"score threshold must be in [0, 1], got {score_threshold}")
    for image_path in images:
        try:
            photo = read_photo(image_path)
        except ValueError as err:
            if on_error is None:
                raise
            on_error(err)
            continue
        found = detector.detect(photo.pixels)
        found = found[found[:, 4] >= score_threshold]
        faces = np.concatenate([found[:, :4] / photo.scale, found[:, 4:]], axis=1).astype(np.float32)
        label = (labels or {}).get(image_path)
        yield ImageFaces(image_path, photo.width, photo.height, faces, label), photo.pixels, found


def draw_faces(pixels: np.ndarray, faces: np.ndarray, score_threshold: float) -> Any:
    """A PIL image of `pixels` with `faces` ((K, 5) pixel x, y, w, h, score in `pixels`' frame) drawn,
    each with its score."""
    from facedet.runtime.drawing import draw_boxes

    return draw_boxes(pixels, np.zeros((0, 4)), faces, min_score=score_threshold, label_scores=True)


def detect_faces(detector: Detector, images: Iterable[str | os.PathLike], out_dir: str | os.PathLike,
                 score_threshold: float, on_error: Callable[[ValueError], None] | None = None,
                 root: str | os.PathLike | None = None, labels: dict[Path, str] | None = None) -> list[ImageFaces]:
    """Run the detector on each image; write out_dir/<name>.json and out_dir/<name>.jpg (atomically),
    <name> its path relative to `root` without suffix (default: its stem; see `output_name`); keep
    faces with score >= `score_threshold`.

    Returns the results of the images that were read (boxes in the photo's full-size pixels; the
    drawing is of the photo as detected, scaled down if it was: see `detect_each`). An unreadable
    image raises ValueError, or, with `on_error`, is passed to it and skipped. Nothing is written into
    `root`, nor over a file in `out_dir` that detect did not write (facedet.runtime.output_guard):
    ValueError before any output.
    """
    from facedet.process.atomic import atomic_path, write_text_atomic

    images = [Path(p) for p in images]
    root = Path(root) if root is not None else None
    guard = OutputGuard(out_dir, [root] if root is not None else [], images)
    names = {image: output_name(image, root) for image in images}
    guard.check(Path(f"{name}{suffix}") for name in names.values() for suffix in (".json", ".jpg"))
    results = []
    for result, pixels, found in detect_each(detector, images, score_threshold, on_error, labels):
        name = names[result.image]
        write_text_atomic(guard.record(Path(f"{name}.json")), json.dumps(result.to_json(), indent=2) + "\n")
        with atomic_path(guard.record(Path(f"{name}.jpg"))) as tmp:
            draw_faces(pixels, found, score_threshold).save(tmp, format="JPEG", quality=90)
        results.append(result)
    return results


@dataclass(frozen=True)
class VideoFaces:
    """What one video gave: its frame count, frame size and the faces found over all frames."""

    video: Path
    frames: int
    width: int
    height: int
    faces: int


def detect_video(detector: Detector, video: Path, guard: OutputGuard, name: Path,
                 score_threshold: float) -> VideoFaces:
    """Run the detector on every frame of `video` (OpenCV VideoCapture, BGR frames turned RGB);
    write `<name>.mp4` (the frames with the faces drawn, at the video's frame rate) and
    `<name>.jsonl` (one JSON line per frame) under the guard's directory, both atomically.
    Raises ValueError (one line) when the file is not a readable video or holds no frame."""
    import cv2

    from facedet.process.atomic import atomic_path

    capture, writer = cv2.VideoCapture(str(video)), None
    try:
        if not capture.isOpened():
            raise ValueError(f"{video}: cannot read video (OpenCV could not open it)")
        fps = capture.get(cv2.CAP_PROP_FPS)
        fps = fps if fps and np.isfinite(fps) and fps > 0 else 25.0
        frames = faces_seen = 0
        size = (0, 0)
        with atomic_path(guard.record(name.with_suffix(".mp4")), suffix=".mp4") as drawn_path, \
                atomic_path(guard.record(name.with_suffix(".jsonl"))) as lines_path, \
                open(lines_path, "w", encoding="utf-8") as lines:
            while (read := capture.read())[0]:
                rgb = np.ascontiguousarray(read[1][:, :, ::-1])
                faces = detector.detect(rgb)
                faces = faces[faces[:, 4] >= score_threshold]
                size = (rgb.shape[1], rgb.shape[0])
                if writer is None:
                    writer = cv2.VideoWriter(str(drawn_path), cv2.VideoWriter_fourcc(*VIDEO_FOURCC), fps, size)
                    if not writer.isOpened():
                        raise ValueError(f"{video}: cannot write the drawn video (OpenCV has no {VIDEO_FOURCC} encoder)")
                drawn = np.asarray(draw_faces(rgb, faces, score_threshold))
                writer.write(np.ascontiguousarray(drawn[:, :, ::-1]))
                lines.write(json.dumps({"frame": frames, "time_s": round(frames / fps, 3), "width": size[0],
                                        "height": size[1], "faces": faces_to_json(faces)}) + "\n")
                frames += 1
                faces_seen += len(faces)
            if writer is None:
                raise ValueError(f"{video}: cannot read video (no frame could be decoded)")
            writer.release()  # the file is complete before it is renamed into place
    finally:
        capture.release()
        if writer is not None:
            writer.release()
    return VideoFaces(video, frames, size[0], size[1], faces_seen)
