"""What an export wrote: one `ExportedModel` per .tflite file, listed in `export.json` beside the files.

The export stage writes it (`write_manifest`); the `.tflite` runner (its resize mode), the evaluate_tflite
stage, the scores and the model card read it (`read_manifest`), so what a variant is lives here only:
'int8' / 'float' at the trained input size (the phone model), 'int8_640' ... at each other export size,
its file `face_detector_<variant>.tflite`. On disk: {"models": [{"file", "variant", "quantize",
"input_size", "resize", "trained_input_size"}, ...]} (manifests from before `trained_input_size` read too).
Pure Python, no TensorFlow: the numpy runtime reads it.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterable, Mapping
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Literal, cast, get_args

MANIFEST_NAME = "export.json"
Quantize = Literal["int8", "float"]
QUANTIZATIONS: tuple[str, ...] = get_args(Quantize)
GAP_PREFIX = "int8_minus_float"  # the int8 file's AP minus the float file's, at one input size


@dataclass(frozen=True)
class ExportedModel:
    """One exported .tflite: `file` (beside the manifest), `variant` (its name in metrics and the card),
    `quantize`, its square `input_size` px, `resize` ('stretch' or 'letterbox': how a photo is fitted to
    its input) and the `trained_input_size` (None in manifests written before it was recorded)."""

    file: str
    variant: str
    quantize: Quantize
    input_size: int
    resize: str = "stretch"
    trained_input_size: int | None = None

    @classmethod
    def at(cls, quantize: Quantize, input_size: int, trained_input_size: int, resize: str) -> ExportedModel:
        """The file an export writes for `quantize` at a square `input_size` px input."""
        variant = variant_name(quantize, None if input_size == trained_input_size else input_size)
        return cls(f"face_detector_{variant}.tflite", variant, quantize, input_size, resize, trained_input_size)

    @property
    def at_trained_size(self) -> bool:
        """Whether this is a phone model: exported at the input size the detector was trained at."""
        return self.variant == self.quantize

    @classmethod
    def from_json(cls, entry: Mapping[str, Any], where: str) -> ExportedModel:
        """An entry of `export.json` (named `where` in a ValueError when it is not one)."""
        try:
            model = cls(**{k: entry[k] for k in ("file", "variant", "quantize", "input_size")},
                        resize=entry.get("resize", "stretch"), trained_input_size=entry.get("trained_input_size"))
        except (KeyError, TypeError) as err:
            raise ValueError(f"{where}: not an exported model entry ({err}): {dict(entry)}") from None
        if model.quantize not in QUANTIZATIONS or not model.variant.startswith(model.quantize):
            raise ValueError(f"{where}: entry {model.file}: quantize {model.quantize!r}, variant {model.variant!r}")
        return model


def variant_name(quantize: Quantize, other_size: int | None) -> str:
    """'int8' / 'float' at the trained input size (`other_size` None), 'int8_640' ... at another."""
    return quantize if other_size is None else f"{quantize}_{other_size}"


def split_variant(name: str) -> tuple[Quantize, int | None] | None:
    """A key of the evaluate_tflite metrics -> (quantize, other input size): 'int8_640' -> ('int8', 640),
    'float' -> ('float', None); None for a key that names no exported file ('int8_minus_float_640')."""
    quantize, _, size = name.partition("_")
    if quantize not in QUANTIZATIONS or not (size == "" or size.isdigit()):
        return None
    return cast(Quantize, quantize), int(size) if size else None


def gap_name(other_size: int | None) -> str:
    """The metrics key of the int8 - float AP gap at one input size: 'int8_minus_float' or '..._640'."""
    return GAP_PREFIX if other_size is None else f"{GAP_PREFIX}_{other_size}"


def write_manifest(export_dir: str | os.PathLike, models: Iterable[ExportedModel]) -> Path:
    """Write `export_dir/export.json` listing `models`, in order (the export writes it into its temporary
    directory, which is then renamed into place). Returns its path."""
    path = Path(export_dir) / MANIFEST_NAME
    path.write_text(json.dumps({"models": [asdict(m) for m in models]}, indent=2) + "\n", encoding="utf-8")
    return path


def read_manifest(export_dir: str | os.PathLike) -> list[ExportedModel]:
    """The models of `<export_dir>/export.json`, in the order exported. FileNotFoundError naming the file
    if there is none (run the export stage), ValueError for an entry that is not one."""
    path = Path(export_dir) / MANIFEST_NAME
    if not path.is_file():
        raise FileNotFoundError(f"{path} missing (run the export stage)")
    entries = json.loads(path.read_text(encoding="utf-8"))["models"]
    return [ExportedModel.from_json(entry, str(path)) for entry in entries]


def manifest_entry(tflite_path: str | os.PathLike) -> ExportedModel | None:
    """The manifest's model of an exported file (None if no manifest lies beside it, or it lists no such file)."""
    tflite_path = Path(tflite_path)
    if not (tflite_path.parent / MANIFEST_NAME).is_file():
        return None
    return next((m for m in read_manifest(tflite_path.parent) if m.file == tflite_path.name), None)


def resize_of(tflite_path: str | os.PathLike) -> str:
    """How to fit a photo to an exported file's input: its manifest entry's resize, else 'stretch'."""
    entry = manifest_entry(tflite_path)
    return entry.resize if entry is not None else "stretch"

