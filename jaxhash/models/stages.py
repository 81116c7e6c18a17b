"""Stages of a backbone: run a contiguous range of them, and find whose parameters belong to which.

Every pretrained backbone is an ordered tuple of named stages (``STAGES``); each stage owns
parameters, and the last one ends in the fc7-like feature vector. ``__call__(x, train, start,
stop)`` runs stages ``start`` (included) to ``stop`` (excluded, default: to the end), so

    mid = model.apply(variables, images, start=0, stop=k)   # a frozen prefix, cached once
    features = model.apply(variables, mid, start=k)          # the trained rest

gives the same features as one full call, with the same parameter names (a stage's modules are
named the same whichever range creates them). ``start`` and ``stop`` take indices or stage names.
"""

from __future__ import annotations

from typing import Callable, Sequence

import jax
import jax.numpy as jnp

from jaxhash.errors import UsageError

Stage = tuple[str, Callable[[jax.Array], jax.Array]]


def stage_index(names: Sequence[str], stage: int | str | None, default: int) -> int:
  if stage is None:
    return default
  if isinstance(stage, str):
    if stage not in names:
      raise UsageError(f"unknown stage {stage!r}; the stages are {list(names)}.")
    return names.index(stage)
  if not 0 <= stage <= len(names):
    raise UsageError(f"stage index {stage} is out of range 0..{len(names)} (stages {list(names)}).")
  return int(stage)


def run_stages(
  names: Sequence[str],
  stages: Sequence[Stage],
  x: jax.Array,
  start,
  stop,
  classifier: Callable[[jax.Array], jax.Array] | None = None,
) -> jax.Array:
  """Runs ``stages[start:stop]`` on ``x``; with a ``classifier``, returns ``(features, logits)``.

  ``names`` is the backbone's declared ``STAGES``; the classifier needs the range to run to the end.
  """
  assert tuple(name for name, _ in stages) == tuple(names), "stage list out of sync with STAGES"
  first, last = stage_index(names, start, 0), stage_index(names, stop, len(names))
  if first >= last:
    raise ValueError(f"empty stage range start={start!r} stop={stop!r} (stages {list(names)}).")
  if classifier is not None and last != len(names):
    raise ValueError(f"with_classifier=True needs the stages to run to the end, not stop={stop!r}.")
  for _, stage in stages[first:last]:
    x = stage(x)
  return x if classifier is None else (x, classifier(x))


def stage_keys(backbone, input_shape=(1, 224, 224, 3)) -> dict[str, frozenset[str]]:
  """The top-level variable names (params and batch_stats alike) each stage creates, in order.

  Found by tracing ``init`` stage by stage (shapes only, nothing is computed), so it always agrees
  with the module's code. ``input_shape`` only needs to be valid for the backbone.
  """
  x, keys = jax.ShapeDtypeStruct(input_shape, jnp.float32), {}
  for index, name in enumerate(type(backbone).STAGES):
    x, variables = jax.eval_shape(
      lambda x, i=index: backbone.init_with_output(jax.random.key(0), x, start=i, stop=i + 1), x
    )
    keys[name] = frozenset(k for collection in variables.values() for k in collection)
  return keys


def last_stage_keys(backbone, n: int, input_shape=(1, 224, 224, 3)) -> frozenset[str]:
  """Top-level variable names of the last ``n`` stages (0: none; ``len(STAGES)``: all)."""
  names = type(backbone).STAGES
  if not 0 <= n <= len(names):
    raise UsageError(
      f"cannot train the last {n} stages of {type(backbone).__name__}: it has "
      f"{len(names)} ({list(names)})."
    )
  per_stage = stage_keys(backbone, input_shape)
  return frozenset().union(*(per_stage[name] for name in names[len(names) - n :]))
