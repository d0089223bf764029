"""The two recipes, and which one a params.yaml knob set to `auto` takes: the data decides.

A knob whose best value differs between the synthetic smoke-test set and real photos reads `auto` in
params.yaml. It takes its value from REAL_PHOTOS when `data.source` is widerface or local, or when
`data.extra_train` has a source (real faces of one's own), and from SYNTHETIC otherwise. A value
written in params.yaml (or set with `dvc exp run -S key=value`) is used as it is. The two tables below
are the only place the recipes' values live: change one here (and its comment in params.yaml, which
says both values; tests/test_recipes.py checks it). Pure Python, no facedet import: the loader uses it.
"""

from __future__ import annotations

import copy
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

AUTO = "auto"
DECIDED_BY = ("data.source", "data.extra_train")  # the params that choose the recipe (dvc.yaml lists them)
REAL_PHOTO_SOURCES = ("widerface", "local")


@dataclass(frozen=True)
class Recipe:
    """One recipe: its name, as printed, and the value of each knob that may be `auto`, by dotted key."""

    name: str
    values: Mapping[str, Any]


# Today's defaults: trained on the synthetic set in about 5 minutes, AP >= 0.95 there (docs/training.md).
SYNTHETIC = Recipe("synthetic set", {
    "filter.min_face_px": 6,
    "model.preset": "ssd_mobilenet_v2_256",
    "train.steps": 2000,
    "train.learning_rate": 0.004,
    "train.positive_iou": 0.5,
    "train.negative_iou": 0.4,
    "train.assignment": "iou",
    "train.loss.classification": "hard_negative_mining",
    "train.loss.box_iou": "none",
    "train.augment.scale_crop": 0.0,
    "evaluate.input_size": 0,
    "export.max_detections": 100,
    "export.input_sizes": [],
})

# The real-faces recipe (docs/real-faces.md): native-scale crops, anchors for 8-32 px faces, IoU 0.35 / 0.3
# matching, Adam 0.008 for 10000 steps, scored and exported at the photo's scale.
REAL_PHOTOS = Recipe("real photos", {
    "filter.min_face_px": 2,  # a dropped face would be trained as background
    "model.preset": "ssd_mobilenet_v2_native_256",
    "train.steps": 10000,
    "train.learning_rate": 0.008,
    "train.positive_iou": 0.35,
    "train.negative_iou": 0.3,
    "train.assignment": "iou",
    "train.loss.classification": "hard_negative_mining",
    "train.loss.box_iou": "none",
    "train.augment.scale_crop": 1.0,
    "evaluate.input_size": 768,
    "export.max_detections": 750,
    "export.input_sizes": [640, 768],
})


@dataclass(frozen=True)
class Resolution:
    """params.yaml with its `auto` knobs replaced: `params` (a copy), the `recipe` they took, `why` (the
    data that chose it) and `knobs`, the replaced values by dotted key."""

    params: dict[str, Any]
    recipe: Recipe
    why: str
    knobs: dict[str, Any]

    def describe(self) -> str:
        """'real photos (data.source=local)': the recipe and why."""
        return f"{self.recipe.name} ({self.why})"


def recipe_for(params: Mapping[str, Any]) -> tuple[Recipe, str]:
    """The recipe the data of `params` (a parsed params.yaml) calls for, and why, e.g. 'data.source=local'."""
    data = params.get("data") if isinstance(params.get("data"), Mapping) else {}
    source, extra = data.get("source", "synthetic"), data.get("extra_train") or {}
    if source in REAL_PHOTO_SOURCES:
        return REAL_PHOTOS, f"data.source={source}"
    if extra:
        names = ", ".join(map(str, extra)) if isinstance(extra, Mapping) else str(extra)
        return REAL_PHOTOS, f"data.extra_train: {names}"
    return SYNTHETIC, f"data.source={source}"


def resolve_auto(params: Mapping[str, Any]) -> Resolution:
    """`params` (a parsed params.yaml) with every recipe knob that reads `auto` set to its recipe's value.
    Any other value, and `auto` on a knob no recipe sets, is left for the section's type to check."""
    recipe, why = recipe_for(params)
    resolved, knobs = copy.deepcopy(dict(params)), {}
    for key, value in recipe.values.items():
        *parents, leaf = key.split(".")
        node = resolved
        for part in parents:
            node = node.get(part) if isinstance(node, dict) else None
        if isinstance(node, dict) and node.get(leaf) == AUTO:
            node[leaf] = knobs[key] = copy.deepcopy(value)
    return Resolution(resolved, recipe, why, knobs)
