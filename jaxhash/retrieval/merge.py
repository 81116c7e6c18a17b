"""Merging partial top-k lists (database chunks, stream pieces, shards or processes) into one."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np

from jaxhash.errors import UsageError
from jaxhash.retrieval import keys


def merge_topk(distances: jax.Array, indices: jax.Array, k: int, max_distance: int):
  """The ``k`` best of each row of concatenated partial lists, by (distance, index).

  Each row of ``distances``/``indices`` (int32, ``(Q, L)``) is a concatenation of lists that are
  each sorted by (distance, index), where every index in an earlier list is below every index in a
  later one (lists from consecutive chunks or shards, in order). Then, among equal distances, the
  position in the row orders like the index, so the 31-bit key only has to hold the position, not
  the (possibly much larger) global index. Traceable.
  """
  num_entries = distances.shape[1]
  shift = keys.index_shift(max_distance)
  if num_entries > 1 << shift:
    raise UsageError(
      f"cannot merge {num_entries} partial results per query at {max_distance} bits "
      f"(at most {1 << shift}); use a smaller k or fewer shards."
    )
  positions = jnp.arange(num_entries, dtype=jnp.int32)[None, :]
  best, _ = keys.smallest(keys.encode(distances, positions, shift), k)
  best_distances, best_positions = keys.decode(best, shift)
  return best_distances, jnp.take_along_axis(indices, best_positions, axis=1)


def append_topk(best, new, k: int, max_distance: int):
  """Merges list ``new`` into the running top-k ``best``; every index in ``new`` must be larger."""
  return merge_topk(
    jnp.concatenate([best[0], new[0]], axis=1),
    jnp.concatenate([best[1], new[1]], axis=1),
    k,
    max_distance,
  )


def merge_parts(distances: list, indices: list, k: int, max_distance: int):
  """The ``k`` best by (distance, index) of per-part top lists, as numpy arrays.

  Part ``p``'s lists (``(Q, L_p)``, each sorted by (distance, index)) hold indices all below part
  ``p + 1``'s: contiguous shards of a database, in order. Indices may be any integers (int64
  positions in a database of more than 2**31 codes); padding entries carry distance
  ``max_distance + 1`` and are never chosen while ``k`` real entries exist.
  """
  distances = np.concatenate([np.asarray(d, np.int32) for d in distances], axis=1)
  indices = np.concatenate([np.asarray(i) for i in indices], axis=1)
  rows = np.broadcast_to(np.arange(distances.shape[1], dtype=np.int32), distances.shape)
  best, chosen = _merge(distances, rows, k, max_distance)
  return np.asarray(best), np.take_along_axis(indices, np.asarray(chosen), axis=1)


_merge = jax.jit(merge_topk, static_argnums=(2, 3))  # one call, not one per operation
