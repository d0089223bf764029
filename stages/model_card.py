"""Model card stage: what the shipped face detector is, its metrics, and the data/params/code it came from.

Reads  models/export/export.json and the .tflite files it lists (size, hash, input, resize mode,
       outputs, metadata, 1-thread latency), models/detector/detector.json (resolved preset), configs/<preset>.yaml,
       reports/evaluate/metrics.json (Keras float), reports/evaluate_tflite/metrics.json (shipped
       .tflite), params.yaml (every section), dvc.lock (the md5 of data/raw and data/tfrecords as
       recorded), `git rev-parse HEAD` (+ a dirty flag) and the commit's params.yaml (the params a
       reproduce command must set), and the backbone weights file if `train.backbone_weights` names one.
Writes models/model_card.md and models/model_card.json, reports/model.json (each .tflite's size and
latency) and reports/metrics.json (the shipped file's Easy / Medium / Hard AP, COCO AP, size and
latency: the one DVC metrics file, what `dvc exp show` and `dvc exp diff` compare), atomically.
Runs last, after evaluate_tflite, so the card holds every metric and no stage writes another's outputs.
"""

from __future__ import annotations

import json
from pathlib import Path

from facedet.model_card.card import build_model_card, load_inputs, read_json_if_present
from facedet.model_card.card import headline_metrics as headline
from facedet.model_card.render import write_model_card
from facedet.process.atomic import write_text_atomic
from facedet.process.paths import (
    CONFIGS_DIR,
    EVALUATE_DIR,
    EVALUATE_TFLITE_DIR,
    EXPORT_DIR,
    HEADLINE_METRICS,
    MODEL_CARD_DIR,
    MODEL_DIR,
    MODEL_METRICS,
)
from facedet.process.stage_runner import run_stage, stage_parser
from facedet.runtime.export_manifest import read_manifest

PARSER = stage_parser("model_card", __doc__, export_dir=EXPORT_DIR, model_dir=MODEL_DIR, configs_dir=CONFIGS_DIR,
                      evaluate_dir=EVALUATE_DIR, evaluate_tflite_dir=EVALUATE_TFLITE_DIR,
                      model_card_dir=MODEL_CARD_DIR, model_metrics=MODEL_METRICS,
                      headline_metrics=HEADLINE_METRICS)
PARSER.add_argument("--latency-runs", type=int, default=50,
                    help="timed invokes per model, median reported (default: %(default)s)")


def model_card(params: Path, export_dir: Path, model_dir: Path, configs_dir: Path, evaluate_dir: Path,
               evaluate_tflite_dir: Path, model_card_dir: Path, model_metrics: Path, headline_metrics: Path,
               latency_runs: int) -> dict:
    """Write the card, reports/model.json and reports/metrics.json (`params`: the params file); return the card."""
    inputs = load_inputs(params, model_dir, configs_dir)
    files = {model.variant: export_dir / model.file for model in read_manifest(export_dir)}
    missing = [str(p) for p in files.values() if not p.is_file()]
    if missing:
        raise FileNotFoundError(f"{', '.join(missing)} missing (run the export stage)")
    card = build_model_card(**inputs, tflite_files=files, latency_runs=latency_runs,
                            keras_metrics=read_json_if_present(evaluate_dir / "metrics.json"),
                            tflite_metrics=read_json_if_present(evaluate_tflite_dir / "metrics.json"))
    write_model_card(card, model_card_dir / "model_card.md", model_card_dir / "model_card.json")
    sizes = {variant: {"size_kb": facts["size_kb"], "latency_ms_1_thread": facts["latency_ms_1_thread"]}
             for variant, facts in card["files"].items()}
    write_text_atomic(model_metrics, json.dumps(sizes, indent=2) + "\n")
    write_text_atomic(headline_metrics, json.dumps(headline(card), indent=2) + "\n")
    for variant, facts in card["files"].items():
        print(f"{variant}: {facts['size_kb']} KB, {facts['latency_ms_1_thread']} ms (1 thread)")
    print(f"wrote {model_card_dir / 'model_card.md'} and {model_card_dir / 'model_card.json'}")
    return card


def main(argv: list[str] | None = None) -> None:
    run_stage(model_card, PARSER, argv, errors=(FileNotFoundError, ValueError))


if __name__ == "__main__":
    main()
