"""Resumable training: checkpoints are kept per recipe (detector, weight-shaping params, shard bytes),
so a resumed run is the run DVC asked for, and a changed recipe starts over."""

from __future__ import annotations

import dataclasses
import hashlib
import json
import shutil
from pathlib import Path

import tensorflow as tf

from facedet.model.anchors import DetectorConfig
from facedet.model.backbone_weights import backbone_weights_record
from facedet.params.sections import TrainParams
from facedet.pipeline.atomic import write_text_atomic

RUN_FILE = "run.json"  # in checkpoint_dir: what the checkpoints there were trained with
# train params that do not change the weights: a run may resume with other values
RUN_ONLY_PARAMS = ("checkpoint_every", "strategy", "log_every", "deterministic", "fused_batch_norm",
                   "download_timeout_s")


def recipe(config: DetectorConfig, params: TrainParams, train_files: list[str]) -> dict:
    """What checkpoints depend on: the detector, every param that shapes the weights (steps too: the
    schedule depends on it) and the bytes of the training shards."""
    train = dataclasses.asdict(params)
    for key in RUN_ONLY_PARAMS:
        train.pop(key)
    digest = hashlib.sha256()
    for path in sorted(train_files):
        with open(path, "rb") as shard:
            while block := shard.read(1 << 22):
                digest.update(block)
    return {"detector": dataclasses.asdict(config), "train": train, "train_shards_sha256": digest.hexdigest(),
            "backbone": backbone_weights_record(params.backbone_weights)}


def restore(checkpoint: tf.train.Checkpoint, checkpoint_dir: Path, run_recipe: dict, chief: bool = True) -> int:
    """Restore the newest checkpoint trained with the same recipe; return the step to start from.
    Otherwise the chief clears `checkpoint_dir` for this recipe (other workers only ever read it)."""
    run_file = checkpoint_dir / RUN_FILE
    latest = tf.train.latest_checkpoint(str(checkpoint_dir))
    if latest and run_file.is_file() and json.loads(run_file.read_text()) == json.loads(json.dumps(run_recipe)):
        checkpoint.restore(latest).assert_existing_objects_matched()
        step = int(checkpoint.step.numpy())
        print(f"resuming from {latest} (step {step})")
        return step
    if not chief:
        return 0
    if checkpoint_dir.exists():
        if latest:
            print(f"{checkpoint_dir}: checkpoints from another recipe, starting over")
        shutil.rmtree(checkpoint_dir)
    checkpoint_dir.mkdir(parents=True, exist_ok=True)
    write_text_atomic(run_file, json.dumps(run_recipe, indent=2, sort_keys=True) + "\n")
    return 0
