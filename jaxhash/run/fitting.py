"""The non-gradient path: a shallow method's head fitted once on the frozen backbone's features.

``trainer.train`` hands a run whose method has ``fit`` (``jaxhash.methods.shallow``) here, after
the feature cache is built: the training images' features (the backbone's output, computed once
by ``jaxhash.run.feature_cache`` and shared by every method and code length) and labels go to
``method.fit``, its parameters replace the head's, and the state is saved as the run's checkpoint
at its last step. The run directory is then an ordinary one: evaluate, load, index and search read
it as they read a trained run, and a rerun finds it finished.
"""

from __future__ import annotations

import time

import jax
import jax.numpy as jnp
import numpy as np

from jaxhash import distributed, parallel
from jaxhash.run import metrics_log


def fit_state(exp, state, features: np.ndarray, steps: int):
  """``state`` at step ``steps`` with the head ``exp.method.fit`` makes from the training
  split's ``features`` (all images' rows, in dataset order); and the fit's metrics."""
  config = exp.config
  train = exp.split.train
  t0 = time.perf_counter()
  head, metrics = exp.method.fit(
    jnp.asarray(features[train], jnp.float32),
    jnp.asarray(exp.dataset.labels[train]),
    config.method,
    jax.random.key(config.seed),
  )
  expected = jax.tree.map(jnp.shape, state.params["head"])
  if jax.tree.map(jnp.shape, head) != expected:
    raise AssertionError(
      f"{exp.method.name}.fit returned {jax.tree.map(jnp.shape, head)}, not the head's {expected}"
    )
  head = jax.tree.map(lambda new, old: np.asarray(new, old.dtype), head, state.params["head"])
  # Laid out as the rest of the state (replicated over the run's mesh, every process's devices).
  head, step = parallel.put_replicated((head, np.asarray(steps, np.int32)), exp.mesh)
  state = state.replace(step=step, params={**state.params, "head": head})
  return state, {**metrics, "fit_seconds": time.perf_counter() - t0}


def fit(exp, workdir: str, state, features: np.ndarray, steps: int, checkpointer, stream):
  """Fits, logs the fit's metrics to metrics.jsonl and saves the checkpoint; returns the state."""
  stream.write(
    f"fitting {exp.method.name} ({exp.config.method.bits} bits) on the features of "
    f"{len(exp.split.train)} training images\n"
  )
  state, metrics = fit_state(exp, state, features, steps)
  log = metrics_log.MetricsWriter(workdir, enabled=distributed.is_writer())
  try:
    log.write({"step": steps, **metrics})
    checkpointer.save(steps, state)
    log.sync()
  finally:
    log.close()
  stream.write(f"fitted in {metrics['fit_seconds']:.1f} s\n")
  return state
