"""Training: a custom tf.function train step under a tf.distribute strategy, warm-up + cosine
learning rate, L2 weight decay, resumable checkpoints, DVCLive curves and TensorBoard logs.

`train()` resumes from the newest checkpoint in `checkpoint_dir` when one exists for the same
recipe (detector config, training params, shard bytes; a changed recipe starts over and clears the
old ones). A resumed run is the run that was interrupted: the input stream skips the examples
already used (same shuffle, same augmentation draws), DVCLive's files are put back as they were at
the checkpoint (`dvc repro` deletes a stage's outputs before running it) and its step count
continues. The run ends by writing `model.keras` + `detector.json` atomically.

Speed on CPU: batch norm trains with TF's fused kernel (`fused_batch_norm`, 1.9x faster steps than
Keras 3's own); mixed precision stays off (float32): mixed_bfloat16 measured slower on these CPUs.
"""

from __future__ import annotations

import contextlib
import dataclasses
import hashlib
import json
import math
import os
import re
import shutil
import tempfile
import time
import zipfile
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import keras
import tensorflow as tf
from tqdm import tqdm

from facedet.model.anchors import DetectorConfig, anchor_boxes
from facedet.pipeline.atomic import atomic_path, write_text_atomic
from facedet.train.determinism import is_pinned
from facedet.pipeline.disk import require_free_space
from facedet.train.input import AugmentConfig, make_dataset
from facedet.model.losses import LossConfig, detection_loss
from facedet.model.ssd import build_detector
from facedet.params.loader import ParamsError, field_range

SHARED_OBJECT_ID = re.compile(rb'"shared_object_id": (\d+)')  # id() of a shared object, in config.json
RUN_FILE = "run.json"  # in checkpoint_dir: what the checkpoints there were trained with
LIVE_SNAPSHOT = "dvclive"  # in checkpoint_dir: DVCLive's files as of the newest checkpoint


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
    download_timeout_s: float = field_range(1, 3600, default=60)  # imagenet: give up when nothing comes for this long
    strategy: Literal["default", "mirrored", "multi_worker"] = "default"
    checkpoint_every: int = field_range(1, 10_000_000, default=250)
    optimizer: Literal["adam", "rmsprop", "sgd"] = "adam"
    final_learning_rate: float = field_range(0.0, 1.0, default=0.0)  # as a fraction of learning_rate
    positive_iou: float = field_range(0.0, 1.0, default=0.5)
    negative_iou: float = field_range(0.0, 1.0, default=0.4)
    log_every: int = field_range(1, 1_000_000, default=10)
    deterministic: bool = False  # bit-identical reruns on the same machine (facedet.train.determinism; slower)
    fused_batch_norm: bool = True  # train batch norm with TF's fused kernel (see FusedBatchNormalization)
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
    """'default' (one device); 'mirrored' (every local GPU, else every logical CPU device: one unless
    the process split its CPU with `tf.config.set_logical_device_configuration`); 'multi_worker'
    (the cluster in TF_CONFIG, each worker mirrored over its local devices)."""
    if name == "mirrored":
        devices = tf.config.list_logical_devices("GPU") or tf.config.list_logical_devices("CPU")
        return tf.distribute.MirroredStrategy([d.name for d in devices])
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


class FusedBatchNormalization(keras.layers.BatchNormalization):
    """Keras' BatchNormalization with TF's fused kernel (FusedBatchNormV3) in training mode: one op
    forward and one backward instead of Keras 3's ~10 elementwise ops and reductions over each
    activation, as tf_keras had. Same variables, same inference path. `fused_batch_norm(model)`
    swaps it in for training only: saved models hold plain BatchNormalization layers."""

    def call(self, inputs, training=None, mask=None):
        fusable = (training and self.trainable and mask is None and self.scale and self.center
                   and not self.renorm and not self.synchronized and inputs.dtype == tf.float32
                   and len(inputs.shape) == 4 and self.axis in (-1, 3))
        if not fusable:
            return super().call(inputs, training=training, mask=mask)
        # The running averages come back updated (their variance with the unbiased batch variance).
        outputs, moving_mean, moving_variance = tf.compat.v1.nn.fused_batch_norm(
            inputs, self.gamma, self.beta, mean=self.moving_mean, variance=self.moving_variance,
            epsilon=self.epsilon, is_training=True, exponential_avg_factor=1.0 - self.momentum)
        self.moving_mean.assign(moving_mean)
        self.moving_variance.assign(moving_variance)
        return outputs


@contextlib.contextmanager
def fused_batch_norm(model: keras.Model, enabled: bool = True):
    """While inside, `model`'s BatchNormalization layers train with the fused kernel (see
    `FusedBatchNormalization`); on exit they are plain Keras layers again (before any save)."""
    swapped = [layer for layer in model.layers if type(layer) is keras.layers.BatchNormalization] if enabled else []
    for layer in swapped:
        layer.__class__ = FusedBatchNormalization
    try:
        yield
    finally:
        for layer in swapped:
            layer.__class__ = keras.layers.BatchNormalization


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
        model = build_detector(config, params.backbone_weights, params.download_timeout_s)
        optimizer = make_optimizer(params)
        optimizer.build(model.trainable_variables)
        step = tf.Variable(0, dtype=tf.int64, trainable=False, name="global_step")
        checkpoint = tf.train.Checkpoint(model=model, optimizer=optimizer, step=step)
    return TrainState(model, optimizer, step, checkpoint)


def _decayed(model: keras.Model) -> list:
    """Convolution kernels get L2 decay; biases and batch-norm parameters do not."""
    return [v for v in model.trainable_variables if "kernel" in v.path]


def make_train_step(state: TrainState, params: TrainParams, strategy: tf.distribute.Strategy):
    """A compiled `train_step(iterator) -> {'loss/total', 'loss/localization', 'loss/classification',
    'loss/l2'}` that takes one global batch `(images, targets)` from a (distributed) iterator over
    `make_dataset` batches, runs forward + backward on each replica and applies the gradients."""
    model, optimizer = state.model, state.optimizer
    decayed = _decayed(model)

    def replica_step(images, targets):
        with tf.GradientTape() as tape:
            outputs = model(images, training=True)
            parts = detection_loss(targets["box_targets"], targets["labels"], outputs["box_encodings"],
                                   outputs["class_logits"], params.loss)
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
          checkpoint_dir: str | os.PathLike, live_dir: str | os.PathLike | None = "dvclive/train",
          val_files: list[str] | None = None, progress: bool = True,
          tensorboard_dir: str | os.PathLike | None = None) -> dict[str, float]:
    """Train (or resume training) the detector and write `model_dir/{model.keras, detector.json}`.

    Checkpoints every `checkpoint_every` steps (and at the end) in `checkpoint_dir`; the val loss
    (if `val_files`) at the same steps; DVCLive metrics in `live_dir` and TensorBoard scalars in
    `tensorboard_dir` (either None: off) every `log_every` steps. Returns the last logged metrics
    (losses, learning rate, images/s).
    """
    checkpoint_dir = Path(checkpoint_dir)
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
    start = _restore(state.checkpoint, checkpoint_dir, _recipe(config, params, train_files), chief)
    # Non-chief workers must save too (collective ops), but somewhere nobody reads.
    save_dir = str(checkpoint_dir) if chief else tempfile.mkdtemp(prefix="facedet-worker-ckpt-")
    manager = tf.train.CheckpointManager(state.checkpoint, save_dir, max_to_keep=2)

    anchors = anchor_boxes(config)
    # A resumed run skips the examples the first `start` steps used (reading records, not decoding them).
    dataset = make_dataset(train_files, anchors, config.input_size, params.batch_size, training=True,
                           augment=params.augment, seed=params.seed, skip=start * params.batch_size,
                           positive_iou=params.positive_iou, negative_iou=params.negative_iou)
    val_dataset = (make_dataset(val_files, anchors, config.input_size, params.batch_size, training=False,
                                positive_iou=params.positive_iou, negative_iou=params.negative_iou)
                   if val_files else None)
    train_step = make_train_step(state, params, strategy)
    val_loss = make_loss_function(state.model, params.loss)
    live = _open_live(live_dir, checkpoint_dir / LIVE_SNAPSHOT, start) if chief else None
    board = tf.summary.create_file_writer(str(tensorboard_dir)) if chief and tensorboard_dir else None

    metrics: dict[str, float] = {}
    iterator = iter(strategy.experimental_distribute_dataset(dataset))
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
                _log(live, board, step, metrics)
            if save:
                if live is not None:  # first the curves, then the checkpoint: a resume trims what is newer
                    _snapshot_live(live_dir, checkpoint_dir / LIVE_SNAPSHOT)
                manager.save(checkpoint_number=done)
            if done % params.log_every == 0 or save:
                tick, tick_step = time.perf_counter(), done  # images/s leaves out validation and saving
    if live is not None:
        live.end()
    if board is not None:
        board.close()
    if chief:
        save_detector(state.model, config, model_dir)
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
        model.save(tmp / "saved.keras")
        _without_save_time(tmp / "saved.keras", tmp / "model.keras")
        (tmp / "saved.keras").unlink()
        (tmp / "detector.json").write_text(config.to_json(), encoding="utf-8")


def _without_save_time(source: Path, target: Path) -> None:
    """Copy a .keras archive with what differs between processes removed: the save time
    (metadata.json's date_saved, member dates) and the memory addresses Keras writes as
    config.json's `shared_object_id` (renumbered 0, 1, ... in order of appearance), so the same
    weights give the same bytes and DVC's cache hits for the stages after training."""
    with zipfile.ZipFile(source) as src, zipfile.ZipFile(target, "w") as dst:
        for member in src.infolist():
            data = src.read(member)
            if member.filename == "metadata.json":
                data = json.dumps({**json.loads(data), "date_saved": "1980-01-01@00:00:00"}).encode()
            elif member.filename == "config.json":
                ids: dict[bytes, bytes] = {}
                data = SHARED_OBJECT_ID.sub(
                    lambda m: b'"shared_object_id": ' + ids.setdefault(m.group(1), str(len(ids)).encode()), data)
            dst.writestr(zipfile.ZipInfo(member.filename, date_time=(1980, 1, 1, 0, 0, 0)), data,
                         compress_type=member.compress_type)


def _recipe(config: DetectorConfig, params: TrainParams, train_files: list[str]) -> dict:
    """What checkpoints depend on: the detector, every param that shapes the weights (steps too: the
    schedule depends on it) and the bytes of the training shards. Checkpoints are resumed only for
    the same recipe, so a resumed run is the run DVC asked for, never a stale one continued."""
    recipe = dataclasses.asdict(params)
    for key in ("checkpoint_every", "strategy", "log_every", "deterministic", "fused_batch_norm",
                "download_timeout_s"):
        recipe.pop(key)
    digest = hashlib.sha256()
    for path in sorted(train_files):
        with open(path, "rb") as shard:
            while block := shard.read(1 << 22):
                digest.update(block)
    return {"detector": dataclasses.asdict(config), "train": recipe, "train_shards_sha256": digest.hexdigest()}


def _restore(checkpoint: tf.train.Checkpoint, checkpoint_dir: Path, recipe: dict, chief: bool = True) -> int:
    """Restore the newest checkpoint trained with the same recipe; return the step to start from.
    Otherwise the chief clears `checkpoint_dir` for this recipe (other workers only ever read it)."""
    run_file = checkpoint_dir / RUN_FILE
    latest = tf.train.latest_checkpoint(str(checkpoint_dir))
    if latest and run_file.is_file() and json.loads(run_file.read_text()) == json.loads(json.dumps(recipe)):
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
    write_text_atomic(run_file, json.dumps(recipe, indent=2, sort_keys=True) + "\n")
    return 0


def _open_live(live_dir, snapshot: Path, start: int):
    """DVCLive for this run; a resumed run first gets the curves back as of its checkpoint."""
    if live_dir is None:
        return None
    from dvclive import Live

    if start > 0:
        restore_live_files(live_dir, snapshot, start)
    return Live(str(live_dir), resume=start > 0, save_dvc_exp=False, dvcyaml=None)


def _snapshot_live(live_dir, snapshot: Path) -> None:
    with atomic_path(snapshot, is_dir=True) as tmp:
        shutil.copytree(live_dir, tmp, dirs_exist_ok=True)


def restore_live_files(live_dir: str | os.PathLike, snapshot: str | os.PathLike, start: int) -> None:
    """Make DVCLive's `live_dir` hold the curves of steps 0 .. start-1 exactly: copied back from
    `snapshot` (taken at the checkpoint; `dvc repro` deletes the stage's outputs before running it,
    and a killed run may have logged past its last checkpoint), then every row at step >= start dropped."""
    live_dir, snapshot = Path(live_dir), Path(snapshot)
    if snapshot.is_dir():
        if live_dir.exists():
            shutil.rmtree(live_dir)
        shutil.copytree(snapshot, live_dir)
    for tsv in sorted(live_dir.glob("plots/metrics/**/*.tsv")):
        header, *rows = tsv.read_text(encoding="utf-8").splitlines()
        column = header.split("\t").index("step")
        kept = [row for row in rows if row and int(row.split("\t")[column]) < start]
        if len(kept) != len(rows):
            write_text_atomic(tsv, "\n".join([header, *kept]) + "\n")


def _log(live, board, step: int, metrics: dict[str, float]) -> None:
    """One row of every curve at `step` (0-based index of the step just done)."""
    if live is not None:
        live.step = step
        for name, value in metrics.items():
            live.log_metric(name, value)
        live.make_summary()
    if board is not None:
        with board.as_default(step=step):
            for name, value in metrics.items():
                tf.summary.scalar(name, value)
