"""DLBHC's coarse-to-fine ranking: a Hamming pool re-ranked by Euclidean distance of fc7 features.

The pool is the m nearest codes, or all codes within radius r (the first ``size`` entries of the
Hamming ranking either way). It is re-ranked by squared Euclidean distance between features, ties
keeping the Hamming order, and the rest of the database follows in Hamming order, so metrics at
any depth are defined.

Queries are re-ranked in chunks on the device. A chunk's pools overlap heavily when its queries
have similar codes (the evaluator orders them so), so the distances come from one matrix product
of the chunk's features with the union of its pools, gathered once: on full MNIST, 32 queries with
neighbouring codes share about 2,200 pool codes instead of 32,000.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
from jax import lax

QUERY_CHUNK = 32


def pool_sizes(counts: np.ndarray, num_codes: int, pool: int, radius: int) -> np.ndarray:
  """Pool size per query: all codes within ``radius`` when it is >= 0, else the ``pool`` nearest.

  ``counts`` ``(Q, bits + 1)``: the codes at each distance.
  """
  if radius >= 0:
    return counts[:, : radius + 1].sum(axis=1)
  return np.full(counts.shape[0], min(pool, num_codes))


class Reranker:
  """Holds the database features on the device; :meth:`rerank` reorders pools of Hamming lists."""

  def __init__(self, db_features: np.ndarray):
    self.features = jnp.asarray(db_features, jnp.float32)
    self.squared_norms = jnp.sum(self.features**2, axis=1)

  def rerank(self, ranked: np.ndarray, sizes: np.ndarray, query_features: np.ndarray) -> np.ndarray:
    """``ranked`` ``(Q, K)`` in Hamming order with the first ``sizes[q]`` of each row re-ranked.

    Row q's pool must lie within its first ``K`` entries (``sizes <= K``).
    """
    width = int(sizes.max(initial=0))
    if width == 0:
      return ranked
    out = ranked.copy()
    for start in range(0, len(ranked), QUERY_CHUNK):
      rows = slice(start, start + QUERY_CHUNK)
      out[rows, :width] = self._rerank_chunk(
        ranked[rows, :width], sizes[rows], query_features[rows]
      )
    return out

  def _rerank_chunk(self, pools: np.ndarray, sizes: np.ndarray, query_features: np.ndarray):
    q, width = pools.shape
    union, columns = np.unique(pools, return_inverse=True)
    # Shapes padded to powers of two, so few compile. Padded columns sort last (key inf).
    union = np.pad(union, (0, _power_of_two(len(union), 256) - len(union)))
    pad = ((0, QUERY_CHUNK - q), (0, _power_of_two(width, 8) - width))
    order = _pool_order(
      jnp.asarray(np.pad(query_features, (pad[0], (0, 0)))),
      self.features,
      self.squared_norms,
      jnp.asarray(union),
      jnp.asarray(np.pad(columns.reshape(q, width), pad)),
      jnp.asarray(np.pad(pools, pad)),
      jnp.asarray(np.pad(sizes, pad[0])),
    )
    return np.take_along_axis(pools, np.asarray(order)[:q, :width], axis=1)


def _power_of_two(n: int, minimum: int) -> int:
  return max(minimum, 1 << (n - 1).bit_length())


@jax.jit
def _pool_order(query_features, db_features, squared_norms, union, columns, pools, sizes):
  """Per query, the pool positions sorted by (squared feature distance, Hamming position)."""
  dots = query_features @ db_features[union].T
  # The formula of the pre-package evaluation (q.q - 2 q.d + d.d), so near-ties order alike.
  keys = (
    jnp.sum(query_features**2, axis=1, keepdims=True)
    - 2.0 * jnp.take_along_axis(dots, columns, axis=1)
    + squared_norms[pools]
  )
  # Features of a diverged model overflow float32 (inf - inf = nan): such keys count as infinitely
  # far, and a stable sort keeps them in Hamming order, ahead of the positions outside the pool.
  in_pool = lax.iota(jnp.int32, pools.shape[1]) < sizes[:, None]
  keys = jnp.where(in_pool & ~jnp.isnan(keys), keys, jnp.inf)
  return jnp.argsort(keys, axis=1, stable=True)
