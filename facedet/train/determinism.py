"""`train.deterministic: true`: bit-identical training runs on one machine, at the cost of speed.

What is not deterministic on CPU TF 2.21, found by running the same step twice (default preset,
batch 16): the input stream is (identical batches in two processes), and so are the initial weights
and the forward pass; the backward pass is not. oneDNN's threaded reductions (the gradient of the
box predictor, shared by five pyramid levels, changed between two calls in one process) and Eigen's
threaded reductions (with oneDNN off, gradients still changed from call to call) sum in an order
that depends on thread scheduling; `tf.config.experimental.enable_op_determinism()` does not cover
these CPU kernels. The fused batch norm is not the cause (the same happens with Keras' own).
With oneDNN off and one thread per op and between ops, two runs give identical weights step after
step. So `pin_determinism()` sets all three, and must run before TensorFlow starts (oneDNN is
chosen when TensorFlow initialises): the train stage calls it before importing TensorFlow.
"""

from __future__ import annotations

import os
import sys

ONEDNN_ENV = "TF_ENABLE_ONEDNN_OPTS"


def pin_determinism() -> None:
    """Before TensorFlow is imported: Eigen kernels instead of oneDNN, one thread per op and one
    between ops, TF op determinism. Raises RuntimeError if TensorFlow is already running."""
    if "tensorflow" in sys.modules and os.environ.get(ONEDNN_ENV) != "0":
        raise RuntimeError("pin_determinism() must run before TensorFlow is imported")
    os.environ[ONEDNN_ENV] = "0"
    import tensorflow as tf

    tf.config.threading.set_intra_op_parallelism_threads(1)
    tf.config.threading.set_inter_op_parallelism_threads(1)
    tf.config.experimental.enable_op_determinism()


def is_pinned() -> bool:
    """True when this process runs TensorFlow as `pin_determinism` set it up."""
    import tensorflow as tf

    return (os.environ.get(ONEDNN_ENV) == "0" and tf.config.threading.get_intra_op_parallelism_threads() == 1
            and tf.config.threading.get_inter_op_parallelism_threads() == 1)
