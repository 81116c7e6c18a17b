"""Optimizer from the config: SGD (Caffe-style L2 weight decay) or Adam, a learning-rate schedule,
and a larger rate for the method's new head layers than for the backbone.

This module owns the names: ``OPTIMIZERS`` and ``SCHEDULES`` are what ``config.validate`` accepts,
so adding one here is the whole change, and an unknown name is an error, never a fallback.
"""

from __future__ import annotations

from typing import Callable

import optax

from jaxhash.errors import UsageError

PARAM_GROUPS = ("backbone", "head")  # the top-level keys of a HashModel's params


def _constant(optim_config, total_steps: int) -> optax.Schedule:
  return optax.constant_schedule(optim_config.learning_rate)


def _step(optim_config, total_steps: int) -> optax.Schedule:
  """Multiplied by ``decay_factor`` every ``decay_every`` steps (default: a third of the run)."""
  every = optim_config.decay_every or max(total_steps // 3, 1)
  boundaries = {
    step: optim_config.decay_factor for step in range(every, max(total_steps, every) + 1, every)
  }
  return optax.piecewise_constant_schedule(optim_config.learning_rate, boundaries)


def _cosine(optim_config, total_steps: int) -> optax.Schedule:
  return optax.cosine_decay_schedule(optim_config.learning_rate, max(total_steps, 1))


def _sgd(optim_config, rate: optax.Schedule) -> optax.GradientTransformation:
  """Caffe's SGD: weight decay added to the gradient, then (Nesterov) momentum."""
  return optax.chain(
    optax.add_decayed_weights(optim_config.weight_decay),
    optax.sgd(rate, momentum=optim_config.momentum or None, nesterov=optim_config.nesterov),
  )


def _adam(optim_config, rate: optax.Schedule) -> optax.GradientTransformation:
  return optax.adamw(rate, weight_decay=optim_config.weight_decay)


SCHEDULES: dict[str, Callable] = {"constant": _constant, "step": _step, "cosine": _cosine}
OPTIMIZERS: dict[str, Callable] = {"sgd": _sgd, "adam": _adam}


def check_names(optim_config) -> None:
  """A ValueError naming the key and the accepted names for an unknown optimizer or schedule."""
  for key, registry in (("optimizer", OPTIMIZERS), ("schedule", SCHEDULES)):
    if optim_config[key] not in registry:
      names = list(registry)
      accepted = f"{', '.join(names[:-1])} or {names[-1]}" if len(names) > 1 else names[0]
      raise UsageError(f"config.optim.{key}={optim_config[key]!r}: use {accepted}.")


def learning_rate_schedule(optim_config, total_steps: int) -> optax.Schedule:
  check_names(optim_config)
  return SCHEDULES[optim_config.schedule](optim_config, total_steps)


def _param_group(params) -> dict:
  """``{"backbone": "backbone", "head": "head"}``: the group of each top-level key. Any other key
  is an error, for a renamed group would silently lose the head's larger rate."""
  if sorted(params) != sorted(PARAM_GROUPS):
    raise ValueError(
      f"the optimizer expects parameters under the keys {list(PARAM_GROUPS)}, got "
      f"{sorted(params)}; the head's learning-rate multiplier depends on them."
    )
  return {name: name for name in params}


def make_optimizer(
  optim_config, total_steps: int
) -> tuple[optax.GradientTransformation, optax.Schedule]:
  """Returns the optimizer over ``{"backbone": ..., "head": ...}`` params and its base schedule;
  the head's rate is ``head_lr_multiplier`` times the schedule."""
  schedule = learning_rate_schedule(optim_config, total_steps)
  build = OPTIMIZERS[optim_config.optimizer]
  head = lambda count: optim_config.head_lr_multiplier * schedule(count)
  tx = optax.multi_transform(
    {"backbone": build(optim_config, schedule), "head": build(optim_config, head)}, _param_group
  )
  return tx, schedule
