"""Where the pipeline's stages read and write, relative to the repository root: one name per path.

Each stage's path flags default to these. dvc.yaml spells the same paths out (DVC reads no Python);
tests/test_dvc_yaml.py keeps the two in agreement.
"""

from __future__ import annotations

from pathlib import Path

CONFIGS_DIR = Path("configs")                    # model presets, configs/<preset>.yaml
EXTRA_DIR = Path("data/extra")                   # extra_train@<name>: <name>.zip, indexed extra training sources
DOWNLOAD_DIR = Path("data/downloads")            # resumable partial downloads (outside DVC)
WIDERFACE_LOCK = Path("data/widerface.lock.json")  # sha256 pinned on first download (commit it)
RAW_DIR = Path("data/raw")                       # fetch: the four official archives
INTERIM_DIR = Path("data/interim")               # filter: the kept images and faces (csv)
FILTER_METRICS = Path("reports/filter.json")     # filter: counts kept and dropped, per reason
FACE_SIZES = Path("reports/filter/face_sizes.csv")  # filter: the face-size plot
TFRECORD_DIR = Path("data/tfrecords")            # shard: TF OD API tf.Example shards
MODEL_DIR = Path("models/detector")              # train: model.keras, detector.json
CHECKPOINT_DIR = Path("models/checkpoints")      # train: resume state and TensorBoard logs (git-ignored, not DVC)
LIVE_DIR = Path("dvclive/train")                 # train: DVCLive metrics and curves
EVALUATE_DIR = Path("reports/evaluate")          # evaluate: the Keras model's scores
EXPORT_DIR = Path("models/export")               # export: the .tflite files, labels.txt, export.json
EVALUATE_TFLITE_DIR = Path("reports/evaluate_tflite")  # evaluate_tflite: the shipped files' scores
MODEL_CARD_DIR = Path("models")                  # model_card: model_card.md, model_card.json
MODEL_METRICS = Path("reports/model.json")       # model_card: each .tflite's size and latency
HEADLINE_METRICS = Path("reports/metrics.json")  # model_card: the shipped file's APs, size, latency (DVC's metrics)
