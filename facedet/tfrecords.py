"""The TF Object Detection API tf.Example schema (the keys `TfExampleDecoder` reads).

Boxes in records are normalised `[ymin, xmin, ymax, xmax]` in [0, 1], stored as four float lists;
labels are 1-based int64 (face = 1).
"""

from __future__ import annotations

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
