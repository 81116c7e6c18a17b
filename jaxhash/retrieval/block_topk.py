"""Exact Hamming top-k of a batch of queries against one block of codes.

Pass 1 is one fused XLA loop over (code, query) pairs: XOR, population count, and the minimum
distance of each bin of ``BIN_SIZE`` consecutive codes (uint8 up to 224 bits). No distance is
stored. Three selections follow, each keeping ``k`` items by (distance, index) through ``top_k``:

1. the groups of ``BIN_SIZE`` bins with the smallest (group minimum, group index);
2. among the bins of those groups, the bins with the smallest (bin minimum, bin index);
3. among the codes of those bins, recomputed, the codes with the smallest (distance, index).

Stages 2 and 3 first drop the candidates beyond the largest minimum selected by the stage before
(:func:`_beyond_bound`), which ``top_k`` then rejects at once.

Exact: let ``r`` be a true top-k result in bin ``B``, and suppose ``k`` other bins ``b`` rank before
``B`` by (minimum, index). Each holds a code at distance ``min_b <= min_B <= d(r)``; when
``min_b = d(r)``, then ``b < B`` and that code's index is below ``r``'s. So ``k`` codes rank before
``r``, which is impossible: the ``k`` best bins hold every result. Groups are bins of bins.
Pass 1 sees ``BIN_SIZE`` codes per query for each stored byte; ``top_k`` sees about
``(num_codes / BIN_SIZE**2 + 2 * k * BIN_SIZE)`` keys per query.
"""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
from jax import lax

from jaxhash.arith import ceil_div
from jaxhash.retrieval import keys

BIN_SIZE = 32
ROW_MULTIPLE = BIN_SIZE * BIN_SIZE  # blocks of a multiple of this many rows select through groups
UNROLL_BYTES = 8  # pass 1 over byte views of codes up to this long is unrolled over a bin's codes


def max_distance(num_words: int) -> int:
  """Largest Hamming distance between codes of ``num_words`` uint32 words."""
  return 32 * num_words


def distance_dtype(num_words: int):
  """uint8 while every distance and the empty-bin marker (255) fit, else uint16."""
  return jnp.uint8 if max_distance(num_words) < 255 else jnp.uint16


def code_query_distances(
  query_words: jax.Array, block_words: jax.Array, dtype=jnp.uint16
) -> jax.Array:
  """``(N, Q)`` Hamming distances in ``dtype``, codes outer and queries inner.

  The codes may be given as uint32 words or as any other unsigned view of the same bits (uint8
  bytes, uint64 words): a distance is the sum of the popcounts of its words' XOR. Consumers that
  reduce over codes (bin minima, counts) fuse with it into one loop that never stores a distance.
  """
  queries_t = query_words.T
  return functools.reduce(
    jnp.add,
    [
      lax.population_count(block_words[:, j, None] ^ queries_t[None, j, :]).astype(dtype)
      for j in range(block_words.shape[1])
    ],
  )


def valid_rows(num_rows: int, num_valid) -> jax.Array | None:
  """bool ``(num_rows, 1)``: rows below ``num_valid``; None when all rows are (static) valid."""
  if isinstance(num_valid, int) and num_valid == num_rows:
    return None
  return (lax.iota(jnp.int32, num_rows) < num_valid)[:, None]


def _padding_in_last_group(num_rows: int, num_valid) -> bool:
  """Whether the invalid rows (static count) all lie in the last ROW_MULTIPLE of a longer block."""
  return (
    isinstance(num_valid, int)
    and num_rows - ROW_MULTIPLE <= num_valid < num_rows
    and num_rows > ROW_MULTIPLE
  )


def bin_minima(query_words, block_words, num_valid, dtype) -> jax.Array:
  """``(num_bins, Q)`` minimum distance of each bin; bins of invalid rows only hold dtype's max.

  When the padding lies in the last group (a prepared database), only that group is masked: a
  mask over the whole pass would cost a compare and select per distance.
  """
  num_rows = block_words.shape[0]
  if _padding_in_last_group(num_rows, num_valid):
    split = num_rows - ROW_MULTIPLE
    return jnp.concatenate(
      [
        bin_minima(query_words, block_words[:split], split, dtype),
        bin_minima(query_words, block_words[split:], num_valid - split, dtype),
      ]
    )
  valid = valid_rows(block_words.shape[0], num_valid)
  if valid is None and block_words.dtype == jnp.uint8 and block_words.shape[1] <= UNROLL_BYTES:
    return _unrolled_bin_minima(query_words, block_words, dtype)
  distances = code_query_distances(query_words, block_words, dtype)
  if valid is not None:
    distances = jnp.where(valid, distances, jnp.iinfo(dtype).max)
  return distances.reshape(-1, BIN_SIZE, distances.shape[1]).min(axis=1)


def _unrolled_bin_minima(query_bytes, block_bytes, dtype) -> jax.Array:
  """:func:`bin_minima` of codes read as bytes, written as one distance per code of a bin.

  The minimum of ``BIN_SIZE`` elementwise distance arrays, one per code position in the bins, is
  a loop that XLA's CPU backend vectorises over the queries, with each code byte broadcast; as a
  reduction it vectorises over the bin's 32 codes instead, with byte shuffles and a horizontal
  minimum per (bin, query). 2**20 codes x 128 queries on one core, 64 bits: 14.3 ms instead of
  26.5 on AVX-512 (byte popcount instructions); about equal with ``--xla_cpu_max_isa=AVX2``. At 96
  and 128 bits it is no faster on AVX-512 and slower on AVX2, so longer codes keep the reduction.

  The minima are written by a loop over two halves of the bins (overlapping by one bin when their
  number is odd): a loop's result is stored once. Without it XLA fuses this elementwise pass into
  both of its consumers, and the candidate gather of :func:`best_bins` recomputes 32 distances per
  gathered bin in a slow gather loop (54 ms instead of 2).
  """
  codes = block_bytes.reshape(-1, BIN_SIZE, block_bytes.shape[1])
  num_bins = codes.shape[0]
  half = ceil_div(num_bins, 2)

  def write_half(number, minima):
    start = number * (num_bins - half)
    bins = lax.dynamic_slice_in_dim(codes, start, half)
    half_minima = functools.reduce(
      jnp.minimum, [code_query_distances(query_bytes, bins[:, i], dtype) for i in range(BIN_SIZE)]
    )
    return lax.dynamic_update_slice_in_dim(minima, half_minima, start, 0)

  return lax.fori_loop(0, 2, write_half, jnp.zeros((num_bins, query_bytes.shape[0]), dtype))


def column_bin_minima(query_bytes, columns, num_valid, dtype) -> jax.Array:
  """:func:`bin_minima` from codes stored as byte columns ``(B, N)`` (``views.byte_columns``),
  for queries as bytes ``(Q, B)``. Each bin's 32 codes are contiguous in every column, so the
  loop runs over bins with the queries inner, vectorised over the codes of a bin, and reads the
  codes once for all the queries (XLA's CPU loop order follows the ``(bins, Q)`` output)."""
  num_rows = columns.shape[1]
  if _padding_in_last_group(num_rows, num_valid):  # as in bin_minima
    split = num_rows - ROW_MULTIPLE
    return jnp.concatenate(
      [
        column_bin_minima(query_bytes, columns[:, :split], split, dtype),
        column_bin_minima(query_bytes, columns[:, split:], num_valid - split, dtype),
      ]
    )
  distances = functools.reduce(
    jnp.add,
    [
      lax.population_count(columns[j][:, None] ^ query_bytes[None, :, j]).astype(dtype)
      for j in range(columns.shape[0])
    ],
  )  # (N, Q)
  valid = valid_rows(columns.shape[1], num_valid)
  if valid is not None:
    distances = jnp.where(valid, distances, jnp.iinfo(dtype).max)
  return distances.reshape(-1, BIN_SIZE, distances.shape[1]).min(axis=1)


def block_topk(
  query_words,
  pass_queries,
  db_words,
  pass_words,
  start,
  num_rows: int,
  num_valid,
  k: int,
  *,
  columns: bool = False,
):
  """Exact top-``k`` of each query among ``num_valid`` codes from row ``start`` of the database.

  Args:
    query_words, db_words: uint32 ``(Q, W)`` and ``(N, W)`` packed codes; the block is rows
      ``[start, start + num_rows)`` of ``db_words`` (``start`` may be traced).
    pass_queries, pass_words: the same codes as pass 1 reads them (see ``views.py``; the uint32
      words themselves off CPU); with ``columns``, the query bytes and the byte columns.
    num_rows: static, a multiple of ``BIN_SIZE`` and at least ``k``.
    num_valid: rows of the block that are codes (the rest is padding); static or traced.

  Returns:
    int32 ``(distances, block-local indices)``, each ``(Q, k)``, sorted by (distance, index);
    missing results (``num_valid < k``) have distance ``max_distance + 1``.
  """
  num_words = query_words.shape[1]
  top = max_distance(num_words)
  if columns:
    block = lax.dynamic_slice_in_dim(pass_words, start, num_rows, axis=1)
    minima = column_bin_minima(pass_queries, block, num_valid, distance_dtype(num_words))
  else:
    block = lax.dynamic_slice_in_dim(pass_words, start, num_rows)
    minima = bin_minima(pass_queries, block, num_valid, distance_dtype(num_words))
  bin_minimum, bins = best_bins(minima, k, top)
  bound = bin_minimum[:, -1:] if bins.shape[1] == k else None  # fewer than k bins: no bound
  return _best_codes(query_words, db_words, start, bins, bound, num_valid, k, top)


def best_bins(minima: jax.Array, k: int, top: int) -> tuple[jax.Array, jax.Array]:
  """int32 ``(bin minima, bins)``, each ``(Q, min(k, num_bins))``: the bins with the smallest
  (minimum, bin index), in that order.

  Selects through groups of ``BIN_SIZE`` bins when there are more than ``k`` whole groups.
  """
  num_bins, num_queries = minima.shape
  num_groups = num_bins // BIN_SIZE
  if num_bins % BIN_SIZE or num_groups <= k:
    return _smallest_rows(minima, min(k, num_bins), top)
  groups = minima.reshape(num_groups, BIN_SIZE, num_queries)
  group_minimum, best_groups = _smallest_rows(groups.min(axis=1), k, top)
  candidates = groups[best_groups, :, jnp.arange(num_queries)[:, None]]  # (Q, k, BIN_SIZE)
  candidates = _beyond_bound(candidates.astype(jnp.int32), group_minimum[:, -1:, None], top)
  bins = best_groups[:, :, None] * BIN_SIZE + lax.iota(jnp.int32, BIN_SIZE)
  return _smallest(
    _order_keys(candidates.reshape(num_queries, -1), bins.reshape(num_queries, -1), top), k, top
  )


def _beyond_bound(distances, bound, top: int):
  """``distances`` above ``bound`` raised to ``top + 1``, where they tie with missing results.

  ``bound`` is the largest minimum among ``k`` groups or bins already selected: each holds a code
  at most that far, so ``k`` codes are at least as near as a code beyond it, which can never be a
  result. Raised keys lose at once in ``top_k``'s partial sort: 30% less time on its 3,200
  candidates per query at 1M random 64-bit codes.
  """
  return jnp.where(distances > bound, top + 1, distances)


def _smallest_rows(distances, k: int, top: int) -> tuple[jax.Array, jax.Array]:
  """:func:`_smallest` over each column of ``distances`` ``(n, Q)``, with the row numbers as ids.

  The keys are built in the columns' layout and only then transposed for ``top_k``: XLA's CPU
  backend otherwise fuses the producer's reduction (the group minima) into one loop with the
  transposition, which reads the whole minima array once per query (8x slower at 128 queries).
  """
  rows = lax.iota(jnp.int32, distances.shape[0])[:, None]
  return _smallest(_order_keys(distances, rows, top).T, k, top)


def _order_keys(distances, ids, top: int) -> jax.Array:
  """int32 order keys (``keys.py``) of (distance, id); distances over ``top`` tie at ``top + 1``."""
  capped = jnp.minimum(distances.astype(jnp.int32), top + 1)
  return keys.encode(capped, jnp.broadcast_to(ids, capped.shape), keys.index_shift(top))


def _smallest(order_keys, k: int, top: int) -> tuple[jax.Array, jax.Array]:
  """``(distances, ids)`` of the ``k`` smallest keys of each row, in increasing order."""
  best, _ = keys.smallest(order_keys, k)
  return keys.decode(best, keys.index_shift(top))


def _best_codes(query_words, db_words, start, bins, bound, num_valid, k: int, top: int):
  """Recomputes the codes of ``bins`` (rows from ``start``) and keeps the ``k`` best."""
  num_queries, num_words = query_words.shape
  take_bin = lambda row: lax.dynamic_slice(db_words, (row, jnp.int32(0)), (BIN_SIZE, num_words))
  codes = jax.vmap(jax.vmap(take_bin))(start + bins * BIN_SIZE)  # (Q, bins, BIN_SIZE, W)
  distances = jnp.sum(
    lax.population_count(codes ^ query_words[:, None, None, :]), axis=-1, dtype=jnp.int32
  )
  if bound is not None:
    distances = _beyond_bound(distances, bound[:, :, None], top)
  indices = bins[:, :, None] * BIN_SIZE + lax.iota(jnp.int32, BIN_SIZE)
  shift = keys.index_shift(top)
  candidates = jnp.where(
    indices < num_valid,
    keys.encode(distances, indices, shift),
    keys.encode(jnp.int32(top + 1), jnp.int32(0), shift),
  )
  best, _ = keys.smallest(candidates.reshape(num_queries, -1), min(k, candidates[0].size))
  return _pad_missing(*keys.decode(best, shift), k, top)


def _pad_missing(distances, indices, k: int, top: int):
  """Pads ``(Q, n)`` results to ``(Q, k)`` with missing entries (distance ``top + 1``)."""
  missing = k - distances.shape[1]
  if missing == 0:
    return distances, indices
  pad = ((0, 0), (0, missing))
  return jnp.pad(distances, pad, constant_values=top + 1), jnp.pad(indices, pad)
