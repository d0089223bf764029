"""The shard stage's writer: filtered images -> TF OD API tf.Examples (facedet.data.tfrecord_schema)
in sharded TFRecord files, and a checker that reads the shards back against the filtered table.

The original JPEG bytes are stored untouched, unless the image is not an RGB/grayscale JPEG or
`shard.reencode` / `shard.max_image_side` ask otherwise: then the example says so in `image/transform`
and keeps the original's sha256, size and format under `image/original/*` (keys TfExampleDecoder ignores).
"""

from __future__ import annotations

import hashlib
import io
import multiprocessing
import os
import shutil
import tempfile
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path
from typing import Any, NamedTuple

import numpy as np
import tensorflow as tf
from PIL import Image

from facedet.data.images import TRANSPOSED, open_image, orientation, to_rgb, upright
from facedet.data.tfrecord_schema import FACE_LABEL, FACE_TEXT, shard_paths
from facedet.model.boxes import pixel_xywh_to_corners
from facedet.params.sections import ShardParams
from facedet.process.atomic import remove_stale_temps
from facedet.process.disk import translate_disk_full
from facedet.process.lifetime import die_with_parent

PASS_THROUGH_MODES = ("RGB", "L")


class ShardCheckError(ValueError):
    """A shard does not match the filtered table; the message names the shard and the image."""


class OriginalImage(NamedTuple):
    """What a re-encoded example was made from: sha256 (hex) of the original bytes, its size in
    px as displayed (EXIF orientation applied), its format ('jpeg', 'png', ...) and the transform
    applied ('reencode quality=95', 'reencode exif_transpose orientation=6 quality=95', ...)."""

    sha256: str
    width: int
    height: int
    format: str
    transform: str


def _bytes(values: list[bytes]) -> tf.train.Feature:
    return tf.train.Feature(bytes_list=tf.train.BytesList(value=values))


def _floats(values: Any) -> tf.train.Feature:
    return tf.train.Feature(float_list=tf.train.FloatList(value=[float(v) for v in values]))


def _ints(values: Any) -> tf.train.Feature:
    return tf.train.Feature(int64_list=tf.train.Int64List(value=[int(v) for v in values]))


def _stored_corners(boxes_xywh: np.ndarray, width: int, height: int) -> np.ndarray:
    """float64 (N, 4) pixel x1, y1, w, h in a width x height image -> (N, 4) normalised
    [ymin, xmin, ymax, xmax] clipped to [0, 1], as records store them."""
    return np.clip(pixel_xywh_to_corners(boxes_xywh, height, width), 0.0, 1.0)


def make_example(encoded_jpeg: bytes, image_path: str, width: int, height: int,
                 boxes_xywh: np.ndarray, original: OriginalImage | None = None) -> tf.train.Example:
    """A TF OD API tf.Example of one image.

    encoded_jpeg: the JPEG bytes to store; image_path: 'event/name.jpg' (filename and source_id);
    width/height: size of `encoded_jpeg` in px; boxes_xywh: (N, 4) pixel x1, y1, w, h in that
    image, stored normalised [ymin, xmin, ymax, xmax] clipped to [0, 1], each with label 1 and text
    'face'. original: set when `encoded_jpeg` is not the original file (written as image/transform
    and image/original/{sha256,width,height,format}).
    """
    boxes = np.asarray(boxes_xywh, np.float64).reshape(-1, 4)
    ymin, xmin, ymax, xmax = _stored_corners(boxes, width, height).T
    n = len(boxes)
    name = image_path.encode("utf-8")
    feature = {
        "image/encoded": _bytes([encoded_jpeg]),
        "image/format": _bytes([b"jpeg"]),
        "image/filename": _bytes([name]),
        "image/source_id": _bytes([name]),
        "image/key/sha256": _bytes([hashlib.sha256(encoded_jpeg).hexdigest().encode("ascii")]),
        "image/height": _ints([height]),
        "image/width": _ints([width]),
        "image/object/bbox/xmin": _floats(xmin),
        "image/object/bbox/xmax": _floats(xmax),
        "image/object/bbox/ymin": _floats(ymin),
        "image/object/bbox/ymax": _floats(ymax),
        "image/object/class/label": _ints([FACE_LABEL] * n),
        "image/object/class/text": _bytes([FACE_TEXT] * n),
        "image/object/area": _floats(boxes[:, 2] * boxes[:, 3]),
        "image/object/is_crowd": _ints([0] * n),
        "image/object/difficult": _ints([0] * n),
    }
    if original is not None:
        feature.update({
            "image/transform": _bytes([original.transform.encode("ascii")]),
            "image/original/sha256": _bytes([original.sha256.encode("ascii")]),
            "image/original/width": _ints([original.width]),
            "image/original/height": _ints([original.height]),
            "image/original/format": _bytes([original.format.lower().encode("ascii")]),
        })
    return tf.train.Example(features=tf.train.Features(feature=feature))


class StoredImage(NamedTuple):
    """The bytes a shard stores for an image, their size in px, and the transform ('' if untouched)."""

    data: bytes
    width: int
    height: int
    transform: str


def image_for_shard(data: bytes, width: int, height: int, mode: str, fmt: str, reencode: bool = False,
                    max_side: int = 0, quality: int = 95, name: str = "image") -> StoredImage:
    """The bytes to store for an image of `width` x `height` px as displayed, in `mode`/`fmt` (from the
    filter's header check), so that they decode to what the model must see: upright RGB/grayscale
    JPEGs untouched unless `reencode` is set or their longer side exceeds `max_side` (> 0; downscaled
    to it, aspect kept); anything else (an EXIF-rotated photo, CMYK, PNG...) re-encoded once as an
    upright RGB JPEG at `quality` (facedet.data.images: the orientation applied, the mode converted)."""
    scale = max_side / max(width, height) if max_side and max(width, height) > max_side else 1.0
    size = (max(1, round(width * scale)), max(1, round(height * scale)))
    with open_image(data, name) as img:
        turn = orientation(img)
        if fmt.upper() == "JPEG" and mode in PASS_THROUGH_MODES and not reencode and scale == 1.0 and turn == 1:
            return StoredImage(data, width, height, "")
        steps = ["reencode"]
        if turn != 1:
            steps.append(f"exif_transpose orientation={turn}")
        if size != (width, height):
            # JPEG: let the decoder scale down by 1/2, 1/4, 1/8 first (much faster); in the stored frame
            img.draft("RGB", size[::-1] if turn in TRANSPOSED else size)
            steps.append(f"downscale max_side={max_side}")
        if img.mode not in PASS_THROUGH_MODES:
            steps.append(f"convert {img.mode}->RGB")
        img = to_rgb(upright(img), name) if img.mode not in PASS_THROUGH_MODES else upright(img)
        if img.size != size:
            img = img.resize(size, Image.Resampling.BILINEAR)
        steps.append(f"quality={quality}")
        buf = io.BytesIO()
        img.save(buf, format="JPEG", quality=quality)
    return StoredImage(buf.getvalue(), size[0], size[1], " ".join(steps))


class ExampleEncoder:
    """Picklable callable FilteredImage -> serialized tf.Example, reading images from a WiderArchive;
    `params` (ShardParams) says whether to re-encode or downscale."""

    def __init__(self, archive: Any, split: str, params: ShardParams | None = None):
        self.archive, self.split, self.params = archive, split, params or ShardParams()

    def __call__(self, item: Any) -> bytes:
        data = self.archive.read_image(self.split, item.image)
        p = self.params
        stored = image_for_shard(data, item.width, item.height, item.mode, item.format, p.reencode,
                                 p.max_image_side, p.jpeg_quality, item.image)
        boxes, original = item.boxes_xywh, None
        if stored.transform:
            sx, sy = stored.width / item.width, stored.height / item.height
            boxes = np.asarray(boxes, np.float64).reshape(-1, 4) * (sx, sy, sx, sy)
            original = OriginalImage(hashlib.sha256(data).hexdigest(), item.width, item.height,
                                     item.format.lower(), stored.transform)
        example = make_example(stored.data, item.image, stored.width, stored.height, boxes, original)
        return example.SerializeToString(deterministic=True)


def write_shards(output_prefix: str | os.PathLike, examples: Iterable[Any], num_shards: int,
                 encode: Callable[[Any], Any] | None = None, workers: int = 1,
                 assignment: str = "round_robin") -> list[Path]:
    """Write `examples` into `num_shards` TFRecord files `<output_prefix>-0000i-of-0000n`.

    examples: tf.train.Example protos or serialized bytes, or any items that `encode` (a picklable
    function) turns into those. Example i goes to shard i % n (round_robin) or i * n // total
    (contiguous), in input order within a shard. With `workers` > 1 each worker process encodes and
    writes whole shards (no image bytes cross processes), so the bytes are identical whatever
    `workers` is. Atomic: all shards are written into a temporary directory and renamed into place
    only when complete. Returns the shard paths.
    """
    if num_shards < 1:
        raise ValueError(f"num_shards must be >= 1, got {num_shards}")
    if assignment not in ("round_robin", "contiguous"):
        raise ValueError(f"assignment must be 'round_robin' or 'contiguous', got {assignment!r}")
    items = list(examples)
    finals = shard_paths(output_prefix, num_shards)
    parent = finals[0].parent
    parent.mkdir(parents=True, exist_ok=True)
    tmp_dir = Path(tempfile.mkdtemp(prefix=remove_stale_temps(finals[0]), dir=parent))
    if assignment == "round_robin":
        members = [items[k::num_shards] for k in range(num_shards)]
    else:
        bounds = [-(-k * len(items) // num_shards) for k in range(num_shards + 1)]  # i * n // total == k
        members = [items[bounds[k]:bounds[k + 1]] for k in range(num_shards)]
    jobs = [(tmp_dir / final.name, shard_items, encode) for final, shard_items in zip(finals, members)]
    try:
        workers = min(workers, num_shards) if encode is not None else 1
        if workers > 1 and len(items) > 1:
            with multiprocessing.get_context("fork").Pool(workers, initializer=die_with_parent) as pool:
                pool.map(_write_one_shard, jobs, chunksize=1)
        else:
            for job in jobs:
                _write_one_shard(job)
        for final in finals:
            os.replace(tmp_dir / final.name, final)
            os.chmod(final, 0o644)
    finally:
        shutil.rmtree(tmp_dir, ignore_errors=True)
    return finals


def _write_one_shard(job: tuple[Path, list[Any], Callable[[Any], Any] | None]) -> int:
    """Write one shard file: its items encoded (if `encode`) and serialized, in order."""
    path, shard_items, encode = job
    with translate_disk_full(path), tf.io.TFRecordWriter(str(path)) as writer:
        for item in shard_items:
            example = encode(item) if encode is not None else item
            if not isinstance(example, (bytes, bytearray)):
                example = example.SerializeToString(deterministic=True)
            writer.write(bytes(example))
    return len(shard_items)


def check_shards(paths: Sequence[str | os.PathLike], images: Sequence[Any], atol: float = 1e-6) -> dict[str, int]:
    """Decode every example of `paths` and check it against the filtered table `images`
    (FilteredImage: image, width, height, boxes_xywh pixel x1, y1, w, h): each image exactly once,
    image size, every box (normalised [ymin, xmin, ymax, xmax] within `atol`), label 1 / 'face',
    and image/key/sha256 of the stored bytes. Returns {'examples': n, 'faces': n}; raises
    ShardCheckError naming `shard#record: image` at the first mismatch."""
    expected = {img.image: img for img in images}
    seen: set[str] = set()
    faces = 0
    for path in paths:
        for index, record in enumerate(tf.data.TFRecordDataset(str(path)).as_numpy_iterator()):
            feats = tf.train.Example.FromString(record).features.feature
            source = feats["image/source_id"].bytes_list.value[0].decode("utf-8")

            def fail(what: str) -> ShardCheckError:
                return ShardCheckError(f"{Path(path).name}#{index}: {source}: {what}")

            if source not in expected:
                raise fail("not in the filtered table")
            if source in seen:
                raise fail("written twice")
            seen.add(source)
            img = expected[source]
            encoded = feats["image/encoded"].bytes_list.value[0]
            if feats["image/key/sha256"].bytes_list.value[0].decode() != hashlib.sha256(encoded).hexdigest():
                raise fail("image/key/sha256 is not the sha256 of image/encoded")
            prefix = "image/original/" if "image/original/width" in feats else "image/"
            size = (feats[prefix + "width"].int64_list.value[0], feats[prefix + "height"].int64_list.value[0])
            if size != (img.width, img.height):
                raise fail(f"size {size[0]}x{size[1]}, table says {img.width}x{img.height}")
            got = np.stack([np.asarray(feats[f"image/object/bbox/{k}"].float_list.value, np.float64)
                            for k in ("ymin", "xmin", "ymax", "xmax")], axis=-1).reshape(-1, 4)
            want = _stored_corners(np.asarray(img.boxes_xywh, np.float64).reshape(-1, 4), img.width, img.height)
            if got.shape != want.shape or (len(got) and np.abs(got - want).max() > atol):
                raise fail(f"boxes differ from the table ({len(got)} stored, {len(want)} expected)")
            labels = list(feats["image/object/class/label"].int64_list.value)
            texts = list(feats["image/object/class/text"].bytes_list.value)
            if labels != [FACE_LABEL] * len(want) or texts != [FACE_TEXT] * len(want):
                raise fail("labels are not 1 / 'face' for every box")
            faces += len(want)
    missing = sorted(set(expected) - seen)
    if missing:
        raise ShardCheckError(f"{len(missing)} images of the table are in no shard, e.g. {missing[0]}")
    return {"examples": len(seen), "faces": faces}
