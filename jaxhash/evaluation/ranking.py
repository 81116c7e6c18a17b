"""Hamming ranking by counting: every database code's rank, ties by index, O(N) per query, no sort.

Distances are small integers (0..bits), so ranking by (distance, database index) is a stable
counting sort. For query q and database code j at distance d_j,

  rank_j = #{i : d_i < d_j} + #{i < j : d_i = d_j} + 1,
  hits_j = the same counts over relevant codes only (its rank among the relevant codes),

and AP@all = mean over relevant j of hits_j / rank_j. The database is cut into blocks of 64 codes.
Per block and distance we count codes and relevant codes; a prefix over blocks gives every block's
offset inside every distance bucket (a small table per query); inside a block the distances are
compared pairwise. A code's rank is then one table lookup plus its in-block count, and the codes
at ranks 1..K are written to the ranked list by a scatter. Everything runs on the device,
vectorised across the queries of a chunk (the minor axis), with intermediates of a few bytes per
(query, code) pair.

XLA CPU runs unrolled elementwise loops well and sorts, reductions over long axes and cumulative
sums badly, so the counts are unrolled loops and the prefix over blocks is a short scan over
groups of blocks. The stages are separate jitted programs: fused into one, XLA CPU moves the table
computation into the lookup and recomputes it for every element (measured 100x slower).
"""

from __future__ import annotations

import dataclasses
import functools

import jax
import jax.numpy as jnp
import numpy as np
from jax import lax

from jaxhash.arith import round_up
from jaxhash.retrieval.block_topk import code_query_distances

_BLOCK = 64  # codes per block; measured 1.5x faster than 32 at 48 bits (128 is much slower)
_GROUP = 8  # blocks per group: offsets are prefixed inside a group, then across groups by a scan
_CPU_CHUNK_PAIRS = 2**21  # (query, code) pairs per chunk on CPU: tables stay in the malloc heap
_ACCELERATOR_CHUNK_PAIRS = 2**26
_MAX_QUERY_CHUNK = 256
_LANES = 8
_PACK_LIMIT = 2**16  # below it, a uint32 table entry holds both counts (16 bits each)


@dataclasses.dataclass(frozen=True)
class Database:
  """Database codes and label bits padded to whole groups of blocks, with the layout constants."""

  words: jax.Array  # uint32 (n_padded, W)
  label_bits: jax.Array  # uint32 (n_padded, L); padding has no label
  num_codes: int
  nbits: int
  block: int  # codes per block (pairwise comparisons inside it)

  @property
  def sentinel(self) -> int:
    """The distance given to padding codes: past every real distance, so they rank last."""
    return self.nbits + 1


def prepare_database(words: np.ndarray, label_bits: np.ndarray, nbits: int) -> Database:
  """Pads the database to whole groups of blocks and moves it to the default device."""
  n = words.shape[0]
  padded = round_up(n, _BLOCK * _GROUP)
  pad = ((0, padded - n), (0, 0))
  return Database(
    jnp.asarray(np.pad(words, pad)), jnp.asarray(np.pad(label_bits, pad)), n, nbits, _BLOCK
  )


def query_chunk_size(db: Database) -> int:
  """Queries per chunk: a multiple of 8 with about 2**21 (query, code) pairs on CPU."""
  pairs = _CPU_CHUNK_PAIRS if jax.default_backend() == "cpu" else _ACCELERATOR_CHUNK_PAIRS
  return int(np.clip(pairs // db.words.shape[0] // _LANES * _LANES, _LANES, _MAX_QUERY_CHUNK))


@dataclasses.dataclass(frozen=True)
class ChunkRanking:
  """What one chunk of queries needs from the full ranking (NumPy, one row per query)."""

  ap_sums: np.ndarray  # float64 (Q,): sum over relevant codes of hits / rank
  counts: np.ndarray  # int64 (Q, bits + 1): codes at each distance
  relevant_counts: np.ndarray  # int64 (Q, bits + 1): relevant codes at each distance
  top: np.ndarray  # int32 (Q, depth): database indices of ranks 1..depth


def rank_chunk(
  db: Database, query_words: np.ndarray, query_label_bits: np.ndarray, depth: int
) -> ChunkRanking:
  """Ranks the whole database for each query (at most ``query_chunk_size(db)`` of them)."""
  chunk = query_chunk_size(db)
  q = query_words.shape[0]
  pad = ((0, chunk - q), (0, 0))
  d, r, counts, rel_counts, in_block, hits_in_block = _count(
    db.words,
    db.label_bits,
    jnp.asarray(np.pad(query_words, pad)),
    jnp.asarray(np.pad(query_label_bits, pad)),
    db.num_codes,
    sentinel=db.sentinel,
    block=db.block,
  )
  offsets, totals = _offsets(counts, rel_counts, packed=db.words.shape[0] < _PACK_LIMIT)
  # Lists are computed a whole number of groups long, so nearby depths share one compilation.
  listed = min(db.words.shape[0], round_up(depth, db.block * _GROUP))
  ap_parts, top = _ranks(offsets, d, in_block, hits_in_block, r, depth=listed)
  totals = np.asarray(totals, np.int64)[..., : db.nbits + 1, :q]
  return ChunkRanking(
    np.asarray(ap_parts, np.float64)[:, :q].sum(axis=0),
    totals[0].T,
    totals[1].T,
    np.asarray(top)[:q, :depth],
  )


def count_within(db: Database, query_words: np.ndarray, radius: int) -> np.ndarray:
  """int64 (Q,): database codes within Hamming ``radius`` of each query."""
  chunk = query_chunk_size(db)
  counts = []
  for start in range(0, len(query_words), chunk):
    words = query_words[start : start + chunk]
    padded = jnp.asarray(np.pad(words, ((0, chunk - len(words)), (0, 0))))
    counts.append(np.asarray(_count_within(db.words, padded, db.num_codes, radius))[: len(words)])
  return np.concatenate(counts).astype(np.int64)


@jax.jit
def _count_within(db_words, query_words, num_codes, radius):
  valid = (lax.iota(jnp.int32, db_words.shape[0]) < num_codes)[:, None]
  near = code_query_distances(query_words, db_words).astype(jnp.int32) <= radius
  return jnp.sum(near & valid, axis=0)


@functools.partial(jax.jit, static_argnames=("sentinel", "block"))
def _count(db_words, db_label_bits, query_words, query_label_bits, num_codes, *, sentinel, block):
  """Distances, relevance, per-block counts and in-block counts: the elementwise stages."""
  d, r = _distances(
    db_words, db_label_bits, query_words, query_label_bits, num_codes, sentinel, block
  )
  return (d, r, *_block_counts(d, r, num_buckets=sentinel + 1), *_in_block(d, r))


def _distances(db_words, db_label_bits, query_words, query_label_bits, num_codes, sentinel, block):
  """Distances (blocks, B, Q) (uint8, or uint16 past 253 bits) and relevance, codes outer."""
  n = db_words.shape[0]
  dtype = jnp.uint8 if sentinel < 255 else jnp.uint16
  valid = (lax.iota(jnp.int32, n) < num_codes)[:, None]
  d = jnp.where(valid, code_query_distances(query_words, db_words).astype(dtype), dtype(sentinel))
  shared = db_label_bits[:, None, :] & query_label_bits[None, :, :]
  r = jnp.any(shared != 0, axis=-1) & valid
  return d.reshape(n // block, block, -1), r.reshape(n // block, block, -1)


def _block_counts(d, r, *, num_buckets):
  """uint8 (blocks, buckets, Q): codes and relevant codes at each distance in each block."""
  buckets = lax.iota(d.dtype, num_buckets)[None, :, None]
  counts = jnp.zeros((d.shape[0], num_buckets, d.shape[2]), jnp.uint8)
  rel_counts = counts
  for t in range(d.shape[1]):  # unrolled: elementwise over (blocks, buckets, Q), vectorised on Q
    hit = d[:, t : t + 1, :] == buckets
    counts = counts + hit.astype(jnp.uint8)
    rel_counts = rel_counts + (hit & r[:, t : t + 1, :]).astype(jnp.uint8)
  return counts, rel_counts


@functools.partial(jax.jit, static_argnames=("packed",))
def _offsets(counts, rel_counts, *, packed):
  """Per block and distance, the codes ranked before the block's first code at that distance.

  Returns the table(s): one uint32 ``codes << 16 | relevant codes`` when ``packed`` (fewer than
  2**16 codes), else two int32; and the per-query totals ``(2, buckets, Q)``.
  """
  if packed:
    table, totals = _prefix((counts.astype(jnp.uint32) << 16) | rel_counts.astype(jnp.uint32))
    return table, jnp.stack([totals >> 16, totals & 0xFFFF]).astype(jnp.int32)
  (table, totals), (rel_table, rel_totals) = (
    _prefix(x.astype(jnp.int32)) for x in (counts, rel_counts)
  )
  return jnp.stack([table, rel_table]), jnp.stack([totals, rel_totals])


def _prefix(x):
  """Exclusive prefix of ``x`` (blocks, buckets, Q) over blocks and then over smaller buckets."""
  nb, num_buckets, q = x.shape
  x = x.reshape(nb // _GROUP, _GROUP, num_buckets, q)
  group_totals = x.sum(axis=1)
  groups = lax.scan(
    lambda total, row: (total + row, total), jnp.zeros_like(group_totals[0]), group_totals
  )[1]
  totals = groups[-1] + group_totals[-1]
  offset = groups + (jnp.cumsum(totals, axis=0) - totals)  # + codes at smaller distances
  table = []
  for g in range(_GROUP):  # unrolled prefix inside each group
    table.append(offset)
    offset = offset + x[:, g]
  return jnp.stack(table, axis=1).reshape(nb, num_buckets, q), totals


def _in_block(d, r):
  """uint8 (blocks, B, Q): codes (and relevant codes) earlier in the block at the same distance.

  The second half of a block is compared with all of the first half and then, like the first
  half, within itself: 3/4 of the comparisons of masking a full B x B square (1.5x faster).
  """
  half = d.shape[1] // 2
  (first, first_rel), (second, second_rel) = (
    _earlier_same(d[:, part], r[:, part]) for part in (slice(0, half), slice(half, None))
  )
  for s in range(half):
    same = d[:, half:] == d[:, s : s + 1]
    second = second + same.astype(jnp.uint8)
    second_rel = second_rel + (same & r[:, s : s + 1]).astype(jnp.uint8)
  return jnp.concatenate([first, second], axis=1), jnp.concatenate([first_rel, second_rel], axis=1)


def _earlier_same(d, r):
  """For each code, the earlier codes of its block (and the relevant ones) at the same distance."""
  position = lax.iota(jnp.uint8, d.shape[1])[None, :, None]
  same = jnp.zeros(d.shape, jnp.uint8)
  same_relevant = same
  for s in range(d.shape[1]):  # unrolled pairwise comparison
    earlier = (d == d[:, s : s + 1, :]) & (position > s)
    same = same + earlier.astype(jnp.uint8)
    same_relevant = same_relevant + (earlier & r[:, s : s + 1, :]).astype(jnp.uint8)
  return same, same_relevant


def _lookup(table, d):
  """``table[block, d[block, t, q], q]`` for every code: one gather batched over blocks and Q."""
  dims = lax.GatherDimensionNumbers(
    offset_dims=(),
    collapsed_slice_dims=(1,),
    start_index_map=(1,),
    operand_batching_dims=(0, 2),
    start_indices_batching_dims=(0, 2),
  )
  return lax.gather(
    table, d.astype(jnp.int32)[..., None], dims, slice_sizes=(1, 1, 1), mode="promise_in_bounds"
  )


@functools.partial(jax.jit, static_argnames=("depth",))
def _ranks(table, d, in_block, hits_in_block, r, *, depth):
  """Per block, the sum of hits / rank over relevant codes, and the codes at ranks 1..depth."""
  if table.ndim == 3:  # packed
    got = _lookup(table, d)
    rank_base, hit_base = (got >> 16).astype(jnp.int32), (got & 0xFFFF).astype(jnp.int32)
  else:
    rank_base, hit_base = _lookup(table[0], d), _lookup(table[1], d)
  rank = rank_base + in_block + 1
  hits = hit_base + hits_in_block + 1
  terms = jnp.where(r, hits.astype(jnp.float32) / rank.astype(jnp.float32), 0.0)
  nb, block, q = d.shape
  position = jnp.where(rank <= depth, (rank - 1) * q + lax.iota(jnp.int32, q), depth * q)
  index = jnp.broadcast_to(lax.iota(jnp.int32, nb * block).reshape(nb, block, 1), d.shape)
  top = (
    jnp.zeros((depth * q,), jnp.int32)
    .at[position.reshape(-1)]
    .set(index.reshape(-1), mode="drop", unique_indices=True)
  )
  return terms.sum(axis=1), top.reshape(depth, q).T
