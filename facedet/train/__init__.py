"""Training: the tf.data input pipeline, and the loop under tf.distribute with its parts, one module each
(schedule, strategy, fused batch norm, checkpoints, curves, the saved detector)."""
