"""What VOC and COCO annotations become: WIDER gt rows (facedet.data.wider_gt), checked against the image.

A box arrives as continuous 0-based pixel corners `x1, y1, x2, y2` (the image spans [0, W] x [0, H]) and
leaves as a WIDER row `x1 y1 w h blur expression illumination invalid occlusion pose` of integers. Boxes
reaching at most `EDGE_TOLERANCE_PX` past the image edge are clipped (exporters write xmax = W + 1, a VOC
off-by-one); further out, or empty, or negative, is an `AnnotationError`. An ignored region (COCO
`iscrowd`, VOC `difficult`) keeps its box with WIDER's `invalid` flag set, as WIDER marks its ignored
faces: the filter drops it from training (`filter.drop_invalid`) and counts it under `invalid`.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from facedet.data.images import ImageError, read_header
from facedet.model.boxes import clip_pixel_xyxy, pixel_xyxy_to_xywh

EDGE_TOLERANCE_PX = 1.0
IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png")  # what the gt txt format (and the shard stage) takes


class AnnotationError(ValueError):
    """A VOC/COCO annotation or its image is unusable; one line: file, then XML element or JSON index."""


@dataclass(frozen=True)
class ImageSize:
    width: int
    height: int


def image_size(data: bytes, where: str) -> ImageSize:
    """Size of encoded image bytes as displayed (EXIF orientation applied, as the filter reads it and
    as labelling tools show the photo), from the header. AnnotationError naming `where` when the
    bytes are not an image."""
    try:
        header = read_header(data, where)
    except ImageError as err:
        detail = (err.detail.splitlines()[0] if err.detail else str(err).removeprefix(f"{where}: "))
        raise AnnotationError(f"{where}: not an image ({detail})") from None
    return ImageSize(header.width, header.height)


def check_size(said: tuple[float, float] | None, real: ImageSize, where: str) -> None:
    """AnnotationError when the annotation's (width, height) disagrees with the image (None: not given)."""
    if said is None or (int(said[0]), int(said[1])) == (real.width, real.height):
        return
    hint = " (an EXIF-rotated photo? annotations are read in the displayed frame, EXIF orientation applied)" \
        if (int(said[0]), int(said[1])) == (real.height, real.width) else ""
    raise AnnotationError(f"{where}: the annotation says {int(said[0])}x{int(said[1])} px, "
                          f"the image is {real.width}x{real.height}{hint}")


def wider_row(x1: float, y1: float, x2: float, y2: float, size: ImageSize, where: str,
              invalid: int = 0, occlusion: int = 0) -> list[int]:
    """The WIDER gt row of a box with continuous 0-based corners, clipped to the image within
    EDGE_TOLERANCE_PX, corners rounded to whole pixels (w, h at least 1)."""
    if not all(math.isfinite(v) for v in (x1, y1, x2, y2)):
        raise AnnotationError(f"{where}: box ({x1}, {y1}, {x2}, {y2}) is not finite")
    if x2 <= x1 or y2 <= y1:
        raise AnnotationError(f"{where}: empty or negative box (x {x1} to {x2}, y {y1} to {y2})")
    tol = EDGE_TOLERANCE_PX
    if x1 < -tol or y1 < -tol or x2 > size.width + tol or y2 > size.height + tol:
        raise AnnotationError(f"{where}: box (x {x1} to {x2}, y {y1} to {y2}) lies outside the "
                              f"{size.width}x{size.height} image")
    clipped = clip_pixel_xyxy(np.array([x1, y1, x2, y2]), size.height, size.width)
    left, top, w, h = pixel_xyxy_to_xywh(np.floor(clipped + 0.5)).astype(int).tolist()
    return [left, top, max(1, w), max(1, h), 0, 0, 0, int(invalid), int(occlusion), 0]


def check_image_name(name: str, where: str) -> str:
    """`name` (a relative posix path) if the gt txt format can carry it: .jpg, .jpeg or .png, no '..'."""
    if not name.lower().endswith(IMAGE_SUFFIXES):
        raise AnnotationError(f"{where}: image {name!r} is not a .jpg, .jpeg or .png file")
    if name.startswith("/") or "\\" in name or any(part in ("", "..") for part in name.split("/")):
        raise AnnotationError(f"{where}: image name {name!r} must be a relative path without '..'")
    if name != name.strip() or "\n" in name or "\r" in name:
        raise AnnotationError(f"{where}: image name {name!r} starts or ends with white space or holds a line break "
                              "(the WIDER gt txt format cannot carry it)")
    return name
