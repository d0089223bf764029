"""Native-scale square crops: the training input the reference face detectors use (RetinaFace,
YuNet; see ../shared/DESIGN.md §9), so faces are learnt at the size they have in the photo.

Squashing a 1024-px WIDER photo to a 256-px input shrinks every face 4x (most end up under 4 px).
Instead, `scale_crop` cuts a square of `input_size * z` px from the original photo (z drawn
log-uniform in [z_min, z_max]: faces shrink by 1/z, so z = 1 keeps them at native size), placed so
that it holds the centre of a random face, decodes only that window of the JPEG
(`tf.io.decode_and_crop_jpeg`) and resizes it to `input_size`. Where the square overhangs a small
photo, the rest is grey padding (the photo keeps its aspect and its scale 1/z).
Faces whose centre leaves the window are dropped, the rest clipped to it.
With `of='short_side'` the side is z x the photo's short side instead (SCRFD's crops: z in
[0.3, 2.0]), so the faces' scale depends on the photo: input_size / (z x short side).
"""

from __future__ import annotations

import math

import tensorflow as tf

from facedet.model.boxes import corners_to_centre
from facedet.params.sections import AugmentParams

PAD_VALUE = 127.5  # grey: 0 after the model's [-1, 1] normalisation


def scale_crop(encoded_jpeg: tf.Tensor, boxes: tf.Tensor, seed: tf.Tensor, input_size: int,
               z_min: float, z_max: float, of: str = AugmentParams.scale_crop_of) -> tuple[tf.Tensor, tf.Tensor]:
    """encoded_jpeg: scalar string; boxes float32 (N, 4) normalised `[ymin, xmin, ymax, xmax]` of the
    photo; seed int64 (2,) -> image float32 (S, S, 3) RGB 0..255 and boxes (M, 4) normalised in it.
    The crop side is z x `of`: 'input' (input_size px) or 'short_side' (the photo's shorter side)."""
    u = tf.random.stateless_uniform([6], seed=seed)
    shape = tf.io.extract_jpeg_shape(encoded_jpeg)
    height, width = tf.cast(shape[0], tf.float32), tf.cast(shape[1], tf.float32)
    base = tf.minimum(height, width) if of == "short_side" else float(input_size)
    side = base * tf.exp(math.log(z_min) + (math.log(z_max) - math.log(z_min)) * u[0])  # px of the photo
    crop_h, crop_w = tf.minimum(side, height), tf.minimum(side, width)

    count = tf.shape(boxes)[0]
    pick = tf.minimum(tf.cast(u[1] * tf.cast(count, tf.float32), tf.int32), tf.maximum(count - 1, 0))
    # No faces: any window (a "face" centred so that every position holds it).
    face = tf.concat([boxes, [[0.0, 0.0, 1.0, 1.0]]], 0)[tf.where(count > 0, pick, count)]
    centre = corners_to_centre(face)
    centre_y, centre_x = centre[0] * height, centre[1] * width
    reach_y = tf.where(count > 0, crop_h, height)
    reach_x = tf.where(count > 0, crop_w, width)

    def start(centre, reach, crop, full, draw):
        low = tf.clip_by_value(centre - reach, 0.0, full - crop)
        high = tf.clip_by_value(centre, 0.0, full - crop)
        return tf.floor(low + draw * (high - low))

    y0, x0 = start(centre_y, reach_y, crop_h, height, u[2]), start(centre_x, reach_x, crop_w, width, u[3])
    window = tf.cast(tf.stack([y0, x0, tf.floor(crop_h), tf.floor(crop_w)]), tf.int32)
    window = tf.maximum(window, [0, 0, 1, 1])
    crop = tf.io.decode_and_crop_jpeg(encoded_jpeg, window, channels=3)

    to_input = input_size / side  # output px per photo px
    out_h = tf.clip_by_value(tf.cast(tf.round(tf.cast(window[2], tf.float32) * to_input), tf.int32), 1, input_size)
    out_w = tf.clip_by_value(tf.cast(tf.round(tf.cast(window[3], tf.float32) * to_input), tf.int32), 1, input_size)
    offset_y = tf.cast(tf.floor(u[4] * tf.cast(input_size - out_h + 1, tf.float32)), tf.int32)
    offset_x = tf.cast(tf.floor(u[5] * tf.cast(input_size - out_w + 1, tf.float32)), tf.int32)
    image = tf.image.resize(tf.cast(crop, tf.float32), tf.stack([out_h, out_w]), method="bilinear")
    image = tf.image.pad_to_bounding_box(image - PAD_VALUE, offset_y, offset_x, input_size, input_size) + PAD_VALUE
    image = tf.ensure_shape(image, [input_size, input_size, 3])

    # Boxes: photo px -> window -> output, normalised by the input side.
    window_f = tf.cast(window, tf.float32)
    px = boxes * tf.stack([height, width, height, width])
    rel = px - tf.stack([window_f[0], window_f[1], window_f[0], window_f[1]])
    centre = corners_to_centre(rel)  # (N, 4) (ycenter, xcenter, h, w), photo px from the window corner
    centre_in = (centre[:, 0] > 0) & (centre[:, 0] < window_f[2]) & (centre[:, 1] > 0) & (centre[:, 1] < window_f[3])
    rel = tf.boolean_mask(rel, centre_in)
    rel = tf.minimum(tf.maximum(rel, 0.0), tf.stack([window_f[2], window_f[3], window_f[2], window_f[3]]))
    scale_y = tf.cast(out_h, tf.float32) / window_f[2]
    scale_x = tf.cast(out_w, tf.float32) / window_f[3]
    out = rel * tf.stack([scale_y, scale_x, scale_y, scale_x])
    out = out + tf.cast(tf.stack([offset_y, offset_x, offset_y, offset_x]), tf.float32)
    return image, out / input_size
