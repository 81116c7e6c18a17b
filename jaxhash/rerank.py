"""Rankings: Hamming order (codes only) and DLBHC's coarse-to-fine order.

Coarse-to-fine: Hamming ranking picks a candidate pool (the m nearest codes, or all codes within
radius r); the pool is re-ranked by Euclidean distance between fc7 features (ties keep the Hamming
order) and the rest of the database follows in Hamming order, so metrics at any depth are defined.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np

from jaxhash.retrieval import hamming_distances, hamming_topk


def hamming_order(query_words, db_words, depth: int, distances=None) -> tuple[np.ndarray, np.ndarray]:
  """The first ``depth`` database indices per query by (distance, index), and their distances.

  The full ranking (depth = N) is a stable radix sort of the small integer distances (reusing
  ``distances`` when the caller has them); a shorter one is the engine's exact top-k.
  """
  n = db_words.shape[0]
  if depth < n:
    sorted_distances, order = hamming_topk(query_words, db_words, depth)
    return np.asarray(order), np.asarray(sorted_distances)
  if distances is None:
    distances = hamming_distances(query_words, db_words)
  distances = np.asarray(distances).astype(np.uint16)
  order = np.argsort(distances, axis=1, kind="stable")  # radix sort for 16-bit keys
  return order, np.take_along_axis(distances, order, axis=1)


@jax.jit
def _squared_distances(query_features, db_features):
  q2 = jnp.sum(query_features**2, axis=1, keepdims=True)
  d2 = jnp.sum(db_features**2, axis=1)
  return q2 - 2.0 * query_features @ db_features.T + d2


def rerank_pool(order: np.ndarray, pool_sizes: np.ndarray, query_features, db_features) -> np.ndarray:
  """Reorders each query's first ``pool_sizes[q]`` entries of ``order`` by fc7 distance."""
  width = int(pool_sizes.max(initial=0))
  if width == 0:
    return order
  head = order[:, :width]
  squared = np.asarray(_squared_distances(jnp.asarray(query_features), jnp.asarray(db_features)))
  keys = np.take_along_axis(squared, head, axis=1)
  keys = np.where(np.arange(width)[None, :] < pool_sizes[:, None], keys, np.inf)
  reordered = np.take_along_axis(head, np.argsort(keys, axis=1, kind="stable"), axis=1)
  return np.concatenate([reordered, order[:, width:]], axis=1)


def pool_sizes(sorted_distances: np.ndarray, pool: int, radius: int) -> np.ndarray:
  """Candidate pool per query: all within ``radius`` when radius >= 0, else the ``pool`` nearest."""
  if radius >= 0:
    return (sorted_distances <= radius).sum(axis=1)
  return np.full(sorted_distances.shape[0], min(pool, sorted_distances.shape[1]))
