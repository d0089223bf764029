"""Face and image filters applied to parsed WIDER records, with counted reasons.

Every image is read once from its zip, in worker processes: a header check (`facedet.data.images.read_header`:
Pillow's `verify()`) gives its real width/height as displayed (EXIF orientation applied: annotations are
made on that view), mode and format (from the file, not the annotation), then a
full decode exactly as training will decode it (`facedet.data.image_check`: libjpeg's warnings count as
damage). Images that cannot be used are skipped, counted by reason (missing from the zip,
unreadable, truncated, corrupt, unsupported mode, too small) and the broken ones named in the stats;
kept images that are not upright RGB/grayscale JPEGs (CMYK JPEGs, PNGs, RGBA or palette images, EXIF-rotated
photos) are counted under `images_reencoded`: the shard stage stores them re-encoded as upright RGB JPEGs.
Faces are WIDER pixel boxes `x1, y1, w, h`; kept boxes are clipped to the image when
`clip_to_image` is set. Per split the kept images and faces are written as two CSV tables
(`<split>_images.csv`, `<split>_faces.csv`) and the counts as a metrics dict.
"""

from __future__ import annotations

import multiprocessing
import multiprocessing.pool
import os
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from facedet.data.image_check import decode_problem
from facedet.data.images import CONVERTIBLE_MODES, ImageError, read_header
from facedet.data.wider_archive import WiderArchive
from facedet.data.wider_gt import FACE_COLUMNS, WiderRecord
from facedet.model.boxes import clip_pixel_xyxy, pixel_xywh_to_xyxy, pixel_xyxy_to_xywh
from facedet.params.sections import FilterParams
from facedet.process.lifetime import die_with_parent

SUPPORTED_MODES = CONVERTIBLE_MODES  # what the shard stage can store as RGB
# reasons, in the order they are checked (a face/image is counted under the first that applies)
FACE_REASONS = ("degenerate", "invalid", "outside_image", "too_small", "blur", "occlusion", "atypical_pose",
                "image_dropped")
IMAGE_REASONS = ("missing", "unreadable", "truncated", "corrupt", "unsupported_mode", "too_small_image",
                 "no_faces_left")
BROKEN_REASONS = ("missing", "unreadable", "truncated", "corrupt", "unsupported_mode")  # named in the stats
REENCODE_REASONS = ("cmyk", "not_jpeg", "exif_orientation")
IMAGE_COLUMNS = ("image", "width", "height", "mode", "format", "faces")


@dataclass
class FilteredImage:
    """One kept image: image 'event/name.jpg', real width/height (px) and its kept faces as
    boxes_xywh float32 (N, 4) pixel x1, y1, w, h (clipped to the image if clip_to_image)."""

    image: str
    width: int
    height: int
    boxes_xywh: np.ndarray
    mode: str = "RGB"
    format: str = "JPEG"


@dataclass
class ImageInfo:
    """What the header check found: size, mode and format, or why the image is unusable."""

    width: int = 0
    height: int = 0
    mode: str = ""
    format: str = ""
    orientation: int = 1  # EXIF orientation: width and height above are as displayed
    problem: str = ""  # '' or one of BROKEN_REASONS
    detail: str = ""  # the decoder's message, for a broken image


def inspect_image(data: bytes | None) -> ImageInfo:
    """Header check of encoded image bytes (real size, mode, format), then the full decode check
    (`image_check.decode_problem`: the image decodes completely and cleanly as training decodes it)."""
    if data is None:
        return ImageInfo(problem="missing")
    try:
        header = read_header(data, "image")
    except ImageError as err:
        return ImageInfo(problem="unreadable", detail=(err.detail or str(err))[:200])
    mode, fmt = header.mode, header.format
    info = ImageInfo(width=header.width, height=header.height, mode=mode, format=fmt, orientation=header.orientation)
    if mode in SUPPORTED_MODES:
        reencoded = bool(reencode_reason(mode, fmt, header.orientation))
        info.problem, info.detail = decode_problem(data, fmt, reencoded=reencoded)
    return info


def reencode_reason(mode: str, fmt: str, orientation: int = 1) -> str:
    """'' if the shard stage can store the bytes untouched, else why it re-encodes them."""
    if orientation != 1:
        return "exif_orientation"
    if fmt.upper() != "JPEG":
        return "not_jpeg"
    return "cmyk" if mode == "CMYK" else ""  # JPEGs are RGB, L or CMYK


def filter_faces(gt_rows: np.ndarray, width: int, height: int, params: FilterParams) -> tuple[np.ndarray, Counter]:
    """Apply the face filters to int (N, 10) gt rows of an image of real size width x height.

    Returns (kept rows as int64 (K, 10), boxes clipped if clip_to_image; Counter of drop reasons).
    """
    dropped: Counter = Counter()
    kept = []
    for row in np.asarray(gt_rows, np.int64).reshape(-1, 10):
        _x, _y, w, h, blur, _expr, _illum, invalid, occlusion, pose = (int(v) for v in row)
        row = row.copy()
        if w <= 0 or h <= 0:
            dropped["degenerate"] += 1
            continue
        if params.drop_invalid and invalid:
            dropped["invalid"] += 1
            continue
        corners = pixel_xywh_to_xyxy(row[:4])
        if params.clip_to_image:
            row[:4] = pixel_xyxy_to_xywh(clip_pixel_xyxy(corners, height, width))
            if row[2] <= 0 or row[3] <= 0:
                dropped["outside_image"] += 1
                continue
        elif corners[0] >= width or corners[1] >= height or corners[2] <= 0 or corners[3] <= 0:
            dropped["outside_image"] += 1
            continue
        if min(row[2], row[3]) < params.min_face_px:
            dropped["too_small"] += 1
            continue
        if blur > params.max_blur:
            dropped["blur"] += 1
            continue
        if occlusion > params.max_occlusion:
            dropped["occlusion"] += 1
            continue
        if params.drop_atypical_pose and pose:
            dropped["atypical_pose"] += 1
            continue
        kept.append(row)
    return np.asarray(kept, np.int64).reshape(-1, 10), dropped


def _inspect_member(args: tuple[WiderArchive, str, str]) -> ImageInfo:
    archive, split, image = args
    try:
        data = archive.read_image(split, image)
    except FileNotFoundError:
        data = None
    return inspect_image(data)


def image_workers(workers: int) -> multiprocessing.pool.Pool:
    """A pool of `workers` processes for `inspect_images`. Spawned, not forked: each starts
    TensorFlow for the decode check, which must not be inherited from (or started in) this process;
    they die with this process (`die_with_parent`), so a killed stage leaves none behind."""
    return multiprocessing.get_context("spawn").Pool(workers, initializer=die_with_parent)


def inspect_images(archive: WiderArchive, split: str, images: list[str], workers: int = 1,
                   progress=None, pool: multiprocessing.pool.Pool | None = None) -> list[ImageInfo]:
    """Check every image of `split` (in order): header, then full decode, in worker processes
    (`pool`, else a pool of `workers` made for this call). progress(n) is told of each image done."""
    if pool is None:
        with image_workers(workers) as own_pool:
            return inspect_images(archive, split, images, progress=progress, pool=own_pool)
    infos = []
    for info in pool.imap(_inspect_member, [(archive, split, image) for image in images], chunksize=16):
        infos.append(info)
        if progress:
            progress(1)
    return infos


def filter_split(records: list[WiderRecord], infos: list[ImageInfo], params: FilterParams
                 ) -> tuple[pd.DataFrame, pd.DataFrame, dict[str, Any]]:
    """Filter one split. records and infos are parallel (infos from `inspect_images`).

    Returns (images table, faces table, stats). Tables are sorted by image path; faces keep
    their file order within an image. Face boxes: pixel x1, y1, w, h.
    """
    image_rows, face_rows = [], []
    face_drops: Counter = Counter()
    image_drops: Counter = Counter()
    broken: list[dict[str, str]] = []
    reencoded: Counter = Counter()
    faces_in = 0
    for rec, info in sorted(zip(records, infos), key=lambda item: item[0].image):
        n_faces = len(rec.gt_rows)
        faces_in += n_faces
        problem = info.problem
        if not problem and info.mode not in SUPPORTED_MODES:
            problem = "unsupported_mode"
        if not problem and min(info.width, info.height) < params.min_image_px:
            problem = "too_small_image"
        kept = np.zeros((0, 10), np.int64)
        if not problem:
            kept, drops = filter_faces(rec.gt_rows, info.width, info.height, params)
            face_drops.update(drops)
            if len(kept) == 0 and not params.keep_empty_images:
                problem = "no_faces_left"  # its faces are already counted under their reasons
        if problem:
            image_drops[problem] += 1
            if problem in BROKEN_REASONS:
                broken.append({"image": rec.image, "reason": problem, "detail": info.detail or info.mode})
            if problem != "no_faces_left":
                face_drops["image_dropped"] += n_faces
            continue
        image_rows.append((rec.image, info.width, info.height, info.mode, info.format, len(kept)))
        if reason := reencode_reason(info.mode, info.format, info.orientation):
            reencoded[reason] += 1
        face_rows.extend((rec.image, *(int(v) for v in row)) for row in kept)
    images = pd.DataFrame(image_rows, columns=list(IMAGE_COLUMNS))
    faces = pd.DataFrame(face_rows, columns=["image", *FACE_COLUMNS])
    stats = {
        "images_in": len(records),
        "images_kept": len(images),
        "faces_in": faces_in,
        "faces_kept": len(faces),
        "images_dropped": {r: int(image_drops[r]) for r in IMAGE_REASONS},
        "faces_dropped": {r: int(face_drops[r]) for r in FACE_REASONS},
        "images_reencoded": {r: int(reencoded[r]) for r in REENCODE_REASONS},
        "broken_images": broken,
    }
    return images, faces, stats


def write_tables(images: pd.DataFrame, faces: pd.DataFrame, interim_dir: str | os.PathLike, split: str) -> None:
    """Write `<split>_images.csv` and `<split>_faces.csv` into `interim_dir` (deterministic text)."""
    interim_dir = Path(interim_dir)
    interim_dir.mkdir(parents=True, exist_ok=True)
    images.to_csv(interim_dir / f"{split}_images.csv", index=False, lineterminator="\n")
    faces.to_csv(interim_dir / f"{split}_faces.csv", index=False, lineterminator="\n")


def load_filtered(interim_dir: str | os.PathLike, split: str) -> list[FilteredImage]:
    """The kept images of `split` with their faces (boxes_xywh float32 (N, 4) pixel x1, y1, w, h)."""
    interim_dir = Path(interim_dir)
    images = pd.read_csv(interim_dir / f"{split}_images.csv", keep_default_na=False)
    faces = pd.read_csv(interim_dir / f"{split}_faces.csv", keep_default_na=False)
    boxes_by_image: dict[str, np.ndarray] = {
        name: group[["x1", "y1", "w", "h"]].to_numpy(np.float32) for name, group in faces.groupby("image", sort=False)
    }
    empty = np.zeros((0, 4), np.float32)
    return [FilteredImage(image=str(row.image), width=int(row.width), height=int(row.height),
                          boxes_xywh=boxes_by_image.get(row.image, empty), mode=str(row.mode),
                          format=str(row.format))
            for row in images.itertuples(index=False)]


SIZE_BINS = (0, 8, 16, 24, 32, 48, 64, 96, 128, 192, 256, 384, 512, 1_000_000)


def face_size_histogram(faces_by_split: dict[str, pd.DataFrame]) -> pd.DataFrame:
    """Kept faces per size bin (min(w, h) px, lower edge) and split, for a DVC plot."""
    out = pd.DataFrame({"min_side_px": list(SIZE_BINS[:-1])})
    for split, faces in faces_by_split.items():
        side = np.minimum(faces["w"].to_numpy(), faces["h"].to_numpy()) if len(faces) else np.zeros(0)
        counts, _ = np.histogram(side, bins=SIZE_BINS)
        out[split] = counts.astype(int)
    return out


def counts_by_source(records: list[WiderRecord], images: pd.DataFrame, faces: pd.DataFrame,
                     sources: dict[str, str], main: str) -> dict[str, dict[str, int]]:
    """Images and faces in and kept per source of one split: an image is its event's source
    (`sources`: event -> source name) or, for any other event, the main source `main`."""
    def source_of(image: str) -> str:
        return sources.get(image.split("/", 1)[0], main)

    out: dict[str, dict[str, int]] = {}
    for name in [main, *sorted(set(sources.values()))]:
        out[name] = {"images_in": 0, "images_kept": 0, "faces_in": 0, "faces_kept": 0}
    for rec in records:
        out[source_of(rec.image)]["images_in"] += 1
        out[source_of(rec.image)]["faces_in"] += len(rec.gt_rows)
    for column, table in (("images_kept", images["image"]), ("faces_kept", faces["image"])):
        for name, count in Counter(map(source_of, table)).items():
            out[name][column] += count
    return out


class EmptySplitError(ValueError):
    """The filter left a split with no images or no faces; the message names the params that did it."""


# the param behind each drop reason (reasons not listed are the data's own fault)
REASON_PARAMS = {"invalid": "drop_invalid", "outside_image": "clip_to_image", "too_small": "min_face_px",
                 "blur": "max_blur", "occlusion": "max_occlusion", "atypical_pose": "drop_atypical_pose",
                 "too_small_image": "min_image_px", "no_faces_left": "keep_empty_images"}


def check_not_empty(split: str, stats: dict[str, Any], params: FilterParams) -> None:
    """Raise EmptySplitError when `split` kept no image or no face: training on it would learn
    nothing (or crash), and evaluating on it would score nothing."""
    if stats["images_kept"] and stats["faces_kept"]:
        return
    what = "images" if not stats["images_kept"] else "faces"
    drops = {**stats["images_dropped"], **stats["faces_dropped"]} if what == "images" else stats["faces_dropped"]
    causes = sorted(((n, r) for r, n in drops.items() if n and r != "image_dropped"), reverse=True)
    named = [f"filter.{REASON_PARAMS[r]}: {getattr(params, REASON_PARAMS[r])!r} dropped {n}"
             for n, r in causes if r in REASON_PARAMS]
    other = [f"{r}: {n}" for n, r in causes if r not in REASON_PARAMS]
    why = "; ".join(named + other) or f"the split has {stats['images_in']} images and {stats['faces_in']} faces"
    raise EmptySplitError(f"{split}: no {what} left after filtering ({stats[f'{what}_in']} in; {why}): "
                          "relax those params in params.yaml")


def run_filter(archive: WiderArchive, params: FilterParams, interim_dir: str | os.PathLike,
               splits: tuple[str, ...] = ("train", "val"), progress=None) -> tuple[dict[str, Any], pd.DataFrame]:
    """Filter every split of `archive` into `interim_dir`; returns (stats per split, size histogram)."""
    stats: dict[str, Any] = {}
    faces_by_split = {}
    records = {split: archive.records(split) for split in splits}  # every gt txt parsed before any image
    with image_workers(params.workers) as pool:
        for split in splits:
            infos = inspect_images(archive, split, [r.image for r in records[split]], progress=progress, pool=pool)
            images, faces, stats[split] = filter_split(records[split], infos, params)
            check_not_empty(split, stats[split], params)
            if split == "train" and (sources := archive.train_sources()):  # extra sources joined the train split
                stats[split]["by_source"] = counts_by_source(records[split], images, faces, sources,
                                                             archive.main_source())
            write_tables(images, faces, interim_dir, split)
            faces_by_split[split] = faces
    return stats, face_size_histogram(faces_by_split)
