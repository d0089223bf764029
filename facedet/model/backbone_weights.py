"""Pretrained backbone weights from a Keras HDF5 weights file (the `..._no_top.h5` that Keras'
`weights="imagenet"` downloads), loaded layer by layer by name with every shape checked, so that a file
of another width or architecture, or a truncated one, stops training with one line naming the file and
the layer that does not fit, instead of Keras' order-based load failing deep inside or loading silently
into the wrong layers."""

from __future__ import annotations

import os
from pathlib import Path

import h5py
import keras
import numpy as np

from facedet.process.hashing import sha256_of


class BackboneWeightsError(RuntimeError):
    """The requested backbone weights cannot be loaded (offline ImageNet download, missing or unfit file)."""


def _text(value: bytes | str) -> str:
    return value.decode("utf8") if isinstance(value, bytes) else str(value)


def read_weights_file(path: str | os.PathLike) -> dict[str, dict[str, np.ndarray]]:
    """{layer name: {variable name ('kernel', 'gamma', ...): array}} from a Keras legacy HDF5 weights file
    (root attribute `layer_names`, one group per layer with a `weight_names` attribute)."""
    try:
        with h5py.File(path, "r") as file:
            if "layer_names" not in file.attrs:
                raise BackboneWeightsError(
                    f"backbone weights {path}: not a Keras HDF5 weights file (no 'layer_names' attribute)")
            layers = {}
            for layer_name in map(_text, file.attrs["layer_names"]):
                group = file[layer_name]
                names = [_text(n) for n in group.attrs.get("weight_names", [])]
                layers[layer_name] = {n.split("/")[-1].split(":")[0]: np.asarray(group[n]) for n in names}
            return layers
    except BackboneWeightsError:
        raise
    except (OSError, KeyError, ValueError) as err:  # h5py: truncated / not HDF5 / a dataset missing
        reason = str(err).split("(", 1)[0].strip() or type(err).__name__
        raise BackboneWeightsError(f"backbone weights {path}: cannot be read ({reason}): truncated or not HDF5?") from None


def load_backbone_weights(backbone: keras.Model, path: str | os.PathLike) -> int:
    """Set every weighted layer of `backbone` from the file at `path`, matched by layer and variable name;
    returns the number of layers loaded. Raises BackboneWeightsError naming the file and the first
    layer that is missing or whose shape differs (another width: `alpha`; another architecture)."""
    if not Path(path).is_file():
        raise BackboneWeightsError(f"backbone weights file not found: {path}")
    stored = read_weights_file(path)
    loaded = 0
    for layer in backbone.layers:
        if not layer.weights:
            continue
        if layer.name not in stored:
            raise BackboneWeightsError(
                f"backbone weights {path}: no layer '{layer.name}' in the file (another architecture than "
                f"MobileNetV2? it has {len(stored)} layers, e.g. {', '.join(list(stored)[:3])})")
        arrays = stored[layer.name]
        values = []
        for variable in layer.weights:
            array = arrays.get(variable.name)
            if array is None or tuple(array.shape) != tuple(variable.shape):
                found = None if array is None else tuple(array.shape)
                raise BackboneWeightsError(
                    f"backbone weights {path}: layer '{layer.name}' {variable.name} is {found} in the file, "
                    f"the model needs {tuple(variable.shape)} (weights of another width, model.preset alpha?)")
            values.append(array)
        layer.set_weights(values)
        loaded += 1
    return loaded


def backbone_weights_record(weights: str) -> dict[str, str | None]:
    """What a trained model's lineage says of its start: `train.backbone_weights` as given ('none',
    'imagenet' or a path) and, for a file, the sha256 of its bytes (Keras' ImageNet download is pinned
    by Keras itself)."""
    is_file = weights not in ("none", "imagenet")
    return {"backbone_weights": weights, "sha256": sha256_of(weights) if is_file else None}
