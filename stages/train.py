"""Stage `train`: TFRecord shards -> trained SSD face detector.

Reads params `model` (preset: configs/<preset>.yaml) and `train`, data/tfrecords/train.record-*
(and val.record-* for the validation loss). Writes models/detector/{model.keras, detector.json},
DVCLive curves in dvclive/train/, and resumable checkpoints in models/checkpoints/ (local resume
state: git-ignored, not a DVC output) with TensorBoard logs in models/checkpoints/tensorboard/.
A killed run resumes from its last checkpoint when run again with the same params and data.
"""

from __future__ import annotations

from pathlib import Path

from facedet.model.anchors import DetectorConfig, load_preset
from facedet.params.loader import exit_on_bad_params, load_section, read_params_file
from facedet.params.sections import ModelParams, TrainParams
from facedet.process.disk import exit_on_disk_full
from facedet.process.lifetime import die_with_parent
from facedet.process.paths import CHECKPOINT_DIR, CONFIGS_DIR, LIVE_DIR, MODEL_DIR, TFRECORD_DIR
from facedet.process.stage_args import stage_parser
from facedet.train.determinism import pin_determinism

PARSER = stage_parser("train", __doc__, configs_dir=CONFIGS_DIR, tfrecord_dir=TFRECORD_DIR, model_dir=MODEL_DIR,
                      checkpoint_dir=CHECKPOINT_DIR, live_dir=LIVE_DIR)


def pin_if_deterministic(params_file: Path) -> None:
    """With `train.deterministic: true`, set TensorFlow up for bit-identical runs (facedet.train.determinism):
    before TensorFlow starts, since it picks oneDNN and its thread pools then."""
    with exit_on_bad_params("train"):
        section = read_params_file(params_file).get("train")
    if isinstance(section, dict) and section.get("deterministic") is True:
        pin_determinism()


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
    args = PARSER.parse_args(argv)
    die_with_parent()
    pin_if_deterministic(args.params)
    with exit_on_bad_params("train"):
        model = load_section("model", ModelParams, args.params)
        params = load_section("train", TrainParams, args.params)
        config = load_preset(model.preset, args.configs_dir)
    from facedet.data.tfrecord_schema import CorruptShardError  # TF: not for --help or a params error
    from facedet.model.ssd import BackboneWeightsError

    with exit_on_bad_params("train", BackboneWeightsError, FloatingPointError, FileNotFoundError, CorruptShardError), \
            exit_on_disk_full("train", args.model_dir.parent):
        train(params, config, args.tfrecord_dir, args.model_dir, args.checkpoint_dir, args.live_dir)


if __name__ == "__main__":
    main()
