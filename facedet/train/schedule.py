"""How the weights are stepped: the learning-rate schedule (linear warm-up, cosine decay) and the optimizer."""

from __future__ import annotations

import math

import keras

from facedet.params.sections import TrainParams


def learning_rate_at(step: int, params: TrainParams) -> float:
    """Linear warm-up from 0 over `warmup_steps`, then cosine decay to `final_learning_rate` x lr at `steps`."""
    base = params.learning_rate
    if step < params.warmup_steps:
        return base * (step + 1) / params.warmup_steps
    span = max(params.steps - params.warmup_steps, 1)
    progress = min((step - params.warmup_steps) / span, 1.0)
    floor = base * params.final_learning_rate
    return floor + (base - floor) * 0.5 * (1 + math.cos(math.pi * progress))


def make_optimizer(params: TrainParams) -> keras.optimizers.Optimizer:
    """`train.optimizer` at `train.learning_rate` (the loop sets the scheduled rate before each step)."""
    if params.optimizer == "rmsprop":  # the TF OD API's SSD recipe
        return keras.optimizers.RMSprop(params.learning_rate, rho=0.9, momentum=0.9, epsilon=1.0)
    if params.optimizer == "sgd":
        return keras.optimizers.SGD(params.learning_rate, momentum=0.9, nesterov=True)
    return keras.optimizers.Adam(params.learning_rate)
