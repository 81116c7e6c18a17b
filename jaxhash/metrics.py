"""Retrieval metrics over ranked lists, with the conventions of both papers' evaluation code.

Ranking is by Hamming distance with ties broken by database index. For one query,
AP@R = (sum over j <= R of P(j) * rel(j)) / (number of relevant items in the top R), and 0 when
there is none; mAP@R is the mean over all queries (none dropped). R = "all" is the usual mAP.
Relevance: two items are relevant when their multi-hot labels share at least one class.
"""

from __future__ import annotations

import numpy as np


def relevance(query_labels: np.ndarray, db_labels: np.ndarray) -> np.ndarray:
  """bool (Q, N): query i and database item j share at least one label."""
  return (query_labels.astype(np.float32) @ db_labels.astype(np.float32).T) > 0


def average_precision(ranked_relevance: np.ndarray, depth: int) -> np.ndarray:
  """AP@depth per query from relevance in ranked order, bool (Q, L) with L >= depth."""
  top = ranked_relevance[:, :depth].astype(np.float32)
  hits = np.cumsum(top, axis=1)
  precision = hits / np.arange(1, top.shape[1] + 1, dtype=np.float32)
  num_relevant = top.sum(axis=1)
  return np.where(num_relevant > 0, (precision * top).sum(axis=1) / np.maximum(num_relevant, 1), 0.0)


def precision_at(ranked_relevance: np.ndarray, k: int) -> np.ndarray:
  """Precision of the top k per query."""
  return ranked_relevance[:, :k].sum(axis=1) / float(k)


def within_radius(distances: np.ndarray, rel: np.ndarray, radius: int) -> tuple[np.ndarray, np.ndarray]:
  """Precision and recall per query of the items within Hamming ``radius``.

  A query that retrieves nothing has precision 0 (the convention of the DLBHC and HashNet code),
  and a query with no relevant item in the database has recall 0.
  """
  retrieved = distances <= radius
  num_retrieved = retrieved.sum(axis=1)
  hits = (retrieved & rel).sum(axis=1)
  total = rel.sum(axis=1)
  precision = np.where(num_retrieved > 0, hits / np.maximum(num_retrieved, 1), 0.0)
  recall = np.where(total > 0, hits / np.maximum(total, 1), 0.0)
  return precision, recall


def radius_histograms(distances: np.ndarray, rel: np.ndarray, nbits: int) -> tuple[np.ndarray, ...]:
  """Per-query counts of retrieved and relevant items at each distance 0..nbits (for PR curves)."""
  q = distances.shape[0]
  flat = (np.arange(q)[:, None] * (nbits + 1) + distances).ravel()
  retrieved = np.bincount(flat, minlength=q * (nbits + 1)).reshape(q, nbits + 1)
  relevant = np.bincount(flat, weights=rel.ravel(), minlength=q * (nbits + 1)).reshape(q, nbits + 1)
  return retrieved, relevant, rel.sum(axis=1)


def pr_curve(retrieved: np.ndarray, relevant: np.ndarray, total: np.ndarray) -> dict:
  """Mean precision and recall within each radius r = 0..nbits, from :func:`radius_histograms`."""
  n = np.cumsum(retrieved, axis=1)
  hits = np.cumsum(relevant, axis=1)
  precision = np.where(n > 0, hits / np.maximum(n, 1), 0.0).mean(axis=0)
  recall = np.where(total[:, None] > 0, hits / np.maximum(total[:, None], 1), 0.0).mean(axis=0)
  return {"radius": list(range(retrieved.shape[1])), "precision": precision.tolist(),
          "recall": recall.tolist()}
