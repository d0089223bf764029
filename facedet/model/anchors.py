"""The SSD anchor generator of a `DetectorConfig` (facedet.model.config).

Anchors follow the TF OD API SSD anchor generator: one feature map per stride in
`feature_strides` (the first, stride 8, for small faces), scales linear from `min_scale` to
`max_scale` over the layers (or geometric, `scale_spacing: geometric`), one box per aspect ratio
(`w / h`) at the layer's scale, plus, with `interpolated_scale`, one square box at sqrt(s_i * s_{i+1})
(s_L = 1). Scales are fractions of `anchor_base_size` px (0: the model input side), so the detector
can be rebuilt at a larger input (`at_input_size`) with its anchors at the same pixel sizes: it is
fully convolutional, and a face of n px then meets the anchors it was trained on.
Boxes are float32 (A, 4) normalised `[ymin, xmin, ymax, xmax]` (fractions of the input side),
ordered layer by layer, then row (y), column (x), anchor type — the order the model's heads emit.
"""

from __future__ import annotations

import math

import numpy as np

from facedet.model.config import DetectorConfig


def layer_scales(config: DetectorConfig) -> list[float]:
    """Anchor scale of each layer, as a fraction of `anchor_base_px`, then the closing 1.0."""
    n = len(config.feature_strides)
    lo, hi = config.min_scale, config.max_scale
    if n == 1:
        return [lo, 1.0]
    if config.scale_spacing == "geometric":
        return [lo * (hi / lo) ** (i / (n - 1)) for i in range(n)] + [1.0]
    return [lo + (hi - lo) * i / (n - 1) for i in range(n)] + [1.0]


def layer_box_shapes(config: DetectorConfig) -> list[list[tuple[float, float]]]:
    """Per layer, the (height, width) of each anchor type, as fractions of the input side."""
    scales = layer_scales(config)
    to_input = config.anchor_base_px / config.input_size
    shapes = []
    for i in range(len(config.feature_strides)):
        layer = [(scales[i] / math.sqrt(ar), scales[i] * math.sqrt(ar)) for ar in config.aspect_ratios]
        if config.interpolated_scale:
            s = math.sqrt(scales[i] * scales[i + 1])
            layer.append((s, s))
        shapes.append([(h * to_input, w * to_input) for h, w in layer])
    return shapes


def level_anchor_counts(config: DetectorConfig) -> tuple[int, ...]:
    """Anchors on each layer, in `anchor_boxes` order: feature_size**2 * anchors_per_cell."""
    return tuple(size * size * config.anchors_per_cell for size in config.feature_sizes())


def anchor_boxes(config: DetectorConfig) -> np.ndarray:
    """All anchors: float32 (A, 4) normalised `[ymin, xmin, ymax, xmax]`, in head output order.

    A = sum over layers of feature_size**2 * anchors_per_cell. Centres sit at (i + 0.5) / feature_size.
    """
    out = []
    for size, shapes in zip(config.feature_sizes(), layer_box_shapes(config)):
        centres = (np.arange(size, dtype=np.float64) + 0.5) / size
        yc, xc = np.meshgrid(centres, centres, indexing="ij")  # (size, size), row-major y then x
        hw = np.asarray(shapes, dtype=np.float64)  # (K, 2)
        yc = yc[:, :, None]
        xc = xc[:, :, None]
        h = hw[None, None, :, 0]
        w = hw[None, None, :, 1]
        boxes = np.stack(
            np.broadcast_arrays(yc - h / 2, xc - w / 2, yc + h / 2, xc + w / 2), axis=-1
        )  # (size, size, K, 4)
        out.append(boxes.reshape(-1, 4))
    return np.concatenate(out).astype(np.float32)
