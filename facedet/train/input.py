"""tf.data input pipeline: TFRecord shards -> augmented, resized images + SSD targets.

Each element of a training dataset is `(images, targets)`:
images float32 [B, S, S, 3] RGB 0..255 (the model input contract), targets
{'box_targets': float32 [B, A, 4] `(ty, tx, th, tw)`, 'labels': int32 [B, A] in {1, 0, -1}}.
Augmentation (training only): with probability `scale_crop`, a native-scale square crop of the
original photo (facedet.train.scale_crop: faces keep their pixel size up to a zoom z drawn in
[scale_crop_min, scale_crop_max]) instead of the crop / zoom-out below; otherwise SSD random crop (TF OD API style: at least `crop_min_covered` of
some face inside the window; or the SSD paper's window IoU >= `crop_min_iou` with some face),
horizontal flip, photometric jitter (brightness, contrast, saturation), random zoom-out (image
shrunk onto a grey canvas). Random ops are stateless and seeded per example from one seeded
stream, so a seed makes the stream reproducible, and `skip` resumes it exactly where it stopped.
"""

from __future__ import annotations

import tensorflow as tf

from facedet.data.tfrecord_schema import parse_example
from facedet.model.boxes import corners_to_centre
from facedet.model.losses import assign_targets, assign_targets_atss
from facedet.model.ssd import resize_for_model
from facedet.params.sections import AugmentParams
from facedet.train.scale_crop import PAD_VALUE, scale_crop



def _uniform(seed: tf.Tensor, index: int, low: float = 0.0, high: float = 1.0) -> tf.Tensor:
    return tf.random.stateless_uniform([], seed=seed + index, minval=low, maxval=high)


def _random_crop(image, boxes, seed, cfg: AugmentParams):
    """SSD random crop. image uint8 (H, W, 3); boxes (N, 4) normalised `[ymin, xmin, ymax, xmax]`.
    The window keeps >= crop_min_covered of some face (TF OD API's ssd_random_crop) or, with
    crop_min_iou > 0, overlaps some face with IoU >= crop_min_iou (the SSD paper).
    Faces whose centre leaves the crop are dropped; the rest are clipped to it."""
    if cfg.crop_min_iou > 0:
        begin, size = _iou_crop_window(tf.shape(image), boxes, seed, cfg)
    else:
        begin, size, _ = tf.image.stateless_sample_distorted_bounding_box(
            tf.shape(image), bounding_boxes=boxes[None], seed=seed,
            min_object_covered=cfg.crop_min_covered, aspect_ratio_range=(0.5, 2.0),
            area_range=(cfg.crop_min_area, 1.0), max_attempts=50, use_image_if_no_bounding_boxes=True)
    shape = tf.cast(tf.shape(image)[:2], tf.float32)
    y0, x0 = tf.cast(begin[0], tf.float32) / shape[0], tf.cast(begin[1], tf.float32) / shape[1]
    h, w = tf.cast(size[0], tf.float32) / shape[0], tf.cast(size[1], tf.float32) / shape[1]
    boxes = (boxes - tf.stack([y0, x0, y0, x0])) / tf.stack([h, w, h, w])
    centre = corners_to_centre(boxes)
    inside = (centre[:, 0] > 0) & (centre[:, 0] < 1) & (centre[:, 1] > 0) & (centre[:, 1] < 1)
    boxes = tf.clip_by_value(tf.boolean_mask(boxes, inside), 0.0, 1.0)
    return tf.slice(image, begin, size), boxes


def _iou_crop_window(image_shape, boxes, seed, cfg: AugmentParams):
    """SSD-paper crop window around one random face with IoU u ~ U[crop_min_iou, 1] with it: the face
    box grown by factors ky * kx = 1 / u (random aspect) and shifted at random while it still holds
    the face (clipping to the image only raises the IoU). Sampled directly: the paper's 50 blind
    tries almost never hit WIDER's small faces. No faces: the whole image.
    boxes (N, 4) normalised `[ymin, xmin, ymax, xmax]` -> begin, size as tf.slice wants them (int32 (3,))."""
    u = tf.random.stateless_uniform([5], seed=seed)
    count = tf.shape(boxes)[0]
    pick = tf.minimum(tf.cast(u[0] * tf.cast(count, tf.float32), tf.int32), tf.maximum(count - 1, 0))
    face = tf.concat([boxes, [[0.0, 0.0, 1.0, 1.0]]], 0)[pick]  # no faces: the whole image
    iou = cfg.crop_min_iou + (1.0 - cfg.crop_min_iou) * u[1]
    grow_y = tf.pow(1.0 / iou, u[2])
    grow_x = (1.0 / iou) / grow_y
    h = tf.minimum((face[2] - face[0]) * grow_y, 1.0)
    w = tf.minimum((face[3] - face[1]) * grow_x, 1.0)
    y0 = tf.clip_by_value(face[2] - h + u[3] * (h - (face[2] - face[0])), 0.0, 1.0 - h)
    x0 = tf.clip_by_value(face[3] - w + u[4] * (w - (face[3] - face[1])), 0.0, 1.0 - w)
    window = tf.stack([y0, x0, y0 + h, x0 + w])
    scale = tf.cast(image_shape[:2], tf.float32)
    begin = tf.cast(tf.round(window[:2] * scale), tf.int32)
    size = tf.maximum(tf.cast(tf.round((window[2:] - window[:2]) * scale), tf.int32), 1)
    size = tf.minimum(size, image_shape[:2] - begin)
    return tf.concat([begin, [0]], 0), tf.concat([size, [-1]], 0)


def _flip(image, boxes):
    """Mirror left-right; boxes (N, 4) `[ymin, xmin, ymax, xmax]`."""
    flipped = tf.stack([boxes[:, 0], 1 - boxes[:, 3], boxes[:, 2], 1 - boxes[:, 1]], axis=-1)
    return tf.reverse(image, axis=[1]), flipped


def _photometric(image, seed, cfg: AugmentParams):
    """Brightness / contrast / saturation jitter on a float32 0..255 image."""
    if cfg.brightness > 0:
        image = image + _uniform(seed, 11, -cfg.brightness, cfg.brightness) * 255.0
    if cfg.contrast > 0:
        image = tf.image.adjust_contrast(image, _uniform(seed, 12, 1 - cfg.contrast, 1 + cfg.contrast))
    if cfg.saturation > 0:
        image = tf.image.adjust_saturation(image, _uniform(seed, 13, 1 - cfg.saturation, 1 + cfg.saturation))
    return tf.clip_by_value(image, 0.0, 255.0)


def augment_and_resize(image, boxes, seed, input_size: int, cfg: AugmentParams):
    """One training example: image uint8 (H, W, 3), boxes (N, 4) normalised `[ymin, xmin, ymax, xmax]`,
    seed int (2,) -> float32 (S, S, 3) 0..255 and its boxes (M, 4), same convention."""
    seed = tf.cast(seed, tf.int64)
    boxes = tf.reshape(tf.cast(boxes, tf.float32), [-1, 4])
    if cfg.crop > 0:
        image, boxes = tf.cond(_uniform(seed, 1) < cfg.crop,
                               lambda: _random_crop(image, boxes, seed + 2, cfg), lambda: (image, boxes))
    if cfg.flip > 0:
        image, boxes = tf.cond(_uniform(seed, 3) < cfg.flip, lambda: _flip(image, boxes), lambda: (image, boxes))
    if cfg.zoom_out > 0:
        # Shrink to n x n and paste at a random place on an S x S grey canvas: faces get smaller.
        ratio = tf.where(_uniform(seed, 4) < cfg.zoom_out, _uniform(seed, 5, 1.0, cfg.zoom_out_max), 1.0)
        side = tf.cast(tf.round(input_size / ratio), tf.int32)
        offset_y = tf.cast(tf.floor(_uniform(seed, 6) * tf.cast(input_size - side + 1, tf.float32)), tf.int32)
        offset_x = tf.cast(tf.floor(_uniform(seed, 7) * tf.cast(input_size - side + 1, tf.float32)), tf.int32)
        image = _photometric(tf.image.resize(tf.cast(image, tf.float32), [side, side]), seed, cfg)
        image = tf.image.pad_to_bounding_box(image - PAD_VALUE, offset_y, offset_x, input_size, input_size)
        image = image + PAD_VALUE
        scale = tf.cast(side, tf.float32) / input_size
        shift = tf.cast(tf.stack([offset_y, offset_x, offset_y, offset_x]), tf.float32) / input_size
        boxes = boxes * scale + shift
    else:
        image = _photometric(resize_for_model(image, input_size), seed, cfg)
    image = tf.ensure_shape(image, [input_size, input_size, 3])
    return image, boxes


def augment_example(serialized: tf.Tensor, seed, input_size: int, cfg: AugmentParams):
    """One training example from a serialized tf.Example: a native-scale crop (probability
    `cfg.scale_crop`) or `augment_and_resize` of the whole photo, then flip and photometric jitter.
    -> float32 (S, S, 3) 0..255, boxes (M, 4) normalised `[ymin, xmin, ymax, xmax]`."""
    if cfg.scale_crop <= 0:
        return augment_and_resize(*decode_example(serialized), seed, input_size, cfg)
    seed = tf.cast(seed, tf.int64)
    example = parse_example(serialized)

    def cropped():
        boxes = tf.reshape(tf.cast(example["boxes"], tf.float32), [-1, 4])
        image, boxes = scale_crop(example["image/encoded"], boxes, seed + 20, input_size,
                                  cfg.scale_crop_min, cfg.scale_crop_max, cfg.scale_crop_of)
        if cfg.flip > 0:
            image, boxes = tf.cond(_uniform(seed, 3) < cfg.flip, lambda: _flip(image, boxes),
                                   lambda: (image, boxes))
        return _photometric(image, seed, cfg), boxes

    def whole():
        image = tf.io.decode_jpeg(example["image/encoded"], channels=3)
        return augment_and_resize(image, example["boxes"], seed, input_size, cfg)

    return tf.cond(_uniform(seed, 19) < cfg.scale_crop, cropped, whole)


def decode_example(serialized: tf.Tensor) -> tuple[tf.Tensor, tf.Tensor]:
    """Serialized tf.Example -> image uint8 (H, W, 3), boxes float32 (N, 4) `[ymin, xmin, ymax, xmax]`."""
    example = parse_example(serialized)
    image = tf.io.decode_jpeg(example["image/encoded"], channels=3)
    return image, example["boxes"]


def make_dataset(files: list[str], anchors, input_size: int, batch_size: int, *, training: bool,
                 positive_iou: float, negative_iou: float, assignment: str, atss_top_k: int,
                 augment: AugmentParams | None = None, seed: int | None = None,
                 level_counts: tuple[int, ...] = (), shuffle_buffer: int = 2048, skip: int = 0) -> tf.data.Dataset:
    """Batched `(images, targets)` from TFRecord `files` (see the module docstring).

    anchors: float32 (A, 4) normalised `[ymin, xmin, ymax, xmax]` (facedet.model.anchors.anchor_boxes).
    assignment: 'iou' (`assign_targets` with the two thresholds) or 'atss' (`assign_targets_atss`,
    `atss_top_k` candidates per level; level_counts: anchors per level, `level_anchor_counts`).
    The matching and `augment` (params.yaml `train.augment`, needed when training) come from the caller: training
    passes params.yaml `train`'s values.
    training: shuffle, repeat forever, augment, drop the last partial batch; otherwise one pass in
    file order with no augmentation.
    skip (training): drop the first `skip` examples of the stream before decoding them, so a run
    resumed after n steps of batch b (skip = n * b) sees exactly the batches it would have seen.
    """
    if not files:
        raise FileNotFoundError("no TFRecord shards given")
    if training and augment is None:
        raise ValueError("a training dataset needs its augmentation (params.yaml train.augment)")
    anchors = tf.constant(anchors, tf.float32)

    def with_targets(image, boxes):
        if assignment == "atss":
            box_targets, labels = assign_targets_atss(boxes, anchors, level_counts, top_k=atss_top_k)
        else:
            box_targets, labels = assign_targets(boxes, anchors, positive_iou, negative_iou)
        return image, {"box_targets": box_targets, "labels": labels}

    records = tf.data.TFRecordDataset(files, num_parallel_reads=min(len(files), 4) if training else None)
    if training:
        records = records.shuffle(shuffle_buffer, seed=seed, reshuffle_each_iteration=True).repeat()
        seeds = tf.data.Dataset.random(seed=seed).batch(2)
        examples = tf.data.Dataset.zip(records, seeds).skip(skip).map(
            lambda r, s: augment_example(r, s, input_size, augment),
            num_parallel_calls=tf.data.AUTOTUNE, deterministic=True)
    else:
        examples = records.map(
            lambda r: _resize_only(*decode_example(r), input_size), num_parallel_calls=tf.data.AUTOTUNE)
    examples = examples.map(with_targets, num_parallel_calls=tf.data.AUTOTUNE, deterministic=True)
    return examples.batch(batch_size, drop_remainder=training).prefetch(tf.data.AUTOTUNE)


def _resize_only(image, boxes, input_size: int):
    return resize_for_model(image, input_size), tf.reshape(tf.cast(boxes, tf.float32), [-1, 4])
