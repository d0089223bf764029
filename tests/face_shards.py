"""Synthetic face scenes written as TFRecord shards with the TF OD API keys, and TINY, the smallest
detector config the input and training tests train on them with. Made by the tests, never downloaded."""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
import tensorflow as tf
from PIL import Image, ImageDraw

from facedet.data.tfrecord_schema import list_shards
from facedet.model.config import DetectorConfig

TINY = DetectorConfig(input_size=64, alpha=0.35, feature_strides=(8, 16, 32, 64), min_scale=0.1, max_scale=0.7,
                      aspect_ratios=(1.0,), interpolated_scale=True, head_channels=16)
# what training passes from params.yaml `train` (its defaults)
MATCHING = {"positive_iou": 0.5, "negative_iou": 0.4, "assignment": "iou", "atss_top_k": 9}


def face_scene(rng: np.random.Generator, height: int, width: int, faces: int):
    """A noisy image with `faces` bright ellipses with two dark eyes; boxes (N, 4) normalised
    `[ymin, xmin, ymax, xmax]`."""
    image = Image.fromarray(rng.integers(0, 90, (height, width, 3), dtype=np.uint8))
    draw = ImageDraw.Draw(image)
    boxes = []
    for _ in range(faces):
        side = int(rng.integers(min(height, width) // 5, min(height, width) // 2))
        y, x = int(rng.integers(0, height - side)), int(rng.integers(0, width - side))
        draw.ellipse([x, y, x + side, y + side], fill=(230, 180, 150))
        eye = max(side // 8, 1)
        for ex in (x + side // 3, x + 2 * side // 3):
            draw.ellipse([ex - eye, y + side // 3 - eye, ex + eye, y + side // 3 + eye], fill=(20, 20, 20))
        boxes.append([y / height, x / width, (y + side) / height, (x + side) / width])
    return np.asarray(image), np.asarray(boxes, np.float32).reshape(-1, 4)


def write_face_records(directory: Path, split: str = "train", images: int = 12, shards: int = 2, seed: int = 0):
    """Write `<split>.record-0000i-of-0000n` shards of synthetic face scenes with the TF OD API keys."""
    rng = np.random.default_rng(seed)
    writers = [tf.io.TFRecordWriter(str(directory / f"{split}.record-{i:05d}-of-{shards:05d}")) for i in range(shards)]
    for index in range(images):
        height, width = int(rng.integers(80, 160)), int(rng.integers(80, 160))
        pixels, boxes = face_scene(rng, height, width, faces=int(rng.integers(0, 4)))
        jpeg = io.BytesIO()
        Image.fromarray(pixels).save(jpeg, format="JPEG", quality=95)
        floats = lambda v: tf.train.Feature(float_list=tf.train.FloatList(value=list(v)))  # noqa: E731
        ints = lambda v: tf.train.Feature(int64_list=tf.train.Int64List(value=list(v)))  # noqa: E731
        raw = lambda v: tf.train.Feature(bytes_list=tf.train.BytesList(value=list(v)))  # noqa: E731
        feature = {
            "image/encoded": raw([jpeg.getvalue()]), "image/format": raw([b"jpeg"]),
            "image/filename": raw([f"{index}.jpg".encode()]), "image/source_id": raw([str(index).encode()]),
            "image/height": ints([height]), "image/width": ints([width]),
            "image/object/bbox/ymin": floats(boxes[:, 0]), "image/object/bbox/xmin": floats(boxes[:, 1]),
            "image/object/bbox/ymax": floats(boxes[:, 2]), "image/object/bbox/xmax": floats(boxes[:, 3]),
            "image/object/class/label": ints([1] * len(boxes)), "image/object/class/text": raw([b"face"] * len(boxes)),
        }
        example = tf.train.Example(features=tf.train.Features(feature=feature))
        writers[index % shards].write(example.SerializeToString())
    for writer in writers:
        writer.close()
    return list_shards(directory, split)
