"""Export stage: trained detector -> int8 and float TFLite face detectors, at each input size asked for.

Reads  models/detector/ (model.keras, detector.json) and data/tfrecords/train.record-* (calibration),
writes models/export/ atomically: face_detector_int8.tflite, face_detector_float.tflite at the
trained input size (the phone model), face_detector_{int8,float}_<size>.tflite at each other size of
`export.input_sizes` (the same weights rebuilt at that square input, anchors at the same pixel
sizes: facedet.model.ssd.at_input_size), every file with TFLite model metadata (label file,
normalisation; MediaPipe / Task Library load them as they are), labels.txt, and export.json: each
file's quantization, input size and resize mode (stretch / letterbox), which the runner and the
evaluate_tflite stage read.
"""

from __future__ import annotations

import logging
from pathlib import Path

from tqdm import tqdm

from facedet.params.sections import ExportParams
from facedet.process.atomic import atomic_path
from facedet.process.disk import require_free_space
from facedet.process.paths import EXPORT_DIR, MODEL_DIR, TFRECORD_DIR
from facedet.process.stage_runner import run_stage, section, stage_parser

LABELS = ["face"]  # 0-based class ids of the TFLite outputs
PARSER = stage_parser("export", __doc__, model_dir=MODEL_DIR, tfrecord_dir=TFRECORD_DIR, export_dir=EXPORT_DIR)


def export(params: ExportParams, model_dir: Path, tfrecord_dir: Path, export_dir: Path) -> None:
    import keras

    from facedet import __version__
    from facedet.data.tfrecord_schema import list_shards
    from facedet.export.metadata import metadata_description, write_detector_metadata, writer_unavailable_reason
    from facedet.export.tflite import export_tflite, representative_images, require_memory, verify_tflite
    from facedet.model.anchors import anchor_boxes
    from facedet.model.config import DetectorConfig
    from facedet.model.ssd import at_input_size
    from facedet.runtime.export_manifest import ExportedModel, write_manifest

    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    if reason := writer_unavailable_reason():  # fail before minutes of conversion, not after
        raise SystemExit(f"export: {reason}")
    trained = DetectorConfig.from_json(model_dir / "detector.json")
    # per input size two .tflite files (int8 ~1/4, float ~1x the weights) and the converter's SavedModel (~1x)
    sizes = list(dict.fromkeys([trained.input_size, *params.input_sizes]))
    require_memory(sizes, params.representative_images)  # before minutes of conversion
    require_free_space(export_dir, 3 * len(sizes) * (model_dir / "model.keras").stat().st_size, "the exported models")
    trained_model = keras.models.load_model(model_dir / "model.keras", compile=False)
    shards = list_shards(tfrecord_dir, "train")
    if not shards:
        raise FileNotFoundError(f"no {tfrecord_dir}/train.record-* shards (run the shard stage)")
    manifest = []
    with atomic_path(export_dir, is_dir=True) as tmp:
        for size in sizes:
            model, config = at_input_size(trained_model, trained, size)
            images = list(tqdm(representative_images(shards, params.representative_images, size, config.resize),
                               total=params.representative_images, desc=f"calibration images at {size}", unit="img"))
            for quantize in tqdm(("int8", "float"), desc=f"convert at {size}", unit="model"):
                exported = ExportedModel.at(quantize, size, trained.input_size, config.resize)
                path = export_tflite(model, anchor_boxes(config), images, tmp / exported.file, params, quantize)
                write_detector_metadata(path, LABELS, name=f"facedet face detector ({quantize}, {size}x{size})",
                                        version=__version__, author="facedet",
                                        description=metadata_description(config, params, quantize))
                verify_tflite(path, quantize, images[:2], keras_model=model, score_threshold=params.score_threshold)
                manifest.append(exported)
                tqdm.write(f"{export_dir / path.name}: {path.stat().st_size / 1024:.0f} KiB")
        (tmp / "labels.txt").write_text("\n".join(LABELS) + "\n", encoding="utf-8")
        write_manifest(tmp, manifest)


def main(argv: list[str] | None = None) -> None:
    run_stage(export, PARSER, argv, section("export", ExportParams), errors=(FileNotFoundError, ValueError),
              writes="export_dir")


if __name__ == "__main__":
    main()
