"""The detector's resolved preset: `DetectorConfig` (saved as models/detector/detector.json) and the
loader of the presets in configs/ (`model.preset`). Pure Python: no TensorFlow."""

from __future__ import annotations

import dataclasses
import json
import math
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import yaml

from facedet.params.loader import ParamsError, build, field_range
from facedet.process.paths import CONFIGS_DIR


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
    scale_spacing: 'linear' (TF OD API) or 'geometric' (equal ratios: more anchors at small sizes).
    anchor_base_size: px the scales are fractions of; 0 = input_size (see `at_input_size`).
    stride32_tap: backbone layer read at stride 32: 'out_relu' (TF OD API) or 'block_16_project'
      (lighter: leaves out MobileNetV2's last 1x1 conv to 1280 channels; see facedet.model.ssd).
    resize: how a photo is fitted to the input at inference: 'stretch' (plain resize, what training
      on whole photos sees) or 'letterbox' (aspect kept: what native-scale crop training sees);
      see facedet.runtime.tflite_detector.
    head_norm: normalisation in the box and class towers, which all levels share: 'none' (conv + ReLU),
      'batch' (shared conv, one BatchNormalization per level: statistics of one level are not mixed with
      another's) or 'group' (one GroupNormalization shared by all levels, as SCRFD's head).
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
    scale_spacing: Literal["linear", "geometric"] = "linear"
    anchor_base_size: int = field_range(0, 4096, default=0)
    stride32_tap: Literal["out_relu", "block_16_project"] = "out_relu"
    resize: Literal["stretch", "letterbox"] = "stretch"
    head_norm: Literal["none", "batch", "group"] = "none"

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
    def anchor_base_px(self) -> int:
        """The side, px, that anchor scales are fractions of."""
        return self.anchor_base_size or self.input_size

    def at_input_size(self, input_size: int) -> "DetectorConfig":
        """The same detector at a square input of `input_size` px, its anchors at the same pixel sizes."""
        return dataclasses.replace(self, input_size=input_size, anchor_base_size=self.anchor_base_px)

    @property
    def anchors_per_cell(self) -> int:
        return len(self.aspect_ratios) + int(self.interpolated_scale)

    def feature_sizes(self) -> list[int]:
        """Side of each feature map (ceil(input_size / stride), as 'same'-padded strided convs give)."""
        return [math.ceil(self.input_size / s) for s in self.feature_strides]

    def to_json(self) -> str:
        """detector.json; fields in `WRITTEN_WHEN_SET` are left out at their defaults, so the default
        detector's file keeps the bytes it had before they existed."""
        data = dataclasses.asdict(self)
        for name in WRITTEN_WHEN_SET:
            if data[name] == getattr(DetectorConfig, name):
                del data[name]
        return json.dumps(data, indent=2) + "\n"

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


WRITTEN_WHEN_SET = ("head_norm",)


def preset_path(preset: str, configs_dir: str | os.PathLike = CONFIGS_DIR) -> Path:
    """The file of model preset `preset`: configs/<preset>.yaml."""
    return Path(configs_dir) / f"{preset}.yaml"


def load_preset(preset: str, configs_dir: str | os.PathLike = CONFIGS_DIR) -> DetectorConfig:
    """`configs/<preset>.yaml` -> DetectorConfig (validated; a clear error names a bad key)."""
    path = preset_path(preset, configs_dir)
    if not path.is_file():
        known = sorted(p.stem for p in Path(configs_dir).glob("*.yaml"))
        raise ParamsError(f"model preset '{preset}' not found: no {path} (known presets: {known})")
    return DetectorConfig.from_dict(yaml.safe_load(path.read_text(encoding="utf-8")) or {}, preset)
