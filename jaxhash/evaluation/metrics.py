"""Retrieval metrics from ranked lists and distance histograms, in two conventions for mAP@R.

Ranking is by Hamming distance with ties broken by database index (``ranking.py``). Two items are
relevant when their multi-hot labels share a class.

``map@R`` (jaxhash's convention): for one query, AP@R = (sum over j <= R of P(j) * rel(j)) / (number
of relevant items in the top R), and 0 when there is none; mAP@R is the mean over all queries, none
left out. R = "all" is the usual mAP. DLBHC's released MATLAB code (analysis/precision.m) computes
this: MATLAB's ``sort`` is stable, so ties keep index order; a query with no relevant item in the
top K gets AP 0 and stays in the mean (it compares single labels). DeepHash-pytorch's CalcTopMap
(utils/tools.py) averages the same AP over all queries too, but ranks with NumPy's default
``argsort``, which leaves the order of tied distances unspecified.

``hashnet_map@R`` (HashNet's convention): the same AP@R, averaged only over the queries that have
at least one relevant item in their top R, as ``mean_average_precision`` in HashNet's PyTorch code
(pytorch/src/test.py) does: it appends a query's AP only when ``relevant_num != 0``. That code also
ranks with NumPy's default ``argsort`` (of -code.code), so its tie order is unspecified; here ties
go by index in both conventions. Where no query has a relevant item in its top R, HashNet's code
averages an empty list (NaN); this module reports 0.

``precision@k``: the relevant items among the top min(k, N) divided by min(k, N), so for k beyond
a database of N items it is the precision of the whole ranking; likewise AP@R for R > N is AP@N.
Neither released code defines these cases: DLBHC's precision.m indexes past the end of its ranking
when top_k > N, and HashNet's test.py (which has no precision@k) fails on a shape mismatch when
R > N.

Precision within Hamming radius r: relevant / retrieved among the codes at distance <= r, 0 for a
query that retrieves nothing; recall: relevant retrieved / relevant in the database, 0 for a query
with no relevant item. Means over all queries. Neither DLBHC's precision.m nor HashNet's PyTorch
code computes a radius metric; these are jaxhash's own choices.

Every mean takes optional ``weights``: the evaluator ranks each distinct (code, labels) query once
and weights it by how many queries share it.
"""

from __future__ import annotations

import numpy as np

from jaxhash.retrieval import pack_bits

CURVE_MAX_K = 1000


def label_bits(labels: np.ndarray) -> np.ndarray:
  """Multi-hot labels ``(N, C)`` as uint32 bit words ``(N, ceil(C / 32))``."""
  return pack_bits(np.asarray(labels) > 0)


def relevance(query_bits: np.ndarray, db_bits: np.ndarray) -> np.ndarray:
  """bool: query ``i`` and database item ``j`` share a label; broadcasts over leading axes.

  ``query_bits`` ``(..., L)`` and ``db_bits`` ``(..., L)`` are :func:`label_bits` words.
  """
  return np.any((query_bits & db_bits) != 0, axis=-1)


def ranked_relevance(query_bits: np.ndarray, db_bits: np.ndarray, ranked: np.ndarray) -> np.ndarray:
  """bool ``(Q, K)``: relevance of the database items listed in ``ranked`` ``(Q, K)``."""
  return relevance(query_bits[:, None, :], db_bits[ranked])


def average_precision_sums(ranked_rel: np.ndarray, depth: int) -> tuple[np.ndarray, np.ndarray]:
  """Per query, sum over relevant j <= depth of P(j), and the relevant items in the top depth."""
  top = ranked_rel[:, :depth]
  hits = np.cumsum(top, axis=1, dtype=np.int64)
  precision = hits / np.arange(1, top.shape[1] + 1)
  return np.where(top, precision, 0.0).sum(axis=1), top.sum(axis=1)


def mean_average_precision(ap_sums: np.ndarray, num_relevant: np.ndarray, weights=None) -> dict:
  """``{"map": ..., "hashnet_map": ...}`` from per-query AP sums and relevant counts (top R)."""
  found = num_relevant > 0
  ap = np.where(found, ap_sums / np.maximum(num_relevant, 1), 0.0)
  weights = np.ones(len(ap)) if weights is None else weights
  kept = np.sum(weights * found)
  return {
    "map": float(np.sum(weights * ap) / np.sum(weights)),
    "hashnet_map": float(np.sum(weights * ap) / kept) if kept else 0.0,
  }


def precision_at(ranked_rel: np.ndarray, k: int) -> np.ndarray:
  """Per query, precision of the top min(k, K) of the ranked lists ``(Q, K)``."""
  k = min(k, ranked_rel.shape[1])
  return ranked_rel[:, :k].sum(axis=1) / k


def curve_ks(num_codes: int) -> list[int]:
  """k = 1..10, 20..100, 200..1000, ending at the database size when that is smaller."""
  last = min(num_codes, CURVE_MAX_K)
  grid = (*range(1, 10), *range(10, 100, 10), *range(100, CURVE_MAX_K, 100))
  return [k for k in grid if k < last] + [last]


def precision_curve(ranked_rel: np.ndarray, ks: list[int], weights=None) -> list[float]:
  """Mean precision@k over queries for each k in ``ks`` (each at most the list length)."""
  hits = np.cumsum(ranked_rel[:, : ks[-1]], axis=1, dtype=np.int64)
  values = hits[:, np.asarray(ks) - 1] / np.asarray(ks)
  return np.average(values, axis=0, weights=weights).tolist()


def within_radius(
  counts: np.ndarray, relevant_counts: np.ndarray, radius: int
) -> tuple[np.ndarray, np.ndarray]:
  """Per query precision and recall of the codes within Hamming ``radius``.

  ``counts`` and ``relevant_counts`` ``(Q, bits + 1)``: codes (relevant codes) at each distance.
  A query that retrieves nothing has precision 0; one with no relevant item, recall 0.
  """
  retrieved = counts[:, : radius + 1].sum(axis=1)
  hits = relevant_counts[:, : radius + 1].sum(axis=1)
  total = relevant_counts.sum(axis=1)
  precision = np.where(retrieved > 0, hits / np.maximum(retrieved, 1), 0.0)
  recall = np.where(total > 0, hits / np.maximum(total, 1), 0.0)
  return precision, recall


def pr_curve(counts: np.ndarray, relevant_counts: np.ndarray, weights=None) -> dict:
  """Mean precision and recall within each radius r = 0..bits (conventions of within_radius)."""
  n = np.cumsum(counts, axis=1)
  hits = np.cumsum(relevant_counts, axis=1)
  total = hits[:, -1:]
  precision = np.where(n > 0, hits / np.maximum(n, 1), 0.0)
  recall = np.where(total > 0, hits / np.maximum(total, 1), 0.0)
  return {
    "radius": list(range(counts.shape[1])),
    "precision": np.average(precision, axis=0, weights=weights).tolist(),
    "recall": np.average(recall, axis=0, weights=weights).tolist(),
  }
