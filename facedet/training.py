"""Training: a custom tf.function train step under a tf.distribute strategy, warm-up + cosine
learning rate, L2 weight decay, resumable checkpoints and DVCLive logging.

`train()` resumes from the newest checkpoint in `checkpoint_dir` when one exists for the same
detector config and training recipe (a changed recipe starts over and clears the old ones),
continues DVCLive's step count, and ends by writing `model.keras` + `detector.json` atomically.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import math
import os
import shutil
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import keras
import tensorflow as tf
from tqdm import tqdm

from facedet.anchors import DetectorConfig, anchor_boxes
from facedet.atomic import atomic_path, write_text_atomic
from facedet.input import AugmentConfig, make_dataset
from facedet.losses import LossConfig, detection_loss
from facedet.model import build_detector
from facedet.params import ParamsError, field_range

RUN_FILE = "run.json"  # in checkpoint_dir: what the checkpoints there were trained with


@dataclass(frozen=True)
class TrainParams:
    """params.yaml `train`."""

    steps: int = field_range(1, 10_000_000)
    batch_size: int = field_range(1, 4096)
    learning_rate: float = field_range(0.0, 10.0)
    warmup_steps: int = field_range(0, 10_000_000)
    weight_decay: float = field_range(0.0, 1.0)
    seed: int = 7
    backbone_weights: str = "none"  # none | imagenet | <path to a MobileNetV2 weights file>
    strategy: Literal["default", "mirrored", "multi_worker"] = "default"
    checkpoint_every: int = field_range(1, 10_000_000, default=250)
    optimizer: Literal["adam", "rmsprop", "sgd"] = "adam"
    final_learning_rate: float = field_range(0.0, 1.0, default=0.0)  # as a fraction of learning_rate
    positive_iou: float = field_range(0.0, 1.0, default=0.5)
    negative_iou: float = field_range(0.0, 1.0, default=0.4)
    log_every: int = field_range(1, 1_000_000, default=10)
    loss: LossConfig = LossConfig()
    augment: AugmentConfig = AugmentConfig()

    def __post_init__(self) -> None:
        if self.negative_iou > self.positive_iou:
            raise ParamsError(f"params.yaml: 'train.negative_iou' ({self.negative_iou}) must be <= "
                              f"'train.positive_iou' ({self.positive_iou})")


def learning_rate_at(step: int, params: TrainParams) -> float:
    """Linear warm-up from 0 over `warmup_steps`, then cosine decay to `final_learning_rate` x lr at `steps`."""
    base = params.learning_rate
    if step < params.warmup_steps:
        return base * (step + 1) / params.warmup_steps
    span = max(params.steps - params.warmup_steps, 1)
    progress = min((step - params.warmup_steps) / span, 1.0)
    floor = base * params.final_learning_rate
    return floor + (base - floor) * 0.5 * (1 + math.cos(math.pi * progress))


def make_strategy(name: str) -> tf.distribute.Strategy:
    """'default' (one device), 'mirrored' (all local devices), 'multi_worker' (TF_CONFIG cluster)."""
    if name == "mirrored":
        return tf.distribute.MirroredStrategy()
    if name == "multi_worker":
        return tf.distribute.MultiWorkerMirroredStrategy()
    return tf.distribute.get_strategy()


def is_chief() -> bool:
    """True unless TF_CONFIG names this process a non-chief worker (only the chief writes outputs)."""
    tf_config = json.loads(os.environ.get("TF_CONFIG") or "{}")
    task = tf_config.get("task", {})
    kind, index = task.get("type"), task.get("index", 0)
    if kind in (None, "chief"):
        return True
    return kind == "worker" and index == 0 and "chief" not in tf_config.get("cluster", {})


def make_optimizer(params: TrainParams) -> keras.optimizers.Optimizer:
    if params.optimizer == "rmsprop":  # the TF OD API's SSD recipe
        return keras.optimizers.RMSprop(params.learning_rate, rho=0.9, momentum=0.9, epsilon=1.0)
    if params.optimizer == "sgd":
        return keras.optimizers.SGD(params.learning_rate, momentum=0.9, nesterov=True)
    return keras.optimizers.Adam(params.learning_rate)


def _recipe(config: DetectorConfig, params: TrainParams, train_files: list[str]) -> dict:
    """What checkpoints depend on: the detector, every param that shapes the weights (steps too: the
    schedule depends on it) and the bytes of the training shards. Checkpoints are resumed only for
    the same recipe, so a resumed run is the run DVC asked for, never a stale one continued."""
    recipe = dataclasses.asdict(params)
    for key in ("checkpoint_every", "strategy", "log_every"):
        recipe.pop(key)
    digest = hashlib.sha256()
    for path in sorted(train_files):
        with open(path, "rb") as shard:
            while block := shard.read(1 << 22):
                digest.update(block)
    return {"detector": dataclasses.asdict(config), "train": recipe, "train_shards_sha256": digest.hexdigest()}


def _decayed(model: keras.Model) -> list:
    """Convolution kernels get L2 decay; biases and batch-norm parameters do not."""
    return [v for v in model.trainable_variables if "kernel" in v.path]


def train(params: TrainParams, config: DetectorConfig, train_files: list[str], model_dir: str | os.PathLike,
          checkpoint_dir: str | os.PathLike, live_dir: str | os.PathLike | None = "dvclive/train",
          val_files: list[str] | None = None, progress: bool = True) -> dict[str, float]:
    """Train (or resume training) the detector and write `model_dir/{model.keras, detector.json}`.

    Returns the last logged metrics (losses, learning rate, images/s).
    """
    checkpoint_dir = Path(checkpoint_dir)
    keras.utils.set_random_seed(params.seed)
    strategy = make_strategy(params.strategy)
    with strategy.scope():
        model = build_detector(config, params.backbone_weights)
        optimizer = make_optimizer(params)
        optimizer.build(model.trainable_variables)
        step_var = tf.Variable(0, dtype=tf.int64, trainable=False, name="global_step")
        checkpoint = tf.train.Checkpoint(model=model, optimizer=optimizer, step=step_var)
    start = _restore(checkpoint, checkpoint_dir, _recipe(config, params, train_files))
    # Non-chief workers must save too (collective ops), but somewhere nobody reads.
    save_dir = str(checkpoint_dir) if is_chief() else tempfile.mkdtemp(prefix="facedet-worker-ckpt-")
    manager = tf.train.CheckpointManager(checkpoint, save_dir, max_to_keep=2)
    decayed = _decayed(model)

    anchors = anchor_boxes(config)
    # A resumed run draws fresh (still reproducible) augmentations instead of replaying the first steps.
    dataset = make_dataset(train_files, anchors, config.input_size, params.batch_size, training=True,
                           augment=params.augment, seed=params.seed + start, positive_iou=params.positive_iou,
                           negative_iou=params.negative_iou)
    val_dataset = (make_dataset(val_files, anchors, config.input_size, params.batch_size, training=False,
                                positive_iou=params.positive_iou, negative_iou=params.negative_iou)
                   if val_files else None)

    def replica_step(images, targets):
        with tf.GradientTape() as tape:
            outputs = model(images, training=True)
            parts = detection_loss(targets["box_targets"], targets["labels"], outputs["box_encodings"],
                                   outputs["class_logits"], params.loss)
            l2 = params.weight_decay * tf.add_n([tf.reduce_sum(tf.square(v)) for v in decayed])
            total = parts["total"] + l2
            scaled = total / strategy.num_replicas_in_sync
        grads = tape.gradient(scaled, model.trainable_variables)
        optimizer.apply_gradients(zip(grads, model.trainable_variables))
        return {"loss/total": total, "loss/localization": parts["localization"],
                "loss/classification": parts["classification"], "loss/l2": l2}

    @tf.function
    def train_step(iterator):
        per_replica = strategy.run(replica_step, args=next(iterator))
        return {k: strategy.reduce(tf.distribute.ReduceOp.MEAN, v, axis=None) for k, v in per_replica.items()}

    val_loss = make_loss_function(model, params.loss)
    live = _open_live(live_dir, resume=start > 0)
    metrics: dict[str, float] = {}
    iterator = iter(strategy.experimental_distribute_dataset(dataset))
    bar = tqdm(total=params.steps, initial=start, desc="train", unit="step", disable=not progress,
               dynamic_ncols=True)
    tick, tick_step = time.perf_counter(), start
    for step in range(start, params.steps):
        lr = learning_rate_at(step, params)
        optimizer.learning_rate.assign(lr)
        losses = train_step(iterator)
        step_var.assign(step + 1)
        bar.update(1)
        last = step == params.steps - 1
        if (step + 1) % params.log_every == 0 or last:
            now = time.perf_counter()
            metrics = {k: float(v) for k, v in losses.items()}
            metrics["learning_rate"] = lr
            metrics["images_per_second"] = (step + 1 - tick_step) * params.batch_size / max(now - tick, 1e-9)
            tick, tick_step = now, step + 1
            bar.set_postfix(loss=f"{metrics['loss/total']:.3f}", lr=f"{lr:.2e}")
            if not math.isfinite(metrics["loss/total"]):
                raise FloatingPointError(f"training diverged at step {step}: loss {metrics['loss/total']}")
        if (step + 1) % params.checkpoint_every == 0 or last:
            if val_dataset is not None:
                metrics.update(evaluate_loss(val_loss, val_dataset))
            manager.save(checkpoint_number=step + 1)
        if live is not None and ((step + 1) % params.log_every == 0 or last):
            live.step = step
            for name, value in metrics.items():
                live.log_metric(name, value)
            live.make_summary()
    bar.close()
    if live is not None:
        live.end()
    if is_chief():
        save_detector(model, config, model_dir)
    return metrics


def make_loss_function(model: keras.Model, loss_config: LossConfig):
    """A compiled `(images, targets) -> {'localization', 'classification', 'total'}` in inference mode."""

    @tf.function
    def batch_loss(images, targets):
        outputs = model(images, training=False)
        return detection_loss(targets["box_targets"], targets["labels"], outputs["box_encodings"],
                              outputs["class_logits"], loss_config)

    return batch_loss


def evaluate_loss(loss_function, dataset: tf.data.Dataset) -> dict[str, float]:
    """Mean loss parts over a finite (val) dataset of `(images, targets)` batches, keyed 'val/loss/...'.

    loss_function: from `make_loss_function`.
    """
    sums: dict[str, float] = {}
    batches = 0
    for images, targets in dataset:
        for key, value in loss_function(images, targets).items():
            sums[key] = sums.get(key, 0.0) + float(value)
        batches += 1
    return {f"val/loss/{k}": v / max(batches, 1) for k, v in sums.items()}


def save_detector(model: keras.Model, config: DetectorConfig, model_dir: str | os.PathLike) -> None:
    """Write `model_dir/model.keras` and `model_dir/detector.json` (the directory replaced atomically)."""
    with atomic_path(model_dir, is_dir=True) as tmp:
        model.save(tmp / "model.keras")
        (tmp / "detector.json").write_text(config.to_json(), encoding="utf-8")


def _restore(checkpoint: tf.train.Checkpoint, checkpoint_dir: Path, recipe: dict) -> int:
    """Restore the newest checkpoint trained with the same recipe; return the step to start from."""
    run_file = checkpoint_dir / RUN_FILE
    latest = tf.train.latest_checkpoint(str(checkpoint_dir))
    if latest and run_file.is_file() and json.loads(run_file.read_text()) == json.loads(json.dumps(recipe)):
        checkpoint.restore(latest).assert_existing_objects_matched()
        step = int(checkpoint.step.numpy())
        print(f"resuming from {latest} (step {step})")
        return step
    if checkpoint_dir.exists():
        if latest:
            print(f"{checkpoint_dir}: checkpoints from another recipe, starting over")
        shutil.rmtree(checkpoint_dir)
    checkpoint_dir.mkdir(parents=True, exist_ok=True)
    write_text_atomic(run_file, json.dumps(recipe, indent=2, sort_keys=True) + "\n")
    return 0


def _open_live(live_dir, resume: bool):
    if live_dir is None or not is_chief():
        return None
    from dvclive import Live

    return Live(str(live_dir), resume=resume, save_dvc_exp=False, dvcyaml=None)
