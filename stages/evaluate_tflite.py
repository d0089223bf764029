"""Evaluate the shipped models: score every exported .tflite file as it is, with the same evaluator.

Reads  models/export/export.json (each file's quantization, input size and resize mode) and the
       files it lists, data/raw/WIDER_val.zip + eval_tools.zip, data/interim/ (filtered val faces);
       params `evaluate` (only images_to_draw: the .tflite files carry their own score threshold,
       NMS and max detections, set at export).
Writes reports/evaluate_tflite/metrics.json: per file variant ("int8", "float" at the trained
       input size; "int8_<size>", "float_<size>" at the other export sizes) its metrics with the
       file and input size scored, and "int8_minus_float[_<size>]"; int8/ and float/ (predictions,
       PR curves, drawn detections at the trained size), sizes/<variant>/ for the other sizes.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from facedet.pipeline.atomic import write_text_atomic
from facedet.evaluate.score import EvaluateParams, evaluate_detector, int8_minus_float
from facedet.data.filtering import load_filtered
from facedet.pipeline.lifetime import die_with_parent
from facedet.params.loader import exit_on_bad_params, load_section
from facedet.data.wider import WiderArchive

REPORTS = "reports/evaluate_tflite"
EXPORT_DIR = "models/export"


def evaluate_tflite(params: EvaluateParams) -> dict[str, dict[str, float]]:
    from facedet.runtime.tflite_detector import TFLiteDetector, read_export_manifest

    entries = read_export_manifest(EXPORT_DIR)
    archive, coco_images = WiderArchive("data/raw"), load_filtered("data/interim", "val")
    metrics: dict[str, dict] = {}
    Path(f"{REPORTS}/sizes").mkdir(parents=True, exist_ok=True)  # a declared output, empty with one export size
    for entry in entries:
        variant = entry["variant"]
        detector = TFLiteDetector(f"{EXPORT_DIR}/{entry['file']}", resize=entry["resize"])
        out_dir = f"{REPORTS}/{variant}" if variant in ("int8", "float") else f"{REPORTS}/sizes/{variant}"
        metrics[variant] = evaluate_detector(
            detector, archive, coco_images, out_dir,
            images_to_draw=params.images_to_draw, desc=f"evaluate ({entry['file']})",
            extra_metrics={"input_size": entry["input_size"]}) | {"file": entry["file"], "resize": entry["resize"]}
    metrics |= int8_minus_float(metrics)
    write_text_atomic(f"{REPORTS}/metrics.json", json.dumps(metrics, indent=2) + "\n")
    return metrics


def main() -> None:
    argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter).parse_args()
    die_with_parent()
    with exit_on_bad_params("evaluate_tflite"):
        params = load_section("evaluate", EvaluateParams)
    with exit_on_bad_params("evaluate_tflite", FileNotFoundError, ValueError):
        print(json.dumps(evaluate_tflite(params), indent=2))


if __name__ == "__main__":
    main()
