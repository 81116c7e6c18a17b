"""The classifier baseline of Sablayrolles, Douze, Usunier, Jégou ("How should we evaluate
supervised hashing?", ICASSP 2017): the database ranked by predicted class.

Each image's code is the one-hot code of its predicted class (as many bits as classes). Two such
codes are at Hamming distance 0 when the predictions agree and 2 otherwise, so the same engine and
``map_at`` as the method's codes rank first the database items predicted in the query's predicted
class, then the rest, each in database order (ties by index). On the standard protocols this beats
most supervised hashing methods; beside a method's codes it shows what they add to a classifier.
"""

from __future__ import annotations

import dataclasses

import jax
import jax.numpy as jnp
import numpy as np

from jaxhash.evaluation.evaluator import Encoded, EvalSpec
from jaxhash.evaluation.evaluator import evaluate as evaluate_codes
from jaxhash.retrieval import unpack_bits


def codes(logits: jax.Array) -> jax.Array:
  """bool ``(N, classes)``: the one-hot code of each row's predicted class (``logits``' argmax)."""
  return jax.nn.one_hot(jnp.argmax(logits, axis=-1), logits.shape[-1], dtype=jnp.bool_)


def evaluate(query: Encoded, database: Encoded, num_classes: int, spec: EvalSpec) -> dict:
  """``{"bits", "accuracy", "map@R", ...}``: the codes-only metrics of ``spec`` for class codes, and
  the queries' classification accuracy (the predicted class is one of the query's labels).

  The radius metrics are left out: one-hot codes are at distance 0 or 2, so any radius >= 2 holds
  the whole database.
  """
  measured = evaluate_codes(
    query, database, dataclasses.replace(spec, nbits=num_classes, rerank=False)
  )["codes"]
  predicted = unpack_bits(query.words, num_classes).argmax(axis=1)
  accuracy = float(np.mean(query.labels[np.arange(len(predicted)), predicted] > 0))
  return {
    "bits": num_classes,
    "accuracy": accuracy,
    **{key: value for key, value in measured.items() if "radius" not in key},
  }
