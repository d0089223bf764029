"""Evaluate stage: score the trained Keras (float) detector on the val split.

Reads  models/detector/, data/raw/WIDER_val.zip + eval_tools.zip (official ground truth),
       data/interim/ (filtered val faces, for COCO AP); params `evaluate` (`input_size`: run the
       model at a larger square input than it was trained at, anchors at the same pixel sizes).
Writes reports/evaluate/: metrics.json (with the input size scored at), predictions/ (official
       submission layout), pr/*.csv, pr_curves.png, recall_by_size.{csv,png}, detections.png.
"""

from __future__ import annotations

import json
from pathlib import Path

from facedet.data.filtering import load_filtered
from facedet.data.wider_archive import WiderArchive
from facedet.evaluate.score import evaluate_detector
from facedet.params.sections import EvaluateParams
from facedet.process.paths import EVALUATE_DIR, INTERIM_DIR, MODEL_DIR, RAW_DIR
from facedet.process.stage_runner import run_stage, section, stage_parser

PARSER = stage_parser("evaluate", __doc__, model_dir=MODEL_DIR, raw_dir=RAW_DIR, interim_dir=INTERIM_DIR,
                      evaluate_dir=EVALUATE_DIR)


def evaluate(params: EvaluateParams, model_dir: Path, raw_dir: Path, interim_dir: Path,
             evaluate_dir: Path) -> dict[str, float]:
    from facedet.runtime.keras_detector import KerasDetector

    detector = KerasDetector(model_dir, params, input_size=params.input_size or None)
    input_size = detector.config.input_size
    metrics = evaluate_detector(
        detector, WiderArchive(raw_dir), load_filtered(interim_dir, "val"), evaluate_dir,
        images_to_draw=params.images_to_draw, desc=f"evaluate (keras at {input_size})",
        extra_metrics={"input_size": input_size})
    print(json.dumps(metrics, indent=2))
    return metrics


def main(argv: list[str] | None = None) -> None:
    run_stage(evaluate, PARSER, argv, section("evaluate", EvaluateParams), errors=(FileNotFoundError, ValueError))


if __name__ == "__main__":
    main()
