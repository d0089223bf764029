"""Evaluate the shipped models: score the int8 and float .tflite files with the same evaluator.

Reads  models/export/face_detector_{int8,float}.tflite, data/raw/WIDER_val.zip + eval_tools.zip,
       data/interim/ (filtered val faces); params `evaluate` (only images_to_draw: the .tflite
       files carry their own score threshold, NMS and max detections, set at export).
Writes reports/evaluate_tflite/metrics.json ({"int8": …, "float": …, "int8_minus_float": …}),
       int8/ and float/ (predictions, PR curves, drawn detections).
"""

from __future__ import annotations

import argparse
import json

from facedet.atomic import write_text_atomic
from facedet.evaluation import EvaluateParams, evaluate_detector
from facedet.filtering import load_filtered
from facedet.lifetime import die_with_parent
from facedet.params import exit_on_bad_params, load_section
from facedet.wider import WiderArchive

REPORTS = "reports/evaluate_tflite"


def evaluate_tflite(params: EvaluateParams) -> dict[str, dict[str, float]]:
    from facedet.tflite_runner import TFLiteDetector

    archive, coco_images = WiderArchive("data/raw"), load_filtered("data/interim", "val")
    metrics = {}
    for quantize in ("int8", "float"):
        detector = TFLiteDetector(f"models/export/face_detector_{quantize}.tflite")
        metrics[quantize] = evaluate_detector(lambda images: map(detector.detect, images), archive, coco_images,
                                              f"{REPORTS}/{quantize}", images_to_draw=params.images_to_draw,
                                              desc=f"evaluate ({quantize} tflite)")
    metrics["int8_minus_float"] = {key: round(value - metrics["float"][key], 6)
                                   for key, value in metrics["int8"].items() if key.endswith("_ap")}
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
