"""The TFRecord format the shard stage writes and training and export read: the TF Object Detection API
tf.Example keys (`TfExampleDecoder`'s), their parsing, the shard file names, and a read-back check.

Boxes in records are normalised `[ymin, xmin, ymax, xmax]` in [0, 1], stored as four float lists;
labels are 1-based int64 (face = 1). Shards are `<split>.record-%05d-of-%05d` (Model Garden's naming).
Its own module, apart from the writer (facedet.data.tfrecord_writer), so that training and export
depend on the format, not on the code that reads WIDER archives and encodes images.
"""

from __future__ import annotations

import glob
import os
from collections.abc import Sequence
from pathlib import Path

import tensorflow as tf

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
    'boxes' float32 (N, 4) normalised `[ymin, xmin, ymax, xmax]`, 'labels' int64 (N,) 1-based,
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


def label_map_text() -> str:
    """label_map.pbtxt of the single class (TF OD API format)."""
    return f'item {{\n  name: "{FACE_TEXT.decode()}"\n  id: {FACE_LABEL}\n  display_name: "{FACE_TEXT.decode()}"\n}}\n'


def list_shards(tfrecord_dir: str | os.PathLike, split: str) -> list[str]:
    """Sorted `<split>.record-?????-of-?????` files in `tfrecord_dir` (empty list if none)."""
    return sorted(glob.glob(str(Path(tfrecord_dir) / f"{split}.record-*-of-*")))


def shard_paths(output_prefix: str | os.PathLike, num_shards: int) -> list[Path]:
    """'<prefix>-00000-of-00004', ... for `num_shards` shards."""
    prefix = Path(output_prefix)
    return [prefix.with_name(f"{prefix.name}-{i:05d}-of-{num_shards:05d}") for i in range(num_shards)]


class CorruptShardError(ValueError):
    """A TFRecord file that does not read back (a checksum fails, a record is cut); one line naming it."""


def check_records_readable(paths: Sequence[str | os.PathLike]) -> int:
    """Read every record of every file in `paths`, each checked against its TFRecord CRCs; returns the
    count. CorruptShardError naming the file and the first record that fails."""
    total = 0
    for path in paths:
        done = 0
        try:
            for batch in tf.data.TFRecordDataset(str(path)).batch(256):
                done += int(batch.shape[0])
        except tf.errors.OpError as err:
            detail = (err.message or type(err).__name__).strip().splitlines()[0][:160]
            raise CorruptShardError(f"{path}: corrupt TFRecord shard, record {done + 1} or soon after does not read "
                                    f"({detail}): `dvc checkout {Path(path).parent}` restores it from the cache, "
                                    "`dvc repro shard` rebuilds it") from None
        total += done
    return total
