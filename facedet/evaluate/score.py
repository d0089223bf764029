"""Score any detector on the WIDER val split the way users compare face detectors: predictions
in the official submission layout, WIDER Easy/Medium/Hard AP (official protocol), COCO AP
(pycocotools), PR curves, recall by face size, and a grid of images with drawn boxes.

The evaluate (Keras float model) and evaluate_tflite (shipped .tflite) stages both call
`evaluate_detector` with a `facedet.runtime.detector_protocol.Detector`, so the two are scored by exactly the
same code; `int8_minus_float` is the quantization gap the evaluate_tflite stage reports.
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Iterator
from pathlib import Path

import numpy as np
from tqdm import tqdm

from facedet.data.filtering import FilteredImage
from facedet.data.images import decode_rgb
from facedet.data.wider_archive import WiderArchive
from facedet.data.wider_mat import EvalImage
from facedet.evaluate import plots
from facedet.evaluate.coco_eval import coco_metrics
from facedet.evaluate.submission import write_predictions
from facedet.evaluate.wider_eval import evaluate_matches, match_predictions, recall_by_face_size
from facedet.process.atomic import write_text_atomic
from facedet.runtime.detector_protocol import Detector
from facedet.runtime.export_manifest import gap_name, split_variant, variant_name

RECALL_SCORE_THRESHOLD = 0.5  # the operating point of the recall-by-face-size chart


def val_images(archive: WiderArchive, ground_truth: list[EvalImage]) -> Iterator[np.ndarray]:
    """The val images in ground-truth order, decoded from WIDER_val.zip."""
    for item in ground_truth:
        yield decode_rgb(archive.read_image("val", item.image), item.image)  # as displayed: the gt's frame


def evaluate_detector(detector: Detector, archive: WiderArchive, coco_images: list[FilteredImage],
                      out_dir: str | os.PathLike, images_to_draw: int = 6, desc: str = "evaluate",
                      extra_metrics: dict[str, float] | None = None) -> dict[str, float]:
    """Run `detector` (its `detect_many`) over every val image of the official ground truth and write,
    under `out_dir`: predictions/ (submission layout), metrics.json, pr/{easy,medium,hard}.csv, pr_curves.png,
    recall_by_size.{csv,png}, detections.png. Returns the metrics.

    coco_images: the filtered val table (the faces COCO AP counts).
    extra_metrics: written into metrics.json as they are (e.g. the input size scored at).
    """
    out_dir = Path(out_dir)
    ground_truth = archive.eval_ground_truth()
    if not any(len(image.boxes_xywh) for image in coco_images):  # COCO AP would be -1, not an error
        raise ValueError("the filtered val split has no faces to score (data/interim/val_faces.csv): "
                         "re-run the filter stage with params that keep faces")
    drawn: list[np.ndarray] = []  # the first images, kept from the one decoding pass for the grid

    def images() -> Iterator[np.ndarray]:
        for image in val_images(archive, ground_truth):
            if len(drawn) < images_to_draw:
                drawn.append(image)
            yield image

    started = time.perf_counter()
    detections = list(tqdm(detector.detect_many(images()), total=len(ground_truth), desc=desc, unit="img"))
    seconds_per_image = (time.perf_counter() - started) / max(len(ground_truth), 1)
    written = write_predictions(out_dir / "predictions", {g.key: d for g, d in zip(ground_truth, detections)})

    matches = match_predictions(ground_truth, written)
    result = evaluate_matches(matches)
    coco = coco_metrics(coco_images, written)
    metrics = {f"wider_{subset}_ap": round(float(ap), 6) for subset, ap in result.ap.items()}
    metrics |= {f"coco_{name.lower()}": round(float(value), 6) for name, value in coco.items()}
    metrics["seconds_per_image"] = round(seconds_per_image, 5)
    metrics |= extra_metrics or {}
    write_text_atomic(out_dir / "metrics.json", json.dumps(metrics, indent=2) + "\n")

    curves = {subset: (r.precision, r.recall) for subset, r in result.subsets.items()}
    plots.write_pr_csvs(out_dir / "pr", curves)
    plots.plot_pr_curves(out_dir / "pr_curves.png", curves, result.ap)
    bins = recall_by_face_size(matches, score_threshold=RECALL_SCORE_THRESHOLD, subset="hard")
    plots.write_recall_by_size_csv(out_dir / "recall_by_size.csv", bins)
    plots.plot_recall_by_size(out_dir / "recall_by_size.png", bins)
    if drawn:
        samples = [(image, item.boxes_xywh[np.any(item.boxes_xywh != 0, axis=1)], written[item.key])
                   for item, image in zip(ground_truth, drawn)]
        plots.draw_detection_grid(out_dir / "detections.png", samples)
    return metrics


def int8_minus_float(metrics: dict[str, dict]) -> dict[str, dict[str, float]]:
    """Per-variant metrics ('int8', 'float', 'int8_640', 'float_640', ...: facedet.runtime.export_manifest)
    -> the AP gaps of each int8 file to the float file at the same size:
    {'int8_minus_float[_<size>]': {'<metric>_ap': int8 - float}}."""
    gaps = {}
    for variant, int8_metrics in metrics.items():
        quantize, size = split_variant(variant) or ("", None)
        float_metrics = metrics.get(variant_name("float", size))
        if quantize == "int8" and float_metrics:
            gaps[gap_name(size)] = {key: round(value - float_metrics[key], 6)
                                    for key, value in int8_metrics.items() if key.endswith("_ap")}
    return gaps
