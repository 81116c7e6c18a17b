"""Optimizer from the config: SGD (Caffe-style L2 weight decay) or Adam, a learning-rate schedule,
and a larger rate for the method's new head layers than for the backbone."""

from __future__ import annotations

import optax


def learning_rate_schedule(optim_config, total_steps: int) -> optax.Schedule:
  lr = optim_config.learning_rate
  if optim_config.schedule == "constant":
    return optax.constant_schedule(lr)
  if optim_config.schedule == "cosine":
    return optax.cosine_decay_schedule(lr, max(total_steps, 1))
  every = optim_config.decay_every or max(total_steps // 3, 1)
  boundaries = {step: optim_config.decay_factor for step in range(every, max(total_steps, every) + 1, every)}
  return optax.piecewise_constant_schedule(lr, boundaries)


def _scaled(optim_config, schedule: optax.Schedule, factor: float) -> optax.GradientTransformation:
  rate = lambda count: factor * schedule(count)
  if optim_config.optimizer == "adam":
    return optax.adamw(rate, weight_decay=optim_config.weight_decay)
  return optax.chain(
      optax.add_decayed_weights(optim_config.weight_decay),
      optax.sgd(rate, momentum=optim_config.momentum or None, nesterov=optim_config.nesterov),
  )


def make_optimizer(optim_config, total_steps: int) -> tuple[optax.GradientTransformation, optax.Schedule]:
  """Returns the optimizer over ``{"backbone": ..., "head": ...}`` params and its base schedule."""
  schedule = learning_rate_schedule(optim_config, total_steps)
  tx = optax.multi_transform(
      {"backbone": _scaled(optim_config, schedule, 1.0),
       "head": _scaled(optim_config, schedule, optim_config.head_lr_multiplier)},
      lambda params: {name: ("head" if name == "head" else "backbone") for name in params},
  )
  return tx, schedule
