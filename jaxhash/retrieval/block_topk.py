"""Exact Hamming top-k of a batch of queries against one block of codes, in two passes.

Pass 1 (one fused XLA loop, vectorised across queries): for each bin of ``BIN_SIZE`` consecutive
codes, the smallest ``(distance, offset)`` pair, packed into a uint16. Pass 2: keep the ``k`` bins
with the smallest minima (through groups of bins, see ``_best_bins``), recompute the
distances of their codes, and keep the ``k`` smallest.
This is exact: a bin that holds one of the true top ``k`` has a minimum no larger than that result,
and at most ``k`` bins can have a minimum that small (each such minimum is itself a top-``k``
result), so the ``k`` best bins hold every top-``k`` result. Pass 2 touches ``k * BIN_SIZE`` codes
per query instead of the whole block, and the sort-like work (``lax.top_k``) runs on ``1/BIN_SIZE``
of the distances.
"""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
from jax import lax

from jaxhash.retrieval import keys

BIN_SIZE = 32
ROW_MULTIPLE = BIN_SIZE * BIN_SIZE  # blocks with a multiple of this many rows select bins in groups
_OFFSET_BITS = 5  # log2(BIN_SIZE); (distance << 5 | offset) fits a uint16 for up to 2,047 bits
_EMPTY_BIN = 0xFFFF


def max_distance(num_words: int) -> int:
  """Largest Hamming distance between codes of ``num_words`` uint32 words."""
  return 32 * num_words


def code_query_distances(query_words: jax.Array, block_words: jax.Array) -> jax.Array:
  """uint16 ``(N, Q)`` Hamming distances, codes outer and queries inner.

  This layout lets XLA vectorise across queries with the block code broadcast; consumers that
  reduce over codes (bin minima, counts) fuse with it into one loop that streams the block once
  per query chunk and never stores the distances.
  """
  queries_t = query_words.T
  return functools.reduce(jnp.add, [
      lax.population_count(block_words[:, j, None] ^ queries_t[None, j, :]).astype(jnp.uint16)
      for j in range(block_words.shape[1])])


def valid_rows(num_rows: int, num_valid) -> jax.Array | None:
  """bool ``(num_rows, 1)``: rows below ``num_valid``; None when all rows are (static) valid."""
  if isinstance(num_valid, int) and num_valid == num_rows:
    return None
  return (lax.iota(jnp.int32, num_rows) < num_valid)[:, None]


def bin_minima(query_words: jax.Array, block_words: jax.Array, num_valid) -> jax.Array:
  """uint16 ``(num_bins, Q)``: per bin, min of ``distance << 5 | offset``; empty bins are 0xFFFF."""
  n = block_words.shape[0]
  offsets = lax.iota(jnp.uint16, n) & (BIN_SIZE - 1)
  packed = (code_query_distances(query_words, block_words) << _OFFSET_BITS) | offsets[:, None]
  valid = valid_rows(n, num_valid)
  if valid is not None:
    packed = jnp.where(valid, packed, _EMPTY_BIN)
  return packed.reshape(n // BIN_SIZE, BIN_SIZE, -1).min(axis=1)


def block_topk(query_words: jax.Array, block_words: jax.Array, num_valid, k: int):
  """Exact top-``k`` of each query among the first ``num_valid`` codes of the block.

  ``block_words`` has a multiple of ``BIN_SIZE`` rows, at least ``k``, and fewer than
  ``2**keys.index_shift(...)``. Returns int32 ``(distances, block-local indices)``, each
  ``(Q, k)``, sorted by (distance, index); missing results (``num_valid < k``) have distance
  ``max_distance + 1``. Traceable: ``num_valid`` may be a traced scalar (as inside shard_map).
  """
  n, num_words = block_words.shape
  num_queries = query_words.shape[0]
  num_bins = n // BIN_SIZE
  top_distance = max_distance(num_words)
  shift = keys.index_shift(top_distance)
  missing = keys.encode(jnp.int32(top_distance + 1), jnp.int32(0), shift)

  minima = bin_minima(query_words, block_words, num_valid).T.astype(jnp.int32)
  first_index = lax.iota(jnp.int32, num_bins) << _OFFSET_BITS
  bin_keys = keys.encode(minima >> _OFFSET_BITS, first_index | (minima & (BIN_SIZE - 1)), shift)
  bin_keys = jnp.where(minima == _EMPTY_BIN, missing, bin_keys)
  best_bins = _best_bins(bin_keys, k)

  codes = block_words.reshape(num_bins, BIN_SIZE, num_words)[best_bins]
  distances = jnp.sum(
      lax.population_count(codes ^ query_words[:, None, None, :]).astype(jnp.int32), axis=-1)
  indices = (best_bins[:, :, None] << _OFFSET_BITS) | lax.iota(jnp.int32, BIN_SIZE)
  candidate_keys = jnp.where(indices < num_valid, keys.encode(distances, indices, shift), missing)
  best, _ = keys.smallest(candidate_keys.reshape(num_queries, -1), k)
  return keys.decode(best, shift)


def _best_bins(bin_keys: jax.Array, k: int) -> jax.Array:
  """Indices of the ``min(k, num_bins)`` bins with the smallest keys, in groups when cheaper.

  ``top_k`` costs about linear time in its input, so when the bins form more than ``k`` whole
  groups of ``BIN_SIZE`` bins (blocks of a multiple of ``ROW_MULTIPLE`` rows), this first keeps the
  ``k`` groups with the smallest minimum, then the ``k`` best bins among those ``k * BIN_SIZE``
  (exact by the same argument as the bins).
  """
  num_queries, num_bins = bin_keys.shape
  num_groups = num_bins // BIN_SIZE
  if num_bins % BIN_SIZE or num_groups <= k:
    return keys.smallest(bin_keys, min(k, num_bins))[1]
  groups = bin_keys.reshape(num_queries, num_groups, BIN_SIZE)
  _, best_groups = keys.smallest(groups.min(axis=-1), k)
  candidates = jnp.take_along_axis(groups, best_groups[:, :, None], axis=1)
  _, positions = keys.smallest(candidates.reshape(num_queries, -1), k)
  group_of = jnp.take_along_axis(best_groups, positions >> _OFFSET_BITS, axis=1)
  return (group_of << _OFFSET_BITS) | (positions & (BIN_SIZE - 1))
