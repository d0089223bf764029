"""Evaluate stage: score the trained Keras (float) detector on the val split.

Reads  models/detector/, data/raw/WIDER_val.zip + eval_tools.zip (official ground truth),
       data/interim/ (filtered val faces, for COCO AP); params `evaluate` (`input_size`: run the
       model at a larger square input than it was trained at, anchors at the same pixel sizes).
Writes reports/evaluate/: metrics.json (with the input size scored at), predictions/ (official
       submission layout), pr/*.csv, pr_curves.png, recall_by_size.{csv,png}, detections.png.
"""

from __future__ import annotations

import argparse
import json

from facedet.evaluate.score import EvaluateParams, evaluate_detector
from facedet.data.filtering import load_filtered
from facedet.pipeline.lifetime import die_with_parent
from facedet.params.loader import exit_on_bad_params, load_section
from facedet.data.wider import WiderArchive


def evaluate(params: EvaluateParams) -> dict[str, float]:
    from facedet.runtime.keras_detector import KerasDetector

    detector = KerasDetector("models/detector", params, input_size=params.input_size or None)
    input_size = detector.config.input_size
    return evaluate_detector(
        detector, WiderArchive("data/raw"), load_filtered("data/interim", "val"), "reports/evaluate",
        images_to_draw=params.images_to_draw, desc=f"evaluate (keras at {input_size})",
        extra_metrics={"input_size": input_size})


def main() -> None:
    argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter).parse_args()
    die_with_parent()
    with exit_on_bad_params("evaluate"):
        params = load_section("evaluate", EvaluateParams)
    with exit_on_bad_params("evaluate", FileNotFoundError, ValueError):
        print(json.dumps(evaluate(params), indent=2))


if __name__ == "__main__":
    main()
