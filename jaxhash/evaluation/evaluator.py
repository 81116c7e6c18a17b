"""Retrieval evaluation of encoded queries against an encoded database: codes-only and re-ranked.

The full Hamming ranking of every query comes from ``ranking.py`` in query chunks on the device
(AP@all, the distance histograms behind the radius metrics and the PR curve, and the first K codes
of each ranking); the metrics at depth <= K come from those lists. Queries with the same code and
labels have the same ranking and metrics, so each distinct pair is ranked once and weighted by its
count (trained codes repeat: the 10,000 MNIST test queries of a 48-bit DLBHC run have about 1,600
distinct codes). Re-ranking (``rerank.py``) then reorders each query's pool inside its list.
"""

from __future__ import annotations

import dataclasses
import time

import numpy as np

from jaxhash import config as config_lib
from jaxhash.errors import UsageError
from jaxhash.evaluation import metrics, ranking
from jaxhash.evaluation.rerank import Reranker, pool_sizes
from jaxhash.progress import Stage
from jaxhash.retrieval import unpack_bits

NUM_EXAMPLES = 8
EXAMPLE_DEPTH = 10


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

  @classmethod
  def from_config(cls, config) -> EvalSpec:
    """The evaluation a run's ``config.method.bits`` and ``config.eval`` ask for."""
    return cls(
      nbits=config.method.bits,
      map_at=config_lib.map_at(config),
      precision_at=config_lib.parse_int_list(config.eval.precision_at, "eval.precision_at"),
      radius=config.eval.radius,
      rerank=config.eval.rerank,
      rerank_pool=config.eval.rerank_pool,
      rerank_radius=config.eval.rerank_radius,
    )


def evaluate(query: Encoded, database: Encoded, spec: EvalSpec) -> dict:
  """The results.json measurements: ``codes``, ``rerank``, ``pr_curve``, ``precision_at_k_curve``,
  ``bit_balance``, ``examples`` and ``seconds``."""
  num_queries, n = len(query.words), len(database.words)
  if num_queries == 0 or n == 0:
    raise UsageError(
      f"nothing to evaluate: {num_queries} queries and {n} database codes; "
      "both sets need at least one image."
    )
  t0 = time.perf_counter()
  query_bits, db_bits = metrics.label_bits(query.labels), metrics.label_bits(database.labels)
  _, first, inverse, weights = np.unique(  # each distinct (code, labels) query is ranked once
    np.concatenate([query.words, query_bits], axis=1),
    axis=0,
    return_index=True,
    return_inverse=True,
    return_counts=True,
  )
  inverse = inverse.reshape(-1)
  rerank_on = spec.rerank and query.features is not None and database.features is not None
  db = ranking.prepare_database(database.words, db_bits, spec.nbits)
  depth = _list_depth(spec, db, query.words[first] if rerank_on else None)
  ranked = _rank(db, query.words[first], query_bits[first], depth)
  ranked_rel = metrics.ranked_relevance(query_bits[first], db_bits, ranked.top)
  codes = _ranking_metrics(ranked_rel, ranked.ap_sums, ranked.relevant_counts, spec, n, weights)
  precision, recall = metrics.within_radius(ranked.counts, ranked.relevant_counts, spec.radius)
  codes[f"precision@radius{spec.radius}"] = float(np.average(precision, weights=weights))
  codes[f"recall@radius{spec.radius}"] = float(np.average(recall, weights=weights))
  ks = metrics.curve_ks(n)
  curve = {"k": ks, "codes": metrics.precision_curve(ranked_rel, ks, weights)}
  shown = np.unique(np.linspace(0, num_queries - 1, NUM_EXAMPLES).round().astype(int))
  examples = {"query": shown.tolist(), "codes": ranked.top[inverse[shown], :EXAMPLE_DEPTH].tolist()}
  results = {"codes": codes}
  seconds = {"codes": time.perf_counter() - t0, "rerank": 0.0}

  if rerank_on:
    t1 = time.perf_counter()
    sizes = pool_sizes(ranked.counts[inverse], n, spec.rerank_pool, spec.rerank_radius)
    order = np.argsort(inverse, kind="stable")  # queries with neighbouring codes share pool codes
    fine = np.empty((num_queries, depth), np.int32)
    fine[order] = Reranker(database.features).rerank(
      ranked.top[inverse[order]], sizes[order], np.asarray(query.features)[order]
    )
    fine_rel = metrics.ranked_relevance(query_bits, db_bits, fine)
    # Past the pool the order is the codes' order, so AP@all changes only by the pool's terms.
    width = int(sizes.max(initial=0))
    ap_all = (
      ranked.ap_sums[inverse]
      + metrics.average_precision_sums(fine_rel, width)[0]
      - metrics.average_precision_sums(ranked_rel[inverse], width)[0]
    )
    results["rerank"] = _ranking_metrics(fine_rel, ap_all, ranked.relevant_counts[inverse], spec, n)
    results["rerank"]["pool_size"] = float(sizes.mean())
    # The pool is a set, not an order: the radius metrics are the same in both modes.
    results["rerank"].update({k: v for k, v in codes.items() if "radius" in k})
    curve["rerank"] = metrics.precision_curve(fine_rel, ks)
    examples["rerank"] = fine[shown, :EXAMPLE_DEPTH].tolist()
    seconds["rerank"] = time.perf_counter() - t1

  results["pr_curve"] = metrics.pr_curve(ranked.counts, ranked.relevant_counts, weights)
  results["precision_at_k_curve"] = curve
  results["bit_balance"] = unpack_bits(database.words, spec.nbits).mean(axis=0).tolist()
  results["examples"] = examples
  results["seconds"] = seconds
  return results


def _list_depth(spec: EvalSpec, db: ranking.Database, query_words) -> int:
  """Codes kept per ranked list: every finite depth asked for, the curve's 1,000, the pool."""
  depths = [metrics.CURVE_MAX_K, *(r for r in spec.map_at if r != "all"), *spec.precision_at]
  if query_words is not None:  # re-ranking: the pool must fit in the list
    if spec.rerank_radius >= 0:
      depths.append(int(ranking.count_within(db, query_words, spec.rerank_radius).max()))
    else:
      depths.append(spec.rerank_pool)
  return min(db.num_codes, max(depths))


def _rank(db: ranking.Database, query_words, query_bits, depth: int) -> ranking.ChunkRanking:
  """:func:`ranking.rank_chunk` over all queries, chunk by chunk, concatenated."""
  step = ranking.query_chunk_size(db)
  parts = []
  with Stage("ranking", len(query_words), "queries") as stage:
    for s in range(0, len(query_words), step):
      parts.append(
        ranking.rank_chunk(db, query_words[s : s + step], query_bits[s : s + step], depth)
      )
      stage.advance(len(parts[-1].ap_sums))
  return ranking.ChunkRanking(
    *(
      np.concatenate([getattr(p, f.name) for p in parts])
      for f in dataclasses.fields(ranking.ChunkRanking)
    )
  )


def _ranking_metrics(
  ranked_rel, ap_all_sums, relevant_counts, spec: EvalSpec, n: int, weights=None
) -> dict:
  """mAP@R in both conventions and precision@k from ranked lists (AP@all from its own sums)."""
  out = {}
  for r in spec.map_at:
    if r == "all":
      ap_sums, found = ap_all_sums, relevant_counts.sum(axis=1)
    else:
      ap_sums, found = metrics.average_precision_sums(ranked_rel, min(r, n))
    both = metrics.mean_average_precision(ap_sums, found, weights)
    out[f"map@{r}"], out[f"hashnet_map@{r}"] = both["map"], both["hashnet_map"]
  for k in spec.precision_at:
    out[f"precision@{k}"] = float(
      np.average(metrics.precision_at(ranked_rel, min(k, n)), weights=weights)
    )
  return out
