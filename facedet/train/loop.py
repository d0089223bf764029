"""The training loop: a custom tf.function train step under a tf.distribute strategy
(facedet.train.strategy), the scheduled learning rate (facedet.train.schedule), L2 weight decay,
the val loss, resumable checkpoints (facedet.train.checkpoints), DVCLive curves and TensorBoard logs
(facedet.train.curves), ending in model.keras + detector.json (facedet.train.save).

`train()` resumes from the newest checkpoint in `checkpoint_dir` when one exists for the same
recipe (a changed recipe starts over and clears the old ones). A resumed run is the run that was
interrupted: the input stream skips the examples already used (same shuffle, same augmentation
draws), DVCLive's files are put back as they were at the checkpoint and its step count continues.

Speed on CPU: batch norm trains with TF's fused kernel (facedet.train.fused_batch_norm); mixed
precision stays off (float32): mixed_bfloat16 measured slower on these CPUs.
"""

from __future__ import annotations

import math
import os
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, NamedTuple

import keras
import numpy as np
import tensorflow as tf
from tqdm import tqdm

from facedet.data.tfrecord_schema import check_records_readable
from facedet.model.anchors import anchor_boxes, level_anchor_counts
from facedet.model.backbone_weights import backbone_weights_record
from facedet.model.config import DetectorConfig
from facedet.model.losses import detection_loss
from facedet.model.ssd import build_detector
from facedet.params.sections import LossParams, TrainParams
from facedet.process.disk import require_free_space
from facedet.process.paths import LIVE_DIR
from facedet.train.checkpoints import recipe, restore
from facedet.train.curves import LIVE_SNAPSHOT, log_metrics, open_live, snapshot_live
from facedet.train.determinism import is_pinned
from facedet.train.fused_batch_norm import fused_batch_norm
from facedet.train.input import make_dataset
from facedet.train.save import save_detector
from facedet.train.schedule import learning_rate_at, make_optimizer
from facedet.train.strategy import is_chief, make_strategy


@dataclass
class TrainState:
    """What a checkpoint holds: the detector, its optimizer (slots included) and the steps done."""

    model: keras.Model
    optimizer: keras.optimizers.Optimizer
    step: tf.Variable
    checkpoint: tf.train.Checkpoint


def build_train_state(params: TrainParams, config: DetectorConfig, strategy: tf.distribute.Strategy) -> TrainState:
    """The detector (random or `backbone_weights` init) and a built optimizer, under `strategy`."""
    with strategy.scope():
        model = build_detector(config, params.backbone_weights, params.download_timeout_s,
                               frozen_backbone_batch_norm=params.backbone_batch_norm == "frozen",
                               frozen_backbone_blocks=params.frozen_backbone_blocks)
        optimizer = make_optimizer(params)
        optimizer.build(model.trainable_variables)
        step = tf.Variable(0, dtype=tf.int64, trainable=False, name="global_step")
        checkpoint = tf.train.Checkpoint(model=model, optimizer=optimizer, step=step)
    return TrainState(model, optimizer, step, checkpoint)


def _decayed(model: keras.Model) -> list:
    """Convolution kernels get L2 decay; biases and batch-norm parameters do not."""
    return [v for v in model.trainable_variables if "kernel" in v.path]


def make_train_step(state: TrainState, params: TrainParams, strategy: tf.distribute.Strategy,
                    anchors: np.ndarray | None = None):
    """A compiled `train_step(iterator) -> {'loss/total', 'loss/localization', 'loss/classification',
    'loss/l2'}` that takes one global batch `(images, targets)` from a (distributed) iterator over
    `make_dataset` batches, runs forward + backward on each replica and applies the gradients.
    anchors: float32 (A, 4) `[ymin, xmin, ymax, xmax]`, for the losses on decoded boxes."""
    model, optimizer = state.model, state.optimizer
    decayed = _decayed(model)

    def replica_step(images, targets):
        with tf.GradientTape() as tape:
            outputs = model(images, training=True)
            parts = detection_loss(targets["box_targets"], targets["labels"], outputs["box_encodings"],
                                   outputs["class_logits"], params.loss, anchors)
            l2 = params.weight_decay * tf.add_n([tf.reduce_sum(tf.square(v)) for v in decayed])
            total = parts["total"] + l2
            scaled = total / strategy.num_replicas_in_sync  # gradients are summed over replicas
        grads = tape.gradient(scaled, model.trainable_variables)
        optimizer.apply_gradients(zip(grads, model.trainable_variables))
        return {"loss/total": total, "loss/localization": parts["localization"],
                "loss/classification": parts["classification"], "loss/l2": l2}

    @tf.function
    def train_step(iterator):
        per_replica = strategy.run(replica_step, args=next(iterator))
        return {k: strategy.reduce(tf.distribute.ReduceOp.MEAN, v, axis=None) for k, v in per_replica.items()}

    return train_step


def train(params: TrainParams, config: DetectorConfig, train_files: list[str], model_dir: str | os.PathLike,
          checkpoint_dir: str | os.PathLike, live_dir: str | os.PathLike | None = LIVE_DIR,
          val_files: list[str] | None = None, progress: bool = True,
          tensorboard_dir: str | os.PathLike | None = None) -> dict[str, float]:
    """Train (or resume training) the detector and write `model_dir/{model.keras, detector.json}`.

    Checkpoints every `checkpoint_every` steps (and at the end) in `checkpoint_dir`; the val loss
    (if `val_files`) at the same steps; DVCLive metrics in `live_dir` and TensorBoard scalars in
    `tensorboard_dir` (either None: off) every `log_every` steps. Returns the last logged metrics
    (losses, learning rate, images/s).
    """
    run = start_run(params, config, train_files, val_files, Path(checkpoint_dir))
    anchors = anchor_boxes(config)
    matching = dict(positive_iou=params.positive_iou, negative_iou=params.negative_iou, assignment=params.assignment,
                    atss_top_k=params.atss_top_k, level_counts=level_anchor_counts(config))
    # A resumed run skips the examples the first `start` steps used (reading records, not decoding them).
    dataset = make_dataset(train_files, anchors, config.input_size, params.batch_size, training=True,
                           augment=params.augment, seed=params.seed, skip=run.start * params.batch_size, **matching)
    val_dataset = (make_dataset(val_files, anchors, config.input_size, params.batch_size, training=False, **matching)
                   if val_files else None)
    train_step = make_train_step(run.state, params, run.strategy, anchors)
    val_loss = make_loss_function(run.state.model, params.loss, anchors)
    curves = Curves(open_live(live_dir, run.checkpoint_dir / LIVE_SNAPSHOT, run.start) if run.chief else None,
                    tf.summary.create_file_writer(str(tensorboard_dir)) if run.chief and tensorboard_dir else None,
                    live_dir)
    metrics = run_steps(run, params, train_step, dataset, (val_loss, val_dataset), curves, progress)
    if curves.live is not None:
        curves.live.end()
    if curves.board is not None:
        curves.board.close()
    if run.chief:
        save_detector(run.state.model, config, model_dir, backbone_weights_record(params.backbone_weights))
    return metrics


@dataclass
class Run:
    """A started (or resumed) run: its strategy, train state, whether this worker is the chief, the step it
    starts from, and where its checkpoints go."""

    strategy: tf.distribute.Strategy
    state: TrainState
    chief: bool
    start: int
    checkpoint_dir: Path
    manager: tf.train.CheckpointManager


class Curves(NamedTuple):
    """Where a run logs: DVCLive (None: off or not the chief), TensorBoard (None: off) and DVCLive's folder."""

    live: Any
    board: Any
    live_dir: str | os.PathLike | None


def start_run(params: TrainParams, config: DetectorConfig, train_files: list[str], val_files: list[str] | None,
              checkpoint_dir: Path) -> Run:
    """Seed, strategy, the detector and optimizer, restored from the newest checkpoint of the same recipe
    (after checking the disk has room and the shards read)."""
    if params.deterministic:
        tf.config.experimental.enable_op_determinism()
        if not is_pinned():
            print("train: warning: deterministic, but TensorFlow started before pin_determinism() (oneDNN / "
                  "threads): runs may differ in the last bits (see facedet/train/determinism.py)")
    keras.utils.set_random_seed(params.seed)
    strategy = make_strategy(params.strategy)
    print(f"train: {type(strategy).__name__} with {strategy.num_replicas_in_sync} replica(s)")
    state = build_train_state(params, config, strategy)
    chief = is_chief()
    if chief:  # two checkpoints kept, a third being written, model.keras and its temporary copy
        weights = sum(v.numpy().nbytes for v in state.model.variables)
        need = 3 * (weights + sum(v.numpy().nbytes for v in state.optimizer.variables)) + 2 * weights
        require_free_space(checkpoint_dir, need, "training (checkpoints and model.keras)")
    check_records_readable([*train_files, *(val_files or [])])  # before restore() may clear checkpoints
    start = restore(state.checkpoint, checkpoint_dir, recipe(config, params, train_files), chief)
    # Non-chief workers must save too (collective ops), but somewhere nobody reads.
    save_dir = str(checkpoint_dir) if chief else tempfile.mkdtemp(prefix="facedet-worker-ckpt-")
    manager = tf.train.CheckpointManager(state.checkpoint, save_dir, max_to_keep=2)
    return Run(strategy, state, chief, start, checkpoint_dir, manager)


def run_steps(run: Run, params: TrainParams, train_step, dataset: tf.data.Dataset,
              validation: tuple[Any, tf.data.Dataset | None], curves: Curves, progress: bool) -> dict[str, float]:
    """The steps from `run.start` to `params.steps`: learning rate, step, and every `log_every` steps the
    metrics (the val loss, `validation` = (loss function, dataset), and a checkpoint every `checkpoint_every`).
    Returns the last logged metrics; FloatingPointError when the loss diverges."""
    val_loss, val_dataset = validation
    state, start = run.state, run.start
    metrics: dict[str, float] = {}
    iterator = iter(run.strategy.experimental_distribute_dataset(dataset))
    bar = tqdm(total=params.steps, initial=start, desc="train", unit="step", disable=not progress,
               dynamic_ncols=True)
    tick, tick_step = time.perf_counter(), start
    with bar, fused_batch_norm(state.model, params.fused_batch_norm):  # the bar closes before any error line
        for step in range(start, params.steps):
            lr = learning_rate_at(step, params)
            state.optimizer.learning_rate.assign(lr)
            losses = train_step(iterator)
            done = step + 1
            state.step.assign(done)
            bar.update(1)
            save = done % params.checkpoint_every == 0 or done == params.steps
            if done % params.log_every == 0 or save:
                metrics = {k: float(v) for k, v in losses.items()}
                metrics["learning_rate"] = lr
                elapsed = max(time.perf_counter() - tick, 1e-9)
                metrics["images_per_second"] = (done - tick_step) * params.batch_size / elapsed
                bar.set_postfix(loss=f"{metrics['loss/total']:.3f}", lr=f"{lr:.2e}")
                if not math.isfinite(metrics["loss/total"]):
                    raise FloatingPointError(f"training diverged at step {step}: loss {metrics['loss/total']}")
                if save and val_dataset is not None:
                    metrics.update(evaluate_loss(val_loss, val_dataset))
                log_metrics(curves.live, curves.board, step, metrics)
            if save:
                if curves.live is not None:  # first the curves, then the checkpoint: a resume trims what is newer
                    snapshot_live(curves.live_dir, run.checkpoint_dir / LIVE_SNAPSHOT)
                run.manager.save(checkpoint_number=done)
            if done % params.log_every == 0 or save:
                tick, tick_step = time.perf_counter(), done  # images/s leaves out validation and saving
    return metrics


def make_loss_function(model: keras.Model, loss_config: LossParams, anchors: np.ndarray | None = None):
    """A compiled `(images, targets) -> {'localization', 'classification', 'total'}` in inference mode
    (anchors: float32 (A, 4) `[ymin, xmin, ymax, xmax]`, for the losses on decoded boxes)."""

    @tf.function
    def batch_loss(images, targets):
        outputs = model(images, training=False)
        return detection_loss(targets["box_targets"], targets["labels"], outputs["box_encodings"],
                              outputs["class_logits"], loss_config, anchors)

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
