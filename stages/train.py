"""Stage `train`: TFRecord shards -> trained SSD face detector.

Reads params `model` (preset: configs/<preset>.yaml) and `train`, data/tfrecords/train.record-*
(and val.record-* for the validation loss). Writes models/detector/{model.keras, detector.json},
DVCLive curves in dvclive/train/, and resumable checkpoints in models/checkpoints/ (local resume
state: git-ignored, not a DVC output) with TensorBoard logs in models/checkpoints/tensorboard/.
A killed run resumes from its last checkpoint when run again with the same params and data.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from facedet.model.config import DetectorConfig, load_preset
from facedet.params.loader import load_section, read_params_file
from facedet.params.sections import ModelParams, TrainParams
from facedet.process.paths import CHECKPOINT_DIR, CONFIGS_DIR, LIVE_DIR, MODEL_DIR, TFRECORD_DIR
from facedet.process.stage_runner import run_stage, stage_parser
from facedet.train.determinism import pin_determinism

PARSER = stage_parser("train", __doc__, configs_dir=CONFIGS_DIR, tfrecord_dir=TFRECORD_DIR, model_dir=MODEL_DIR,
                      checkpoint_dir=CHECKPOINT_DIR, live_dir=LIVE_DIR)


def train_params(args: argparse.Namespace) -> dict[str, TrainParams | DetectorConfig]:
    """params.yaml `train` and the preset `model.preset` names. With `train.deterministic: true`, first sets
    TensorFlow up for bit-identical runs (facedet.train.determinism): before TensorFlow starts, since it
    picks oneDNN and its thread pools then."""
    section = read_params_file(args.params).get("train")
    if isinstance(section, dict) and section.get("deterministic") is True:
        pin_determinism()
    model = load_section("model", ModelParams, args.params)
    return {"params": load_section("train", TrainParams, args.params),
            "config": load_preset(model.preset, args.configs_dir)}


def train_errors() -> tuple[type[Exception], ...]:
    """The errors that end the stage in one line; their modules import TensorFlow or Keras."""
    from facedet.data.tfrecord_schema import CorruptShardError  # TF: not for --help or a params error
    from facedet.model.backbone_weights import BackboneWeightsError

    return BackboneWeightsError, FloatingPointError, FileNotFoundError, CorruptShardError


def train(params: TrainParams, config: DetectorConfig, tfrecord_dir: Path, model_dir: Path, checkpoint_dir: Path,
          live_dir: Path) -> None:
    from facedet.data.tfrecord_schema import list_shards
    from facedet.train.loop import train as train_detector

    train_files = list_shards(tfrecord_dir, "train")
    if not train_files:
        raise FileNotFoundError(f"no {tfrecord_dir}/train.record-* shards (run the shard stage first)")
    # `tensorboard --logdir models/checkpoints/tensorboard`
    metrics = train_detector(params, config, train_files, model_dir, checkpoint_dir, live_dir,
                             val_files=list_shards(tfrecord_dir, "val"), tensorboard_dir=checkpoint_dir / "tensorboard")
    print(f"wrote {model_dir}: loss {metrics.get('loss/total', float('nan')):.3f}, "
          f"val loss {metrics.get('val/loss/total', float('nan')):.3f}")


def main(argv: list[str] | None = None) -> None:
    run_stage(train, PARSER, argv, train_params, errors=train_errors, writes="model_dir")


if __name__ == "__main__":
    main()
