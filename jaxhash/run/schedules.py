"""Schedules of training quantities other than the learning rate, as optax ``count -> value``.

HashNet's β is evaluated inside the jitted train step from ``state.step``, the counter the
optimizer uses, so it resumes with a checkpoint and never lives in a Python global.
"""

from __future__ import annotations

import jax.numpy as jnp
import optax

from jaxhash.errors import UsageError


def continuation_schedule(
  init_value: float = 1.0, gamma: float = 0.005, power: float = 0.5, step_size: int = 200
) -> optax.Schedule:
  """β(count) = init_value · (1 + gamma · t)^power with t = step_size · ⌊count / step_size⌋.

  HashNet's continuation (its ScaleTanH layer): β is raised in steps every ``step_size`` updates,
  so tanh(βz) approaches sign(z). Non-decreasing for the valid arguments checked here.

  >>> round(float(continuation_schedule()(450)), 4)  # t = 400: (1 + 0.005 · 400) ** 0.5
  1.7321
  """
  if not init_value > 0:
    raise UsageError(f"continuation init_value={init_value!r} must be positive.")
  if gamma < 0 or power < 0:
    raise UsageError(
      f"continuation gamma={gamma!r} and power={power!r} must be >= 0 (β must not decrease)."
    )
  if int(step_size) != step_size or step_size < 1:
    raise UsageError(f"continuation step_size={step_size!r} must be a positive integer.")
  step_size = int(step_size)

  def schedule(count):
    t = (jnp.asarray(count) // step_size * step_size).astype(jnp.float32)
    return init_value * (1.0 + gamma * t) ** power

  return schedule
