"""Native-scale crops, as training on real photos uses them: a square of the photo around a face,
the face keeping its pixel size (times 1/z), boxes on the face, small photos padded, not stretched."""

from __future__ import annotations

import io

import numpy as np
import tensorflow as tf
from PIL import Image

from facedet.model.anchors import anchor_boxes
from facedet.params.sections import AugmentParams
from facedet.train.input import make_dataset
from facedet.train.scale_crop import scale_crop

from face_shards import MATCHING, TINY, write_face_records


def jpeg_with_block(height: int, width: int, block: tuple[int, int, int, int]) -> tuple[bytes, np.ndarray]:
    """A dark JPEG photo with one bright block (y0, x0, y1, x1) px; its box normalised."""
    pixels = np.full((height, width, 3), 20, np.uint8)
    y0, x0, y1, x1 = block
    pixels[y0:y1, x0:x1] = 235
    buffer = io.BytesIO()
    Image.fromarray(pixels).save(buffer, format="JPEG", quality=98)
    return buffer.getvalue(), np.array([[y0 / height, x0 / width, y1 / height, x1 / width]], np.float32)


def test_the_face_keeps_its_pixel_size_at_zoom_one_and_the_box_stays_on_it():
    jpeg, boxes = jpeg_with_block(700, 1024, (300, 500, 340, 532))  # a 32x40 px "face" in a big photo
    whole = 0
    for seed in range(8):
        image, out = scale_crop(tf.constant(jpeg), tf.constant(boxes), tf.constant([seed, 3], tf.int64), 128, 1.0, 1.0)
        image, (ymin, xmin, ymax, xmax) = image.numpy(), out.numpy()[0] * 128
        assert image.shape == (128, 128, 3)
        if min(ymin, xmin) > 0 and max(ymax, xmax) < 128:  # not cut by the window's edge
            whole += 1
            assert abs((ymax - ymin) - 40) < 1.5 and abs((xmax - xmin) - 32) < 1.5, seed  # native size
        assert image[int(ymin) + 2:int(ymax) - 2, int(xmin) + 2:int(xmax) - 2].min() > 200, seed
        assert image[int(ymax) + 3:].max(initial=0) < 200 or ymax > 124, seed
    assert whole >= 4


def test_zoom_shrinks_faces_by_one_over_z():
    jpeg, boxes = jpeg_with_block(700, 1024, (300, 500, 364, 564))
    sizes = []
    for seed in range(8):
        _, out = scale_crop(tf.constant(jpeg), tf.constant(boxes), tf.constant([seed, 1], tf.int64), 128, 2.0, 2.0)
        ymin, xmin, ymax, xmax = out.numpy()[0] * 128
        if min(ymin, xmin) > 0 and max(ymax, xmax) < 128:  # not cut by the window's edge
            sizes.append((ymax - ymin, xmax - xmin))
    assert sizes and np.allclose(sizes, 32, atol=1.5)


def test_a_photo_smaller_than_the_crop_is_padded_grey_not_stretched():
    jpeg, boxes = jpeg_with_block(60, 100, (10, 20, 40, 50))
    image, out = scale_crop(tf.constant(jpeg), tf.constant(boxes), tf.constant([0, 5], tf.int64), 128, 1.0, 1.0)
    image = image.numpy()
    ymin, xmin, ymax, xmax = out.numpy()[0] * 128
    assert abs((ymax - ymin) - 30) < 1.5 and abs((xmax - xmin) - 30) < 1.5  # the photo at its own scale
    grey = np.isclose(image, 127.5, atol=0.01).all(axis=-1)
    assert grey.sum() >= 128 * 128 - 60 * 100 - 10  # everything outside the 60x100 photo is padding


def test_faces_whose_centre_leaves_the_window_are_dropped():
    # Two faces 600 px apart: a 128-px window around one cannot hold the other's centre.
    pixels_jpeg, first = jpeg_with_block(400, 1000, (100, 100, 130, 130))
    second = np.array([[0.25, 0.7, 0.325, 0.73]], np.float32)
    both = np.concatenate([first, second])
    for seed in range(4):
        _, out = scale_crop(tf.constant(pixels_jpeg), tf.constant(both), tf.constant([seed, 9], tf.int64), 128, 1.0, 1.0)
        assert len(out.numpy()) == 1, seed
        assert np.all((out.numpy() >= 0) & (out.numpy() <= 1))


def test_a_photo_without_faces_gives_a_crop_and_no_boxes():
    jpeg, _ = jpeg_with_block(300, 300, (0, 0, 1, 1))
    image, out = scale_crop(tf.constant(jpeg), tf.zeros([0, 4]), tf.constant([2, 2], tf.int64), 64, 0.5, 2.0)
    assert image.shape == (64, 64, 3) and out.shape == (0, 4)


def test_training_with_scale_crop_is_seeded_and_yields_model_sized_batches(tmp_path):
    files = write_face_records(tmp_path, images=8)
    augment = AugmentParams(scale_crop=1.0, scale_crop_min=0.5, scale_crop_max=1.5)

    def first_batches(seed: int):
        dataset = make_dataset(files, anchor_boxes(TINY), 64, 4, training=True, augment=augment, seed=seed, **MATCHING)
        return [images.numpy() for images, _ in dataset.take(2)]

    a, b, c = first_batches(3), first_batches(3), first_batches(4)
    assert a[0].shape == (4, 64, 64, 3)
    assert all(np.array_equal(x, y) for x, y in zip(a, b))
    assert not np.array_equal(a[0], c[0])


def whole_face_sizes(jpeg: bytes, boxes: np.ndarray, z: float, of: str) -> list[tuple[float, float]]:
    """(height, width) px in a 128-px input of the one face, over 24 draws, where the window's edge did not cut it."""
    sizes = []
    for seed in range(24):
        _, out = scale_crop(tf.constant(jpeg), tf.constant(boxes), tf.constant([seed, 7], tf.int64), 128, z, z, of=of)
        for ymin, xmin, ymax, xmax in out.numpy() * 128:
            if min(ymin, xmin) > 0 and max(ymax, xmax) < 128:
                sizes.append((ymax - ymin, xmax - xmin))
    return sizes


def test_short_side_zoom_is_relative_to_the_photo_not_the_input():
    """scale_crop_of: short_side (SCRFD's crops): the side is z x the photo's short side, so a face is
    scaled by input / (z x short side); `input` scales it by 1 / z whatever the photo."""
    for height, width, face, z in [(700, 1024, 32, 0.5), (350, 512, 32, 0.5), (700, 1024, 140, 2.0)]:
        jpeg, boxes = jpeg_with_block(height, width, (200, 300, 200 + face, 300 + face))
        expected = face * 128 / (z * min(height, width))  # 11.7, 23.4 and 12.8 px
        sizes = whole_face_sizes(jpeg, boxes, z, "short_side")
        assert sizes and np.allclose(sizes, expected, atol=1.5), (height, z, sizes)
        sizes = whole_face_sizes(jpeg, boxes, z, "input")
        assert sizes and np.allclose(sizes, face / z, atol=1.5), (height, z, sizes)


def test_training_with_short_side_crops_reads_the_param(tmp_path):
    files = write_face_records(tmp_path, images=8, shards=1)
    batches = []
    for of in ("input", "short_side"):
        augment = AugmentParams(scale_crop=1.0, scale_crop_min=0.3, scale_crop_max=2.0, scale_crop_of=of)
        dataset = make_dataset(files, anchor_boxes(TINY), 64, 4, training=True, augment=augment, seed=2, **MATCHING)
        batches.append(next(iter(dataset))[0].numpy())
    assert batches[0].shape == batches[1].shape == (4, 64, 64, 3)
    assert not np.array_equal(batches[0], batches[1])  # the same draws, another crop side
