"""The training step: pure and jitted, several steps per call, a non-finite update never applied.

``make_train_steps`` is what ``jaxhash.run.trainer``'s host loop calls and what
``benchmarks/train_throughput.py`` times; the host reads each step's ``nonfinite`` flags
(``NONFINITE``) at its log and checkpoint boundaries.
"""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
import optax

from jaxhash.data.augment import preprocess
from jaxhash.run.experiment import Experiment
from jaxhash.run.model_state import trainable_mask
from jaxhash.run.state import TrainState

# What a step checks. A non-finite gradient always shows in the state it updates: the optimizer
# state (momentum, Adam's moments) or, for plain SGD, the parameters. Checking the gradient as well
# took one more pass over it (its norm) and ~3% of LeNet's CPU step.
NONFINITE = ("loss", "parameters", "optimizer state")


def all_finite(tree) -> jax.Array:
  """Whether every floating-point element of ``tree`` is finite: x - x is 0 for finite x, NaN else.

  One fused reduction per leaf on XLA's CPU backend, where ``isfinite(x).all()`` writes a boolean
  array and reduces it in two more passes (2.3x the time for LeNet's 800 x 500 ``fc`` kernel).
  """
  sums = [jnp.sum(x - x) for x in jax.tree.leaves(tree) if jnp.issubdtype(x.dtype, jnp.inexact)]
  return sum(sums) == 0 if sums else jnp.bool_(True)


def make_train_steps(exp: Experiment, optimizer: optax.GradientTransformation, schedule, take):
  """The pure, jitted ``(state, shared, per_step) -> (state, metrics)``: one training step per
  entry of ``per_step``'s leading axis, all in one call (``lax.scan``); the state is donated.

  ``shared, per_step``: a batch source's ``get(first, count)``; ``take(shared, one_step)`` turns
  one step's entry into ``(inputs, labels)`` inside the call (``TrainBatches.take``: a gather from
  images held on the device). Several steps per call spare the host's launch and wait between
  steps (LeNet's CPU step ~7% faster at 10 per call). ``inputs``: uint8 images, or
  with a frozen prefix its cached activations (the prefix is not run, so no backward pass goes
  through it; its parameters are also held by ``stop_gradient``).
  Batch-norm statistics are updated in train mode unless ``model.freeze_batch_norm``.
  ``metrics``: each step's, stacked along a leading axis. ``metrics["nonfinite"]`` is 0 for a step
  that was applied, else a bitmask of the ``NONFINITE`` quantities that were not finite; such a step
  leaves params and optimizer state unchanged, and the next steps of the call go on from them (the
  host, which stops at the first unless ``train.skip_nonfinite``, ends calls where it reads the
  flags: no state past a non-finite step is ever saved).
  """
  config = exp.config
  start = exp.frozen_stages

  def train_step(state: TrainState, shared, arguments):
    inputs, labels = take(shared, arguments)
    key = jax.random.fold_in(jax.random.key(config.seed), state.step)
    augment_key, dropout_key = jax.random.split(key)
    if start:
      inputs = inputs.astype(jnp.float32)
    else:
      inputs = preprocess(inputs, augment_key, config.data, train=True)
    mask = trainable_mask(exp.config, exp.model, state.params)
    update_stats = bool(jax.tree.leaves(state.batch_stats)) and not config.model.freeze_batch_norm

    def loss_fn(params):
      params = jax.tree.map(lambda p, t: p if t else jax.lax.stop_gradient(p), params, mask)
      variables = {"params": params, "batch_stats": state.batch_stats}
      apply = functools.partial(
        exp.model.apply, variables, inputs, train=True, start=start, rngs={"dropout": dropout_key}
      )
      if update_stats:
        outputs, updates = apply(mutable=["batch_stats"])
        batch_stats = updates["batch_stats"]
      else:
        outputs, batch_stats = apply(), state.batch_stats
      loss, metrics = exp.method.loss(outputs, labels, state.step, config.method)
      return loss, (metrics, batch_stats)

    (loss, (metrics, batch_stats)), grads = jax.value_and_grad(loss_fn, has_aux=True)(state.params)
    updates, opt_state = optimizer.update(grads, state.opt_state, state.params)
    params = optax.apply_updates(state.params, updates)
    # A non-finite loss, gradient or new state is never applied; the host reads the flags (bits in
    # the order of NONFINITE) at its next log or checkpoint boundary and stops or counts.
    flags = jnp.stack(
      [~jnp.isfinite(loss), ~all_finite((params, batch_stats)), ~all_finite(opt_state)]
    )
    bad = flags.any()
    keep_old = lambda new, old: jnp.where(bad, old, new)
    params = jax.tree.map(keep_old, params, state.params)
    opt_state = jax.tree.map(keep_old, opt_state, state.opt_state)
    batch_stats = jax.tree.map(keep_old, batch_stats, state.batch_stats)
    metrics = {
      "loss": loss,
      **metrics,
      "learning_rate": schedule(state.step),
      "nonfinite": jnp.sum(flags * (2 ** jnp.arange(len(NONFINITE)))).astype(jnp.int32),
    }
    return TrainState(
      step=state.step + 1, params=params, opt_state=opt_state, batch_stats=batch_stats
    ), metrics

  def train_steps(state: TrainState, shared, per_step):
    return jax.lax.scan(
      lambda carry, arguments: train_step(carry, shared, arguments), state, per_step
    )

  return jax.jit(train_steps, donate_argnums=0)


def step_metrics(stacked: list[dict]) -> list[dict]:
  """The metrics of each step from calls' stacked metrics (fetched to the host)."""
  return [
    {k: v[i] for k, v in metrics.items()}
    for metrics in stacked
    for i in range(len(metrics["nonfinite"]))
  ]
