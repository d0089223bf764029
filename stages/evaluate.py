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
from facedet.params.loader import exit_on_bad_params, load_section
from facedet.params.sections import EvaluateParams
from facedet.process.lifetime import die_with_parent
from facedet.process.paths import EVALUATE_DIR, INTERIM_DIR, MODEL_DIR, RAW_DIR
from facedet.process.stage_args import stage_parser

PARSER = stage_parser("evaluate", __doc__, model_dir=MODEL_DIR, raw_dir=RAW_DIR, interim_dir=INTERIM_DIR,
                      evaluate_dir=EVALUATE_DIR)


def evaluate(params: EvaluateParams, model_dir: Path, raw_dir: Path, interim_dir: Path,
             evaluate_dir: Path) -> dict[str, float]:
    from facedet.runtime.keras_detector import KerasDetector

    detector = KerasDetector(model_dir, params, input_size=params.input_size or None)
    input_size = detector.config.input_size
    return evaluate_detector(
        detector, WiderArchive(raw_dir), load_filtered(interim_dir, "val"), evaluate_dir,
        images_to_draw=params.images_to_draw, desc=f"evaluate (keras at {input_size})",
        extra_metrics={"input_size": input_size})


def main(argv: list[str] | None = None) -> None:
    args = PARSER.parse_args(argv)
    die_with_parent()
    with exit_on_bad_params("evaluate"):
        params = load_section("evaluate", EvaluateParams, args.params)
    with exit_on_bad_params("evaluate", FileNotFoundError, ValueError):
        metrics = evaluate(params, args.model_dir, args.raw_dir, args.interim_dir, args.evaluate_dir)
    print(json.dumps(metrics, indent=2))


if __name__ == "__main__":
    main()
