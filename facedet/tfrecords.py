"""The TF Object Detection API tf.Example schema (the keys `TfExampleDecoder` reads).

Boxes in records are normalised `[ymin, xmin, ymax, xmax]` in [0, 1], stored as four float lists;
labels are 1-based int64 (face = 1).
"""

from __future__ import annotations

import hashlib
import io
import multiprocessing
import os
import shutil
import tempfile
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import numpy as np
import tensorflow as tf

from facedet.params import field_range

FACE_LABEL = 1
FACE_TEXT = b"face"

FEATURES = {
    "image/encoded": tf.io.FixedLenFeature([], tf.string),
    "image/format": tf.io.FixedLenFeature([], tf.string, default_value=b"jpeg"),
    "image/filename": tf.io.FixedLenFeature([], tf.string, default_value=b""),
    "image/source_id": tf.io.FixedLenFeature([], tf.string, default_value=b""),
    "image/key/sha256": tf.io.FixedLenFeature([], tf.string, default_value=b""),
    "image/height": tf.io.FixedLenFeature([], tf.int64),
    "image/width": tf.io.FixedLenFeature([], tf.int64),
    "image/object/bbox/xmin": tf.io.VarLenFeature(tf.float32),
    "image/object/bbox/xmax": tf.io.VarLenFeature(tf.float32),
    "image/object/bbox/ymin": tf.io.VarLenFeature(tf.float32),
    "image/object/bbox/ymax": tf.io.VarLenFeature(tf.float32),
    "image/object/class/label": tf.io.VarLenFeature(tf.int64),
    "image/object/class/text": tf.io.VarLenFeature(tf.string),
}


def parse_example(serialized: tf.Tensor) -> dict[str, tf.Tensor]:
    """Parse one serialized tf.Example into dense tensors.

    Returns 'image/encoded' (scalar string), 'image/height', 'image/width' (int64 scalars),
    'boxes' float32 (N, 4) normalised [ymin, xmin, ymax, xmax], 'labels' int64 (N,) 1-based,
    and 'image/source_id', 'image/filename' strings.
    """
    parsed = tf.io.parse_single_example(serialized, FEATURES)
    coords = [tf.sparse.to_dense(parsed[f"image/object/bbox/{k}"]) for k in ("ymin", "xmin", "ymax", "xmax")]
    return {
        "image/encoded": parsed["image/encoded"],
        "image/height": parsed["image/height"],
        "image/width": parsed["image/width"],
        "image/source_id": parsed["image/source_id"],
        "image/filename": parsed["image/filename"],
        "boxes": tf.stack(coords, axis=-1),
        "labels": tf.sparse.to_dense(parsed["image/object/class/label"]),
    }


# ---------------------------------------------------------------------------------------------
# encoding and sharded writing

PASS_THROUGH_MODES = ("RGB", "L")


@dataclass(frozen=True)
class ShardParams:
    """params.yaml `shard`."""

    train_shards: int = field_range(1, 10_000, default=4)
    val_shards: int = field_range(1, 10_000, default=2)
    workers: int = field_range(1, 64, default=2)
    assignment: Literal["round_robin", "contiguous"] = "round_robin"


def label_map_text() -> str:
    """label_map.pbtxt of the single class (TF OD API format)."""
    return f'item {{\n  name: "{FACE_TEXT.decode()}"\n  id: {FACE_LABEL}\n  display_name: "{FACE_TEXT.decode()}"\n}}\n'


def _bytes(values: list[bytes]) -> tf.train.Feature:
    return tf.train.Feature(bytes_list=tf.train.BytesList(value=values))


def _floats(values: Any) -> tf.train.Feature:
    return tf.train.Feature(float_list=tf.train.FloatList(value=[float(v) for v in values]))


def _ints(values: Any) -> tf.train.Feature:
    return tf.train.Feature(int64_list=tf.train.Int64List(value=[int(v) for v in values]))


def make_example(encoded_jpeg: bytes, image_path: str, width: int, height: int,
                 boxes_xywh: np.ndarray) -> tf.train.Example:
    """A TF OD API tf.Example of one image.

    encoded_jpeg: the JPEG bytes, stored untouched; image_path: 'event/name.jpg' (filename and
    source_id); width/height: real image size in px; boxes_xywh: (N, 4) pixel x1, y1, w, h, stored
    normalised [ymin, xmin, ymax, xmax] clipped to [0, 1], each with label 1 and text 'face'.
    """
    boxes = np.asarray(boxes_xywh, np.float64).reshape(-1, 4)
    x1, y1 = boxes[:, 0], boxes[:, 1]
    xmin = np.clip(x1 / width, 0.0, 1.0)
    xmax = np.clip((x1 + boxes[:, 2]) / width, 0.0, 1.0)
    ymin = np.clip(y1 / height, 0.0, 1.0)
    ymax = np.clip((y1 + boxes[:, 3]) / height, 0.0, 1.0)
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
    return tf.train.Example(features=tf.train.Features(feature=feature))


def jpeg_for_shard(data: bytes, mode: str, fmt: str) -> bytes:
    """The bytes to store: RGB/grayscale JPEGs untouched; anything else (CMYK, PNG...) re-encoded
    once as an RGB JPEG (quality 95) so every decoder reads it."""
    if fmt.upper() == "JPEG" and mode in PASS_THROUGH_MODES:
        return data
    from PIL import Image

    with Image.open(io.BytesIO(data)) as img:
        buf = io.BytesIO()
        img.convert("RGB").save(buf, format="JPEG", quality=95)
    return buf.getvalue()


class ExampleEncoder:
    """Picklable callable FilteredImage -> serialized tf.Example, reading images from a WiderArchive."""

    def __init__(self, archive: Any, split: str):
        self.archive, self.split = archive, split

    def __call__(self, item: Any) -> bytes:
        data = self.archive.read_image(self.split, item.image)
        data = jpeg_for_shard(data, item.mode, item.format)
        return make_example(data, item.image, item.width, item.height, item.boxes_xywh).SerializeToString(deterministic=True)


def shard_paths(output_prefix: str | os.PathLike, num_shards: int) -> list[Path]:
    """'<prefix>-00000-of-00004', ... for `num_shards` shards."""
    prefix = Path(output_prefix)
    return [prefix.with_name(f"{prefix.name}-{i:05d}-of-{num_shards:05d}") for i in range(num_shards)]


def write_shards(output_prefix: str | os.PathLike, examples: Iterable[Any], num_shards: int,
                 encode: Callable[[Any], Any] | None = None, workers: int = 1,
                 assignment: str = "round_robin", chunksize: int = 16) -> list[Path]:
    """Write `examples` into `num_shards` TFRecord files `<output_prefix>-0000i-of-0000n`.

    examples: tf.train.Example protos or serialized bytes, or any items that `encode` (a picklable
    function, run in `workers` processes) turns into those. Example i goes to shard i % n
    (round_robin) or i * n // total (contiguous); results are written in input order, so the bytes
    are identical whatever `workers` is. Atomic: all shards are written into a temporary directory
    and renamed into place only when complete. Returns the shard paths.
    """
    if num_shards < 1:
        raise ValueError(f"num_shards must be >= 1, got {num_shards}")
    if assignment not in ("round_robin", "contiguous"):
        raise ValueError(f"assignment must be 'round_robin' or 'contiguous', got {assignment!r}")
    items = list(examples)
    finals = shard_paths(output_prefix, num_shards)
    parent = finals[0].parent
    parent.mkdir(parents=True, exist_ok=True)
    tmp_dir = Path(tempfile.mkdtemp(prefix=f".{finals[0].name}.tmp-", dir=parent))
    pool = None
    try:
        if encode is not None and workers > 1 and len(items) > 1:
            pool = multiprocessing.get_context("fork").Pool(workers)
            produced = pool.imap(encode, items, chunksize=chunksize)
        elif encode is not None:
            produced = map(encode, items)
        else:
            produced = iter(items)
        writers = [tf.io.TFRecordWriter(str(tmp_dir / p.name)) for p in finals]
        try:
            for i, example in enumerate(produced):
                shard = i % num_shards if assignment == "round_robin" else i * num_shards // len(items)
                if not isinstance(example, (bytes, bytearray)):
                    example = example.SerializeToString(deterministic=True)
                writers[shard].write(bytes(example))
        finally:
            for writer in writers:
                writer.close()
        for final in finals:
            os.replace(tmp_dir / final.name, final)
            os.chmod(final, 0o644)
    finally:
        if pool is not None:
            pool.terminate()
            pool.join()
        shutil.rmtree(tmp_dir, ignore_errors=True)
    return finals
