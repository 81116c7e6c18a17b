"""Merging partial top-k lists (from database chunks, stream pieces or shards) into one."""

from __future__ import annotations

import jax
import jax.numpy as jnp

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
    raise ValueError(
        f"cannot merge {num_entries} partial results per query at {max_distance} bits "
        f"(at most {1 << shift}); use a smaller k or fewer shards.")
  positions = jnp.arange(num_entries, dtype=jnp.int32)[None, :]
  best, _ = keys.smallest(keys.encode(distances, positions, shift), k)
  best_distances, best_positions = keys.decode(best, shift)
  return best_distances, jnp.take_along_axis(indices, best_positions, axis=1)


def append_topk(best, new, k: int, max_distance: int):
  """Merges list ``new`` into the running top-k ``best``; every index in ``new`` must be larger."""
  return merge_topk(jnp.concatenate([best[0], new[0]], axis=1),
                    jnp.concatenate([best[1], new[1]], axis=1), k, max_distance)
