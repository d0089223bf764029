"""A tiny stand-in for the SSD detector (same contract as facedet.model.ssd), for export/runner tests.

Input float32 [B, 64, 64, 3] pixels 0..255; an 8x8 grid of cells (8 px each), 2 anchors per cell
(square, sides 0.125 and 0.25 of the input), A = 128, in facedet.model.anchors order (row, column,
anchor type). The face logit of a cell grows with its brightness, so a bright square on a dark
background is "a face" at the anchors under it; box encodings are a small random function of
the cell colour (or exactly zero: decoded boxes are then the anchors themselves). Its class logits
are two levels concatenated (grid rows 0-3, then 4-7), like the detector's.
"""

from __future__ import annotations

import keras
import numpy as np

SIZE = 64
GRID = 8
ANCHOR_SIDES = (0.125, 0.25)


def build_standin(zero_boxes: bool = False, seed: int = 0) -> keras.Model:
    image = keras.Input((SIZE, SIZE, 3), name="image")
    x = keras.layers.Rescaling(1 / 127.5, offset=-1.0)(image)
    cells = keras.layers.AveragePooling2D(SIZE // GRID)(x)  # (8, 8, 3), values in [-1, 1]
    k = len(ANCHOR_SIDES)
    hidden = keras.layers.Conv2D(8, 1, activation="relu", name="hidden")(cells)
    box_head = keras.layers.Conv2D(4 * k, 1, name="box_head")
    class_head = keras.layers.Conv2D(k, 1, name="class_head")
    boxes = keras.layers.Reshape((-1, 4), name="box_encodings")(box_head(hidden))
    # Two "levels" (grid rows 0-3 and 4-7) concatenated, as the detector concatenates its levels: the
    # sigmoid the export adds then follows a concatenation, as it does in the detector's graph.
    cell_logits = class_head(cells)
    halves = [keras.layers.Reshape((-1, 1))(keras.layers.Cropping2D(((top, GRID // 2 - top), (0, 0)))(cell_logits))
              for top in (0, GRID // 2)]
    logits = keras.layers.Concatenate(axis=1, name="class_logits")(halves)
    model = keras.Model(image, {"box_encodings": boxes, "class_logits": logits})
    rng = np.random.default_rng(seed)
    model.get_layer("hidden").set_weights([rng.normal(0, 1, (1, 1, 3, 8)).astype("float32"), np.zeros(8, "float32")])
    box_kernel = np.zeros((1, 1, 8, 4 * k), "float32") if zero_boxes else rng.normal(0, 0.3, (1, 1, 8, 4 * k))
    box_head.set_weights([box_kernel.astype("float32"), np.zeros(4 * k, "float32")])
    # Logit = 3 * (sum of channels) * {1.0, 0.9} - 1: bright cell ~ +8, dark cell ~ -10; the two
    # anchor types of a cell never tie.
    class_kernel = np.stack([np.full(3, 3.0), np.full(3, 2.7)], axis=-1)[None, None].astype("float32")
    class_head.set_weights([class_kernel, np.full(k, -1.0, "float32")])
    return model


def standin_anchors() -> np.ndarray:
    """float32 (128, 4) normalised [ymin, xmin, ymax, xmax], row, column, anchor type order."""
    out = []
    for i in range(GRID):
        for j in range(GRID):
            yc, xc = (i + 0.5) / GRID, (j + 0.5) / GRID
            out += [[yc - s / 2, xc - s / 2, yc + s / 2, xc + s / 2] for s in ANCHOR_SIDES]
    return np.asarray(out, np.float32)


def face_image(rng: np.random.Generator, top: int, left: int, side: int = 16,
               height: int = SIZE, width: int = SIZE, square_hw: tuple[int, int] | None = None) -> np.ndarray:
    """Dark noisy uint8 (height, width, 3) image with one bright noisy rectangle at (top, left)."""
    image = rng.integers(0, 60, (height, width, 3)).astype(np.uint8)
    h, w = square_hw or (side, side)
    image[top:top + h, left:left + w] = rng.integers(200, 256, (h, w, 3))
    return image
