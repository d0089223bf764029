"""The model card as Markdown (models/model_card.md), from the card facedet.model_card.card builds, and
both files written."""

from __future__ import annotations

import json
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import yaml

from facedet.model_card.card import int8_metrics
from facedet.process.atomic import write_text_atomic
from facedet.runtime.export_manifest import gap_name, split_variant, variant_name

def _fmt(value: Any) -> str:
    if value is None:
        return "n/a"
    if isinstance(value, float):
        return f"{value:.4f}"
    return str(value)


def _metrics_table(card: Mapping[str, Any]) -> list[str]:
    keras_metrics = card["metrics"].get("keras_float") or {}
    tflite = card["metrics"].get("tflite") or {}
    keras_size = keras_metrics.get("input_size")
    columns = [(f"Keras float{f' at {keras_size}' if keras_size else ''}", keras_metrics)]
    # Per export size (None = the trained size, then 640 ...): float, int8 (shipped), int8 - float.
    for size in (split_variant(variant)[1] for variant in int8_metrics(tflite)):
        for name, quantize in (("TFLite float", "float"), ("TFLite int8 (shipped)", "int8")):
            variant = variant_name(quantize, size)
            metrics = tflite.get(variant) or {}
            columns.append((f"{name} `{metrics['file']}`" if "file" in metrics else name, metrics))
        columns.append((f"int8 - float{f' at {size}' if size else ''}", tflite.get(gap_name(size)) or {}))
    names = list(dict.fromkeys(k for _, m in columns for k in m if k not in ("file", "resize")))
    if not names:
        return ["No metrics yet (run the evaluate and evaluate_tflite stages)."]
    lines = ["| metric | " + " | ".join(c for c, _ in columns) + " |", "|---" * (len(columns) + 1) + "|"]
    lines += [f"| {name} | " + " | ".join(_fmt(m.get(name)) for _, m in columns) + " |" for name in names]
    return lines


def backbone_line(backbone: Mapping[str, Any] | None) -> str:
    """The lineage line of the weights training started from (models/detector/backbone.json)."""
    if backbone is None:
        return "- Backbone start: not recorded (a model trained before models/detector/backbone.json existed)"
    if backbone.get("sha256"):
        return f"- Backbone start: `{backbone['backbone_weights']}`, sha256 `{backbone['sha256']}`"
    return f"- Backbone start: `{backbone['backbone_weights']}`" + (
        " (random initialisation)" if backbone["backbone_weights"] == "none" else " (Keras' download)")


def _real_photo_lines(card: Mapping[str, Any]) -> list[str]:
    """The shipped int8 files' WIDER AP on real photos, or why there is none."""
    if not card.get("scored_on_real_photos"):
        return ["No real-photo figures: this run's val split is synthetic. A model trained and scored on real "
                "photos has them in its own card (the released model: `models/release/model_card.md`)."]
    tflite = card["metrics"].get("tflite") or {}
    rows = list(int8_metrics(tflite).items())
    if not rows:
        return ["Not scored yet (run the evaluate_tflite stage)."]
    return ["WIDER FACE val photos of this run (official protocol, official Easy / Medium / Hard lists when the "
            "run has the official `.mat` files):", "",
            "| file | input | Easy | Medium | Hard | COCO AP |", "|---|---|---|---|---|---|",
            *[f"| `{m.get('file', variant)}` | {m.get('input_size', 'n/a')} | {_fmt(m.get('wider_easy_ap'))} | "
              f"{_fmt(m.get('wider_medium_ap'))} | {_fmt(m.get('wider_hard_ap'))} | {_fmt(m.get('coco_ap'))} |"
              for variant, m in rows]]


def render_markdown(card: Mapping[str, Any]) -> str:
    """The card as Markdown (models/model_card.md)."""
    return "\n".join([*_summary_lines(card), *_file_lines(card), *_data_lines(card), *_lineage_lines(card)])


def _summary_lines(card: Mapping[str, Any]) -> list[str]:
    """Title, verdict, real-photo figures, intended and out-of-scope use, the recommended threshold."""
    model = card["model"]
    return [
        f"# Model card: {model['name']} {model['version']}", "",
        f"{model['architecture']}, preset `{model['preset']}`, detecting faces (one class, `face`) in RGB images. "
        "Exported to TFLite ending in the `TFLite_Detection_PostProcess` op, with TFLite model metadata "
        "(label file, normalisation): MediaPipe Tasks' ObjectDetector and the TFLite Task Library load it as it is.",
        "",
        "## Verdict", "", card["verdict"], "",
        "## Real photos", "", *_real_photo_lines(card), "",
        "## Intended use", "",
        *([] if card.get("scored_on_real_photos") else
          ["This model: testing the pipeline only (see the verdict). A model of this pipeline trained and "
           "scored on real photos is meant for:", ""]),
        *[f"- {line}" for line in card["intended_use"]], "",
        "## Out of scope", "", *[f"- {line}" for line in card["out_of_scope"]], "",
        "## Recommended score threshold", "",
        f"Keep faces with score >= {card['recommended_score_threshold']} (`facedet detect`'s default, "
        "`--score-threshold`). The file itself returns detections down to `export.score_threshold` "
        f"({(card['params'].get('export') or {}).get('score_threshold', 'n/a')}) so that AP can be measured "
        "over every score: below the recommended threshold, more of them are background.", "",
    ]


def _file_lines(card: Mapping[str, Any]) -> list[str]:
    """The shipped files (size, input, latency, hash), then each one's input and the outputs."""
    files = card["files"]
    lines = ["## Files", "",
             "| variant | file | size (KB) | input | median latency, 1 thread (ms) | sha256 |", "|---|---|---|---|---|---|"]
    for variant, f in files.items():
        shape = "x".join(str(v) for v in f["input"]["shape"])
        lines.append(f"| {variant} | `{f['path']}` | {f['size_kb']} | {f['input']['dtype']} {shape} "
                     f"{f['input'].get('resize', 'stretch')} | {_fmt(f['latency_ms_1_thread'])} | `{f['sha256'][:16]}…` |")
    return lines + [
        "", "Latency: median of `invoke()` (whole graph, post-process included), measured on "
        f"{card['measured_on']}.",
        "", "## Input and outputs", "",
        *[f"- Input `image` of `{Path(f['path']).name}`: {'x'.join(map(str, f['input']['shape']))}, "
          f"{f['input']['format']}." for f in files.values()],
        *[f"- `{name}`: {text}" for name, text in card["model"]["outputs"].items()],
        "- Boxes map back to the original image by scaling with its width and height.", ""]


def _data_lines(card: Mapping[str, Any]) -> list[str]:
    """The metrics table, then the training data and the DVC hashes of the data outputs."""
    data = card["data"]
    lines = ["## Metrics (val split, official WIDER FACE protocol and COCO AP)", "",
             f"Scored on: {data['description']}.", "",
             "Each column is one model scored as it is shipped, at the input size in its `input_size` row "
             "(the .tflite files: their own fixed input; the Keras model: `evaluate.input_size`).", "",
             *_metrics_table(card), "",
             "## Training data", "", *[f"- {line}" for line in data["training_data"]]]
    dvc = data["dvc"]
    if not dvc["found"]:
        lines.append(f"- DVC hashes: {dvc['lock']} not found (stages run by hand, not by `dvc repro`).")
    for path, entry in dvc["outs"].items() if dvc["found"] else ():
        lines.append(f"- `{path}`: " + (f"md5 `{entry['md5']}` ({entry.get('nfiles')} files, {entry.get('size')} "
                                         f"bytes; stage `{entry['stage']}` in dvc.lock)" if entry
                                         else "not recorded in dvc.lock"))
    return lines


def _lineage_lines(card: Mapping[str, Any]) -> list[str]:
    """Commit, backbone start, reproduce command, the params and detector config, the limitations."""
    code, reproduce, recipe = card["code"], card["reproduce"], card.get("recipe")
    commit = code.get("commit")
    recipe_note = f"; its `auto` knobs as the {recipe['name']} recipe sets them, for {recipe['why']}" if recipe else ""
    return ["", "## Lineage", "",
            f"- Git commit: `{commit}`" + (" (work tree had uncommitted changes: "
                                            + ", ".join(code["dirty_paths"][:10]) + ")" if code.get("dirty") else "")
            if commit else f"- Git commit: unknown ({code.get('note')})",
            backbone_line(card.get("backbone")),
            (f"- Reproduce{'' if reproduce['exact'] else ' (not exact)'}: `{reproduce['command']}` "
             f"({reproduce['note']})" if reproduce["command"] else f"- Reproduce: unknown ({reproduce['note']})"),
            "", f"## Params (params.yaml{recipe_note})", "", "```yaml",
            yaml.safe_dump(card["params"], sort_keys=False).rstrip(), "```",
            "", "## Detector config (models/detector/detector.json)", "", "```json",
            json.dumps(card["model"]["detector_config"], indent=2), "```", "",
            "## Limitations", "",
            "- Single class; faces much smaller than the smallest anchor (see the detector config) are missed.",
            "- Trained and scored on the data above only: see the verdict for what the numbers mean.", ""]


def write_model_card(card: Mapping[str, Any], md_path: str | os.PathLike, json_path: str | os.PathLike) -> None:
    """Write the card as Markdown and JSON, each atomically."""
    write_text_atomic(json_path, json.dumps(card, indent=2) + "\n")
    write_text_atomic(md_path, render_markdown(card))
