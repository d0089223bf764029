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
from facedet.params.loader import exit_on_bad_params, load_section
from facedet.params.sections import EvaluateParams
from facedet.process.atomic import write_text_atomic
from facedet.process.lifetime import die_with_parent
from facedet.process.paths import EVALUATE_TFLITE_DIR, EXPORT_DIR, INTERIM_DIR, RAW_DIR
from facedet.process.stage_args import stage_parser

PARSER = stage_parser("evaluate_tflite", __doc__, export_dir=EXPORT_DIR, raw_dir=RAW_DIR, interim_dir=INTERIM_DIR,
                      evaluate_tflite_dir=EVALUATE_TFLITE_DIR)


def evaluate_tflite(params: EvaluateParams, export_dir: Path, raw_dir: Path, interim_dir: Path,
                    reports: Path) -> dict[str, dict[str, float]]:
    from facedet.runtime.tflite_detector import TFLiteDetector, read_export_manifest

    entries = read_export_manifest(export_dir)
    archive, coco_images = WiderArchive(raw_dir), load_filtered(interim_dir, "val")
    metrics: dict[str, dict] = {}
    (reports / "sizes").mkdir(parents=True, exist_ok=True)  # a declared output, empty with one export size
    for entry in entries:
        variant = entry["variant"]
        detector = TFLiteDetector(export_dir / entry["file"], resize=entry["resize"])
        out_dir = reports / variant if variant in ("int8", "float") else reports / "sizes" / variant
        metrics[variant] = evaluate_detector(
            detector, archive, coco_images, out_dir,
            images_to_draw=params.images_to_draw, desc=f"evaluate ({entry['file']})",
            extra_metrics={"input_size": entry["input_size"]}) | {"file": entry["file"], "resize": entry["resize"]}
    metrics |= int8_minus_float(metrics)
    write_text_atomic(reports / "metrics.json", json.dumps(metrics, indent=2) + "\n")
    return metrics


def main(argv: list[str] | None = None) -> None:
    args = PARSER.parse_args(argv)
    die_with_parent()
    with exit_on_bad_params("evaluate_tflite"):
        params = load_section("evaluate", EvaluateParams, args.params)
    with exit_on_bad_params("evaluate_tflite", FileNotFoundError, ValueError):
        metrics = evaluate_tflite(params, args.export_dir, args.raw_dir, args.interim_dir, args.evaluate_tflite_dir)
    print(json.dumps(metrics, indent=2))


if __name__ == "__main__":
    main()
