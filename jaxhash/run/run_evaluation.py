"""A trained state measured: ``evaluate(exp, state)`` encodes the split's queries and database and
ranks them (``jaxhash.evaluation``), in the layout of results.json (``jaxhash.run.run_results``
writes it). ``jaxhash.run.trainer`` calls it after training, ``python -m jaxhash.evaluate`` on a
finished run.
"""

from __future__ import annotations

import sys
import time

from jaxhash import environment, evaluation, parallel
from jaxhash.encode import encode_indices, make_encoder
from jaxhash.errors import UsageError
from jaxhash.evaluation import classifier as classifier_baseline
from jaxhash.run import frozen_prefix
from jaxhash.run.experiment import Experiment
from jaxhash.run.state import TrainState


def evaluate(exp: Experiment, state: TrainState, workdir: str | None = None, stream=None) -> dict:
  """Encodes queries and database with ``state`` and measures retrieval (results.json layout).

  With a frozen prefix, encodes from its cached activations (``workdir``'s, or
  ``data.feature_cache_dir``), verified and completed first if need be. With
  ``eval.classifier_baseline``, also ``results["classifier"]``: the database ranked by predicted
  class (``jaxhash.evaluation.classifier``), from the same forward pass.
  """
  config = exp.config
  spec = evaluation.EvalSpec.from_config(config)
  classify = config.eval.classifier_baseline
  encoder = make_encoder(exp.model, exp.method, config.data, exp.frozen_stages, classify)
  inputs = exp.dataset.images
  if exp.frozen_stages:
    if workdir is None and not config.data.feature_cache_dir:
      raise UsageError(
        "evaluating a run with a frozen prefix needs its workdir (its feature cache)."
      )
    inputs = frozen_prefix.cached_features(exp, workdir or "", state, stream or sys.stderr)[0]
  t0 = time.perf_counter()
  encoded, predicted = {}, {}
  for name in ("query", "database"):
    indices = getattr(exp.split, name)
    words, features = encode_indices(
      encoder,
      state.variables,
      inputs,
      indices,
      parallel.round_up_to_devices(config.eval.batch_size, exp.mesh),
      with_features=spec.rerank,
      sharding=parallel.batch_sharded(exp.mesh),
      label=f"encoding {name}",
    )
    words, class_words = words if classify else (words, None)
    labels = exp.dataset.labels[indices]
    encoded[name] = evaluation.Encoded(words, labels, features)
    predicted[name] = evaluation.Encoded(class_words, labels)
  encode_seconds = time.perf_counter() - t0
  results = evaluation.evaluate(encoded["query"], encoded["database"], spec)
  results["seconds"] = {"encode": encode_seconds, **results["seconds"]}
  if classify:
    t1 = time.perf_counter()
    results["classifier"] = classifier_baseline.evaluate(
      predicted["query"], predicted["database"], exp.dataset.num_classes, spec
    )
    results["seconds"]["classifier"] = time.perf_counter() - t1
  results["seconds"]["evaluate"] = time.perf_counter() - t0
  return {
    "method": exp.method.name,
    "bits": config.method.bits,
    "backbone": config.model.backbone,
    "protocol": exp.protocol.name,
    "num_queries": len(exp.split.query),
    "num_database": len(exp.split.database),
    "step": int(state.step),
    "eval": config.eval.to_dict(),
    **results,
    "environment": environment.describe(),
  }


def unlabelled(exp: Experiment, stream) -> bool:
  """Whether the images have no labels, so nothing can be measured (said in one line)."""
  if exp.dataset.num_classes:
    return False
  (stream or sys.stderr).write(
    f"evaluation skipped: the images of {exp.dataset.name} have no labels, and retrieval is "
    "measured by shared labels; index and search them with python -m jaxhash.index and "
    "jaxhash.search\n"
  )
  return True
