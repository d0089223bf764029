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

import json
from pathlib import Path

from facedet.data.filtering import load_filtered
from facedet.data.wider_archive import WiderArchive
from facedet.evaluate.score import evaluate_detector, int8_minus_float
from facedet.params.sections import EvaluateParams
from facedet.process.atomic import write_text_atomic
from facedet.process.paths import EVALUATE_TFLITE_DIR, EXPORT_DIR, INTERIM_DIR, RAW_DIR
from facedet.process.stage_runner import run_stage, section, stage_parser

PARSER = stage_parser("evaluate_tflite", __doc__, export_dir=EXPORT_DIR, raw_dir=RAW_DIR, interim_dir=INTERIM_DIR,
                      evaluate_tflite_dir=EVALUATE_TFLITE_DIR)


def evaluate_tflite(params: EvaluateParams, export_dir: Path, raw_dir: Path, interim_dir: Path,
                    evaluate_tflite_dir: Path) -> dict[str, dict[str, float]]:
    from facedet.runtime.export_manifest import read_manifest
    from facedet.runtime.tflite_detector import TFLiteDetector

    exported = read_manifest(export_dir)
    archive, coco_images = WiderArchive(raw_dir), load_filtered(interim_dir, "val")
    metrics: dict[str, dict] = {}
    (evaluate_tflite_dir / "sizes").mkdir(parents=True, exist_ok=True)  # a declared output, empty with one export size
    for model in exported:
        detector = TFLiteDetector(export_dir / model.file, resize=model.resize)
        out_dir = evaluate_tflite_dir / ("" if model.at_trained_size else "sizes") / model.variant
        metrics[model.variant] = evaluate_detector(
            detector, archive, coco_images, out_dir,
            images_to_draw=params.images_to_draw, desc=f"evaluate ({model.file})",
            extra_metrics={"input_size": model.input_size}) | {"file": model.file, "resize": model.resize}
    metrics |= int8_minus_float(metrics)
    write_text_atomic(evaluate_tflite_dir / "metrics.json", json.dumps(metrics, indent=2) + "\n")
    print(json.dumps(metrics, indent=2))
    return metrics


def main(argv: list[str] | None = None) -> None:
    run_stage(evaluate_tflite, PARSER, argv, section("evaluate", EvaluateParams),
              errors=(FileNotFoundError, ValueError))


if __name__ == "__main__":
    main()
