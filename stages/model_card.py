"""Model card stage: what the shipped face detector is, its metrics, and the data/params/code it came from.

Reads  models/export/export.json and the .tflite files it lists (size, hash, input, resize mode,
       outputs, metadata, 1-thread latency), models/detector/detector.json (resolved preset), configs/<preset>.yaml,
       reports/evaluate/metrics.json (Keras float), reports/evaluate_tflite/metrics.json (shipped
       .tflite), params.yaml (every section), dvc.lock (the md5 of data/raw and data/tfrecords as
       recorded) and `git rev-parse HEAD` (+ a dirty flag).
Writes models/model_card.md and models/model_card.json, and reports/model.json (each .tflite's size
and latency, the metrics `dvc exp show` / `dvc metrics diff` list), atomically.
Runs last, after evaluate_tflite, so the card holds every metric and no stage writes another's outputs.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from facedet.pipeline.atomic import write_text_atomic
from facedet.pipeline.lifetime import die_with_parent
from facedet.model_card import build_model_card, load_inputs, read_json_if_present, write_model_card
from facedet.params.loader import exit_on_bad_params
from facedet.runtime.tflite_detector import read_export_manifest

MODEL_METRICS = Path("reports/model.json")


def model_card(export_dir: Path, model_dir: Path, out_dir: Path, latency_runs: int) -> dict:
    inputs = load_inputs("params.yaml", model_dir, "configs")
    files = {e["variant"]: export_dir / e["file"] for e in read_export_manifest(export_dir)}
    missing = [str(p) for p in files.values() if not p.is_file()]
    if missing:
        raise SystemExit(f"model_card: {', '.join(missing)} missing (run the export stage)")
    card = build_model_card(**inputs, tflite_files=files, latency_runs=latency_runs,
                            keras_metrics=read_json_if_present("reports/evaluate/metrics.json"),
                            tflite_metrics=read_json_if_present("reports/evaluate_tflite/metrics.json"))
    write_model_card(card, out_dir / "model_card.md", out_dir / "model_card.json")
    sizes = {variant: {"size_kb": facts["size_kb"], "latency_ms_1_thread": facts["latency_ms_1_thread"]}
             for variant, facts in card["files"].items()}
    write_text_atomic(MODEL_METRICS, json.dumps(sizes, indent=2) + "\n")
    return card


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m stages.model_card", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--export-dir", type=Path, default=Path("models/export"))
    parser.add_argument("--model-dir", type=Path, default=Path("models/detector"))
    parser.add_argument("--out", type=Path, default=Path("models"))
    parser.add_argument("--latency-runs", type=int, default=50, help="timed invokes per model (median)")
    args = parser.parse_args(argv)
    die_with_parent()
    with exit_on_bad_params("model_card", FileNotFoundError, ValueError):
        card = model_card(args.export_dir, args.model_dir, args.out, args.latency_runs)
    for variant, facts in card["files"].items():
        print(f"{variant}: {facts['size_kb']} KB, {facts['latency_ms_1_thread']} ms (1 thread)")
    print(f"wrote {args.out / 'model_card.md'} and {args.out / 'model_card.json'}")


if __name__ == "__main__":
    main()
