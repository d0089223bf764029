"""Resumable training: checkpoints are kept per recipe (detector, weight-shaping params, shard bytes),
so a resumed run is the run DVC asked for, and a changed recipe starts over."""

from __future__ import annotations

import dataclasses
import hashlib
import json
import shutil
from pathlib import Path

import tensorflow as tf

from facedet.model.backbone_weights import backbone_weights_record
from facedet.model.config import DetectorConfig
from facedet.params.sections import TrainParams
from facedet.process.atomic import write_text_atomic

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


CHECKPOINT_STATE = "checkpoint"  # TensorFlow's list of the checkpoints in a directory (a text proto)
BROKEN_SUFFIX = ".broken"  # a checkpoint that does not load is renamed ckpt-N.*.broken


def checkpoints_by_step(checkpoint_dir: Path) -> list[Path]:
    """The checkpoint prefixes (`ckpt-N`) in `checkpoint_dir` with an index file, oldest first (read from
    the files, not TensorFlow's state file, which a kill can leave stale)."""
    def step(index: Path) -> int:
        return int(index.stem.split("-")[-1]) if index.stem.split("-")[-1].isdigit() else -1

    return [i.with_suffix("") for i in sorted(checkpoint_dir.glob("ckpt-*.index"), key=step) if step(i) >= 0]


def checkpoint_problem(prefix: Path) -> str:
    """'' if every tensor of the checkpoint `prefix` reads back (each is checked against its CRC),
    else TensorFlow's complaint in one line (a truncated or corrupt ckpt-N.data-* or .index)."""
    try:
        reader = tf.train.load_checkpoint(str(prefix))
        for name in reader.get_variable_to_shape_map():
            reader.get_tensor(name)
    except Exception as err:  # noqa: BLE001 - TF's reader raises OpError, IndexError, ValueError, ...
        text = getattr(err, "message", "") or str(err)
        return text.strip().splitlines()[0][:200] if text.strip() else type(err).__name__
    return ""


def set_aside(prefix: Path) -> None:
    """Rename every file of checkpoint `prefix` to <file>.broken (kept for a look, never read again)."""
    for path in sorted(prefix.parent.glob(prefix.name + ".*")):
        if not path.name.endswith(BROKEN_SUFFIX):
            path.rename(path.with_name(path.name + BROKEN_SUFFIX))


def newest_good_checkpoint(checkpoint_dir: Path, chief: bool = True) -> Path | None:
    """The newest checkpoint in `checkpoint_dir` that loads. The chief sets aside each newer one that
    does not (one line each) and points TensorFlow's state file at what is left."""
    found = checkpoints_by_step(checkpoint_dir)
    good = None
    for prefix in reversed(found):
        problem = checkpoint_problem(prefix)
        if not problem:
            good = prefix
            break
        if chief:
            set_aside(prefix)
            then = "trying the one before" if found.index(prefix) else "training starts over"
            print(f"train: warning: checkpoint {prefix} does not load ({problem}): set aside as "
                  f"{prefix.name}.*{BROKEN_SUFFIX}; {then}")
    if chief and found and good != found[-1]:
        kept = [p.name for p in checkpoints_by_step(checkpoint_dir)]
        if kept:
            write_text_atomic(checkpoint_dir / CHECKPOINT_STATE, f'model_checkpoint_path: "{kept[-1]}"\n' +
                              "".join(f'all_model_checkpoint_paths: "{name}"\n' for name in kept))
        else:
            (checkpoint_dir / CHECKPOINT_STATE).unlink(missing_ok=True)
    return good


def restore(checkpoint: tf.train.Checkpoint, checkpoint_dir: Path, run_recipe: dict, chief: bool = True) -> int:
    """Restore the newest checkpoint that loads and was trained with the same recipe; return the step
    to start from (0 when none loads: what was set aside stays, `newest_good_checkpoint`). For another
    recipe the chief clears `checkpoint_dir` (other workers only ever read it). The caller checks the
    training shards first: a shard that changed because it is corrupt must stop training before it
    clears good checkpoints as another recipe's."""
    run_file = checkpoint_dir / RUN_FILE
    same_recipe = run_file.is_file() and json.loads(run_file.read_text()) == json.loads(json.dumps(run_recipe))
    latest = newest_good_checkpoint(checkpoint_dir, chief) if checkpoint_dir.is_dir() and same_recipe else None
    if latest is not None:
        checkpoint.restore(str(latest)).assert_existing_objects_matched()
        step = int(checkpoint.step.numpy())
        print(f"resuming from {latest} (step {step})")
        return step
    if not chief:
        return 0
    if checkpoint_dir.exists() and not same_recipe:  # the same recipe keeps what was set aside
        if checkpoints_by_step(checkpoint_dir):
            print(f"{checkpoint_dir}: checkpoints from another recipe, starting over")
        shutil.rmtree(checkpoint_dir)
    checkpoint_dir.mkdir(parents=True, exist_ok=True)
    write_text_atomic(run_file, json.dumps(run_recipe, indent=2, sort_keys=True) + "\n")
    return 0
