"""Where training runs: the tf.distribute strategy `train.strategy` names, and which process is the chief."""

from __future__ import annotations

import json
import os

import tensorflow as tf


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
