"""Retrieval evaluation: codes-only and coarse-to-fine metrics over query chunks.

Per chunk of queries: Hamming distances to the whole database (the engine's kernel), precision and
recall within the radius and the PR curve from them, then the ranking (full or top-depth) and the
ranking metrics. Memory is bounded by the chunk size, not by Q x N.
"""

from __future__ import annotations

import dataclasses
import time

import numpy as np

from jaxhash import metrics, rerank
from jaxhash.progress import Stage
from jaxhash.retrieval import hamming_distances

_CHUNK_ELEMENTS = 2**24  # Q-chunk x N distances held at once


@dataclasses.dataclass(frozen=True)
class Encoded:
  """Packed codes of a query set or database, with labels and (for re-ranking) fc7 features."""

  words: np.ndarray  # uint32 (N, W)
  labels: np.ndarray  # multi-hot (N, C)
  features: np.ndarray | None = None  # float32 (N, D)


@dataclasses.dataclass(frozen=True)
class EvalSpec:
  nbits: int
  map_at: tuple = ("all", 1000)  # ints or "all"
  precision_at: tuple = (1, 10, 100, 1000)
  radius: int = 2
  rerank: bool = True
  rerank_pool: int = 1000
  rerank_radius: int = -1  # >= 0: pool = all codes within this radius


def _depths(spec: EvalSpec, n: int) -> dict:
  return {f"map@{r}": (n if r == "all" else min(r, n)) for r in spec.map_at}


def _ranking_metrics(ranked_rel: np.ndarray, spec: EvalSpec, n: int) -> dict:
  out = {name: metrics.average_precision(ranked_rel, depth).sum() for name, depth in _depths(spec, n).items()}
  for k in spec.precision_at:
    out[f"precision@{k}"] = metrics.precision_at(ranked_rel, min(k, n)).sum()
  return out


def evaluate(query: Encoded, database: Encoded, spec: EvalSpec) -> dict:
  """Returns ``{"codes": {...}, "rerank": {...}, "pr_curve": {...}, "seconds": {...}}``."""
  n = database.words.shape[0]
  rerank_on = spec.rerank and query.features is not None and database.features is not None
  depth = max([*_depths(spec, n).values(), *(min(k, n) for k in spec.precision_at)])
  if rerank_on:
    depth = n if spec.rerank_radius >= 0 else max(depth, min(spec.rerank_pool, n))
  chunk = max(1, min(len(query.words), _CHUNK_ELEMENTS // max(n, 1)))
  sums = {"codes": {}, "rerank": {}}
  seconds = {"codes": 0.0, "rerank": 0.0}
  histograms = []

  def add(mode, values):
    for key, value in values.items():
      sums[mode][key] = sums[mode].get(key, 0.0) + float(np.sum(value))

  stage = Stage("ranking", len(query.words), "queries")
  for start in range(0, len(query.words), chunk):
    sl = slice(start, start + chunk)
    t0 = time.perf_counter()
    distances = np.asarray(hamming_distances(query.words[sl], database.words))
    rel = metrics.relevance(query.labels[sl], database.labels)
    order, sorted_distances = rerank.hamming_order(query.words[sl], database.words, depth, distances)
    add("codes", _ranking_metrics(np.take_along_axis(rel, order, axis=1), spec, n))
    precision, recall = metrics.within_radius(distances, rel, spec.radius)
    add("codes", {f"precision@radius{spec.radius}": precision, f"recall@radius{spec.radius}": recall})
    histograms.append(metrics.radius_histograms(distances, rel, spec.nbits))
    t1 = time.perf_counter()
    seconds["codes"] += t1 - t0
    if rerank_on:
      sizes = rerank.pool_sizes(sorted_distances, spec.rerank_pool, spec.rerank_radius)
      fine = rerank.rerank_pool(order, sizes, query.features[sl], database.features)
      add("rerank", _ranking_metrics(np.take_along_axis(rel, fine, axis=1), spec, n))
      add("rerank", {"pool_size": sizes})
      seconds["rerank"] += time.perf_counter() - t1
    stage.advance(len(query.words[sl]))

  stage.close()
  q = len(query.words)
  results = {mode: {k: v / q for k, v in values.items()} for mode, values in sums.items() if values}
  if rerank_on:  # a set, not an order: the radius metrics are the same in both modes
    results["rerank"].update({k: v for k, v in results["codes"].items() if "radius" in k})
  retrieved, relevant, total = (np.concatenate(parts) for parts in zip(*histograms))
  results["pr_curve"] = metrics.pr_curve(retrieved, relevant, total)
  results["seconds"] = seconds
  return results
