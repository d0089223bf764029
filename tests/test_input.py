"""The input pipeline, as training uses it: TFRecord shards in, batches of resized images and SSD
targets out; augmentation moves boxes with the pixels; a seed makes the stream reproducible."""

from __future__ import annotations

import numpy as np
import tensorflow as tf

from facedet.model.anchors import anchor_boxes, level_anchor_counts
from facedet.model.losses import assign_targets_atss
from facedet.params.sections import AugmentParams
from facedet.train.input import augment_and_resize, decode_example, make_dataset

from face_shards import MATCHING, TINY, write_face_records

NO_AUGMENT = AugmentParams(flip=0.0, crop=0.0, zoom_out=0.0, brightness=0.0, contrast=0.0, saturation=0.0)


def test_training_batches_have_the_model_input_shape_and_targets_per_anchor(tmp_path):
    files = write_face_records(tmp_path)
    assert len(files) == 2 and files[0].endswith("train.record-00000-of-00002")
    anchors = anchor_boxes(TINY)
    images, targets = next(iter(make_dataset(files, anchors, 64, batch_size=4, training=True, augment=AugmentParams(), seed=1,
                                                **MATCHING)))
    assert images.shape == (4, 64, 64, 3) and images.dtype == tf.float32
    assert 0.0 <= float(tf.reduce_min(images)) and float(tf.reduce_max(images)) <= 255.0
    assert targets["box_targets"].shape == (4, len(anchors), 4)
    assert targets["labels"].shape == (4, len(anchors))
    assert set(np.unique(targets["labels"].numpy())) <= {-1, 0, 1}


def test_atss_assignment_gives_the_same_images_with_adaptive_targets(tmp_path):
    files = write_face_records(tmp_path, images=8)
    anchors = anchor_boxes(TINY)
    fixed, adaptive = (next(iter(make_dataset(files, anchors, 64, 8, training=False, **(MATCHING | matching))))
                       for matching in ({}, {"assignment": "atss", "level_counts": level_anchor_counts(TINY)}))
    np.testing.assert_array_equal(fixed[0].numpy(), adaptive[0].numpy())
    expected = [assign_targets_atss(boxes, anchors, level_anchor_counts(TINY), top_k=9)[1].numpy()
                for _, boxes in (decode_example(r) for r in tf.data.TFRecordDataset(files).take(8))]
    np.testing.assert_array_equal(adaptive[1]["labels"].numpy(), expected)
    assert set(np.unique(adaptive[1]["labels"].numpy())) == {0, 1}  # ATSS ignores no anchor
    assert -1 in fixed[1]["labels"].numpy()


def test_the_same_seed_gives_the_same_augmented_stream(tmp_path):
    files = write_face_records(tmp_path)
    anchors = anchor_boxes(TINY)
    first, second = (next(iter(make_dataset(files, anchors, 64, 4, training=True, augment=AugmentParams(), seed=3,
                                                  **MATCHING))) for _ in range(2))
    np.testing.assert_array_equal(first[0].numpy(), second[0].numpy())
    np.testing.assert_array_equal(first[1]["labels"].numpy(), second[1]["labels"].numpy())


def test_evaluation_pass_reads_every_image_once(tmp_path):
    files = write_face_records(tmp_path, images=10)
    batches = list(make_dataset(files, anchor_boxes(TINY), 64, 4, training=False, **MATCHING))
    assert [b[0].shape[0] for b in batches] == [4, 4, 2]


def test_flip_mirrors_boxes_with_the_pixels():
    image = np.zeros((40, 80, 3), np.uint8)
    image[10:20, 5:25] = 255  # a white block at x 5..25 of 80
    boxes = np.array([[10 / 40, 5 / 80, 20 / 40, 25 / 80]], np.float32)
    flip_only = AugmentParams(flip=1.0, crop=0.0, zoom_out=0.0, brightness=0.0, contrast=0.0, saturation=0.0)
    out, out_boxes = augment_and_resize(image, boxes, tf.constant([1, 2]), 80, flip_only)
    np.testing.assert_allclose(out_boxes.numpy(), [[0.25, 55 / 80, 0.5, 75 / 80]], atol=1e-6)
    assert out.numpy()[30, 65].min() > 200 and out.numpy()[30, 15].max() < 50


def test_crop_and_zoom_out_keep_boxes_on_the_face():
    """Whatever the random crop / zoom-out does, the box still frames the bright block."""
    image = np.zeros((100, 100, 3), np.uint8)
    image[30:70, 40:80] = 255
    boxes = np.array([[0.3, 0.4, 0.7, 0.8]], np.float32)
    cfg = AugmentParams(flip=0.5, crop=1.0, crop_min_covered=0.9, zoom_out=1.0, zoom_out_max=2.0,
                        brightness=0.0, contrast=0.0, saturation=0.0)
    for seed in range(8):
        out, out_boxes = augment_and_resize(image, boxes, tf.constant([seed, 7]), 96, cfg)
        out, (ymin, xmin, ymax, xmax) = out.numpy(), out_boxes.numpy()[0] * 96
        inside = out[int(ymin) + 2:int(ymax) - 2, int(xmin) + 2:int(xmax) - 2]
        assert inside.size and inside.min() > 200, seed
        assert out[int(ymax) + 2:].max(initial=0) < 200 or ymax > 92


def test_no_augment_is_a_plain_resize():
    image = np.full((50, 70, 3), 90, np.uint8)
    boxes = np.array([[0.1, 0.2, 0.5, 0.6]], np.float32)
    out, out_boxes = augment_and_resize(image, boxes, tf.constant([0, 0]), 64, NO_AUGMENT)
    np.testing.assert_allclose(out.numpy(), 90.0, atol=1e-3)
    np.testing.assert_allclose(out_boxes.numpy(), boxes)


def test_min_iou_crop_keeps_a_window_overlapping_a_face_by_that_iou():
    """The SSD paper's crop: the window's IoU with the face >= crop_min_iou, so a small face fills
    at least that fraction of the crop (it is zoomed in on), and the box still frames it."""
    image = np.zeros((200, 200, 3), np.uint8)
    image[80:120, 100:140] = 255  # a 40x40 face: 4% of the image
    boxes = np.array([[0.4, 0.5, 0.6, 0.7]], np.float32)
    cfg = AugmentParams(flip=0.0, crop=1.0, crop_min_iou=0.5, zoom_out=0.0,
                        brightness=0.0, contrast=0.0, saturation=0.0)
    for seed in range(6):
        out, out_boxes = augment_and_resize(image, boxes, tf.constant([seed, 3]), 96, cfg)
        (ymin, xmin, ymax, xmax), = out_boxes.numpy()
        assert (ymax - ymin) * (xmax - xmin) >= 0.5 - 0.05, seed  # face area / window area >= IoU
        out = out.numpy()
        assert out[int(ymin * 96) + 2:int(ymax * 96) - 2, int(xmin * 96) + 2:int(xmax * 96) - 2].min() > 200, seed
    out, out_boxes = augment_and_resize(image, np.zeros((0, 4), np.float32), tf.constant([0, 3]), 96, cfg)
    assert out.shape == (96, 96, 3) and out_boxes.shape == (0, 4)  # no faces: the whole image


def test_photometric_jitter_changes_colours_not_boxes_and_follows_the_seed():
    rng = np.random.default_rng(0)
    image = rng.integers(40, 200, (64, 64, 3), dtype=np.uint8)
    boxes = np.array([[0.2, 0.2, 0.6, 0.6]], np.float32)
    jitter = AugmentParams(flip=0.0, crop=0.0, zoom_out=0.0, brightness=0.2, contrast=0.4, saturation=0.4)
    outs = [augment_and_resize(image, boxes, tf.constant([seed, 0]), 64, jitter) for seed in (1, 1, 2)]
    np.testing.assert_array_equal(outs[0][0].numpy(), outs[1][0].numpy())
    assert np.abs(outs[0][0].numpy() - outs[2][0].numpy()).mean() > 1.0
    assert np.abs(outs[0][0].numpy() - image).mean() > 1.0
    for _, out_boxes in outs:
        np.testing.assert_array_equal(out_boxes.numpy(), boxes)


def test_skip_resumes_the_training_stream_where_it_stopped(tmp_path):
    """A run resumed after 2 steps of batch 4 sees the batches the uninterrupted run saw next."""
    files = write_face_records(tmp_path)
    anchors = anchor_boxes(TINY)
    whole = make_dataset(files, anchors, 64, 4, training=True, augment=AugmentParams(), seed=5, **MATCHING).take(5)
    resumed = make_dataset(files, anchors, 64, 4, training=True, augment=AugmentParams(), seed=5, skip=2 * 4,
                           **MATCHING).take(3)
    for (image_a, target_a), (image_b, target_b) in zip(list(whole)[2:], resumed, strict=True):
        np.testing.assert_array_equal(image_a.numpy(), image_b.numpy())
        np.testing.assert_array_equal(target_a["labels"].numpy(), target_b["labels"].numpy())
