"""The detector's resolved preset (`DetectorConfig`) and its SSD anchor generator.

Anchors follow the TF OD API SSD anchor generator: one feature map per stride in
`feature_strides` (the first, stride 8, for small faces), scales linear from `min_scale` to
`max_scale` over the layers, one box per aspect ratio (`w / h`) at the layer's scale, plus, with
`interpolated_scale`, one square box at sqrt(s_i * s_{i+1}) (s_L = 1). Sizes are fractions of the
(square) model input. Boxes are float32 (A, 4) normalised `[ymin, xmin, ymax, xmax]`, ordered
layer by layer, then row (y), column (x), anchor type — the order the model's heads emit.
"""

from __future__ import annotations

import dataclasses
import json
import math
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import yaml

from facedet.params import ParamsError, build, field_range

CONFIGS_DIR = Path("configs")


@dataclass(frozen=True)
class DetectorConfig:
    """Everything needed to rebuild the detector and its anchors (saved as `detector.json`).

    input_size: side of the square model input, px (multiple of 32).
    alpha: MobileNetV2 width multiplier.
    feature_strides: strides of the feature maps the heads read, e.g. (8, 16, 32, 64).
    min_scale, max_scale: anchor scale of the first / last layer, as a fraction of input_size.
    aspect_ratios: anchor width / height ratios at each layer's scale.
    interpolated_scale: add one square anchor at sqrt(s_i * s_{i+1}) per cell.
    head_channels: width of the feature pyramid and of the box / class heads.
    fpn: merge coarser maps into finer ones top-down (helps the stride-8 layer see context).
    """

    input_size: int = field_range(32, 2048, default=256)
    alpha: float = field_range(0.1, 1.4, default=0.35)
    feature_strides: tuple[int, ...] = (8, 16, 32, 64)
    min_scale: float = field_range(0.001, 1.0, default=0.05)
    max_scale: float = field_range(0.001, 2.0, default=0.9)
    aspect_ratios: tuple[float, ...] = (1.0,)
    interpolated_scale: bool = True
    head_channels: int = field_range(8, 1024, default=64)
    fpn: bool = True

    def __post_init__(self) -> None:
        if self.input_size % 32:
            raise ParamsError(f"detector config: input_size must be a multiple of 32, got {self.input_size}")
        if list(self.feature_strides) != sorted(set(self.feature_strides)) or min(self.feature_strides) < 8:
            raise ParamsError(f"detector config: feature_strides must be increasing, >= 8: {self.feature_strides}")
        if not set(self.feature_strides) <= {8, 16, 32, 64, 128}:
            raise ParamsError(f"detector config: feature_strides must be from 8, 16, 32, 64, 128: {self.feature_strides}")
        if not self.aspect_ratios or min(self.aspect_ratios) <= 0:
            raise ParamsError(f"detector config: aspect_ratios must be positive: {self.aspect_ratios}")

    @property
    def anchors_per_cell(self) -> int:
        return len(self.aspect_ratios) + int(self.interpolated_scale)

    def feature_sizes(self) -> list[int]:
        """Side of each feature map (ceil(input_size / stride), as 'same'-padded strided convs give)."""
        return [math.ceil(self.input_size / s) for s in self.feature_strides]

    def to_json(self) -> str:
        return json.dumps(dataclasses.asdict(self), indent=2) + "\n"

    @classmethod
    def from_dict(cls, data: dict, where: str = "detector config") -> "DetectorConfig":
        return build(cls, data, where)

    @classmethod
    def from_json(cls, path: str | os.PathLike) -> "DetectorConfig":
        """Read a `detector.json` written by training (path to the file or to its model directory)."""
        path = Path(path)
        if path.is_dir():
            path = path / "detector.json"
        return cls.from_dict(json.loads(path.read_text(encoding="utf-8")), str(path))


def load_preset(preset: str, configs_dir: str | os.PathLike = CONFIGS_DIR) -> DetectorConfig:
    """`configs/<preset>.yaml` -> DetectorConfig (validated; a clear error names a bad key)."""
    path = Path(configs_dir) / f"{preset}.yaml"
    if not path.is_file():
        known = sorted(p.stem for p in Path(configs_dir).glob("*.yaml"))
        raise ParamsError(f"model preset '{preset}' not found: no {path} (known presets: {known})")
    return DetectorConfig.from_dict(yaml.safe_load(path.read_text(encoding="utf-8")) or {}, preset)


def layer_box_shapes(config: DetectorConfig) -> list[list[tuple[float, float]]]:
    """Per layer, the (height, width) of each anchor type, as fractions of the input side."""
    n = len(config.feature_strides)
    scales = [
        config.min_scale + (config.max_scale - config.min_scale) * i / (n - 1) if n > 1 else config.min_scale
        for i in range(n)
    ] + [1.0]
    shapes = []
    for i in range(n):
        layer = [(scales[i] / math.sqrt(ar), scales[i] * math.sqrt(ar)) for ar in config.aspect_ratios]
        if config.interpolated_scale:
            s = math.sqrt(scales[i] * scales[i + 1])
            layer.append((s, s))
        shapes.append(layer)
    return shapes


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
