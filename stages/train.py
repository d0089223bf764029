"""Stage `train`: TFRecord shards -> trained SSD face detector.

Reads params `model` (preset: configs/<preset>.yaml) and `train`, data/tfrecords/train.record-*
(and val.record-* for the validation loss). Writes models/detector/{model.keras, detector.json},
DVCLive curves in dvclive/train/, and resumable checkpoints in models/checkpoints/ (local resume
state: git-ignored, not a DVC output) with TensorBoard logs in models/checkpoints/tensorboard/.
A killed run resumes from its last checkpoint when run again with the same params and data.
"""

from __future__ import annotations

import argparse
from dataclasses import dataclass
from pathlib import Path

from facedet.model.anchors import load_preset
from facedet.pipeline.disk import exit_on_disk_full
from facedet.pipeline.lifetime import die_with_parent
from facedet.train.determinism import pin_determinism
from facedet.params.loader import exit_on_bad_params, load_section, read_params_file

TFRECORDS = Path("data/tfrecords")
MODEL_DIR = Path("models/detector")
CHECKPOINT_DIR = Path("models/checkpoints")
LIVE_DIR = Path("dvclive/train")
TENSORBOARD_DIR = CHECKPOINT_DIR / "tensorboard"  # `tensorboard --logdir models/checkpoints/tensorboard`


@dataclass(frozen=True)
class ModelParams:
    """params.yaml `model`."""

    preset: str = "ssd_mobilenet_v2_256"


def pin_if_deterministic() -> None:
    """With `train.deterministic: true`, set TensorFlow up for bit-identical runs (facedet.train.determinism):
    before TensorFlow starts, since it picks oneDNN and its thread pools then."""
    with exit_on_bad_params("train"):
        section = read_params_file().get("train")
    if isinstance(section, dict) and section.get("deterministic") is True:
        pin_determinism()


def train() -> None:
    from facedet.train import loop as training
    from facedet.train.input import list_shards

    with exit_on_bad_params("train"):
        model = load_section("model", ModelParams)
        params = load_section("train", training.TrainParams)
        config = load_preset(model.preset)
    train_files = list_shards(TFRECORDS, "train")
    if not train_files:
        raise SystemExit(f"train: error: no {TFRECORDS}/train.record-* shards (run the shard stage first)")
    metrics = training.train(params, config, train_files, MODEL_DIR, CHECKPOINT_DIR, LIVE_DIR,
                             val_files=list_shards(TFRECORDS, "val"), tensorboard_dir=TENSORBOARD_DIR)
    print(f"wrote {MODEL_DIR}: loss {metrics.get('loss/total', float('nan')):.3f}, "
          f"val loss {metrics.get('val/loss/total', float('nan')):.3f}")


def main(argv: list[str] | None = None) -> None:
    argparse.ArgumentParser(prog="python -m stages.train", description=__doc__,
                            formatter_class=argparse.RawDescriptionHelpFormatter).parse_args(argv)
    die_with_parent()
    pin_if_deterministic()
    from facedet.model.ssd import BackboneWeightsError

    with exit_on_bad_params("train", BackboneWeightsError, FloatingPointError), \
            exit_on_disk_full("train", MODEL_DIR.parent):
        train()


if __name__ == "__main__":
    main()
