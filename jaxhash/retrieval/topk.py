"""Exact Hamming top-k of queries against a database held in memory or streamed in chunks."""

from __future__ import annotations

import functools
import operator
from collections.abc import Iterable

import jax
import jax.numpy as jnp

from jaxhash.retrieval import chunking, keys
from jaxhash.retrieval.block_topk import BIN_SIZE, block_topk, max_distance
from jaxhash.retrieval.codes import check_words
from jaxhash.retrieval.merge import append_topk

MAX_K = 100_000
_BLOCK_ROWS = 1 << 20  # codes per database block; keeps a query chunk's bin minima at 16 MiB
_CANDIDATE_BYTES = 256 << 20  # bound on a query chunk's gathered candidate codes


def check_k(k, num_codes: int | None = None) -> int:
  """Returns ``k`` as an int, or raises a ValueError saying which values are allowed."""
  try:
    k = operator.index(k)
  except TypeError:
    raise ValueError(f"k must be an integer number of results; got {k!r}.") from None
  if k < 1 or k > MAX_K:
    raise ValueError(f"k={k} is out of range: ask for 1 to {MAX_K} results per query.")
  if num_codes is not None and k > num_codes:
    raise ValueError(
        f"k={k} is larger than the database ({num_codes} codes): use k <= {num_codes}.")
  return k


def hamming_topk(query_words, db_words, k: int, *, query_chunk: int | None = None,
                 db_chunk: int | None = None) -> tuple[jax.Array, jax.Array]:
  """The ``k`` nearest database codes of each query, exactly, by (Hamming distance, index).

  Args:
    query_words: uint32 ``(Q, W)`` packed codes (see ``pack_bits``).
    db_words: uint32 ``(N, W)`` packed codes, NumPy or JAX.
    k: results per query, 1 <= k <= min(N, MAX_K).
    query_chunk, db_chunk: chunk sizes (memory/speed knobs; the result does not depend on them).

  Returns:
    ``(distances, indices)``, int32 ``(Q, k)`` each, sorted by distance and, among equal
    distances, by database index, so results are identical on every backend and chunking.
  """
  queries = check_words(query_words, "query_words")
  database = check_words(db_words, "db_words", queries.shape[1])
  k = check_k(k, database.shape[0])
  return stream_topk(queries, [database], k, query_chunk=query_chunk, db_chunk=db_chunk)


def stream_topk(query_words, db_chunks: Iterable, k: int, *, query_chunk: int | None = None,
                db_chunk: int | None = None) -> tuple[jax.Array, jax.Array]:
  """:func:`hamming_topk` over a database given as consecutive chunks, read once, in order.

  ``db_chunks`` is any iterable of uint32 ``(n_i, W)`` arrays (for example memory-mapped slices of
  a file too large for memory); indices count from the start of the first chunk. Only one chunk
  and the running top-k lists are held at a time. Chunks of one size share one compiled kernel.
  Raises ValueError after the last chunk if the chunks hold fewer than ``k`` codes.
  """
  queries = check_words(query_words, "query_words")
  k = check_k(k)
  num_words = queries.shape[1]
  chunks, num_queries = chunking.query_chunks(queries, _query_chunk(query_chunk, k, num_words))
  step = _search_step(jax.default_backend())
  missing = max_distance(num_words) + 1
  best = [(jnp.full((len(chunk), k), missing, jnp.int32), jnp.zeros((len(chunk), k), jnp.int32))
          for chunk in chunks]
  num_codes = 0
  for offset, words in chunking.offset_blocks(db_chunks, num_words, _block_rows(db_chunk, num_words)):
    block, num_valid = chunking.padded_block(words, k)
    best = chunking.map_chunks(
        lambda j: step(chunks[j], block, jnp.int32(offset), *best[j], num_valid=num_valid, k=k),
        len(chunks))
    num_codes = offset + num_valid
  if num_codes < k:
    raise ValueError(
        f"k={k} is larger than the database ({num_codes} codes streamed): use k <= {num_codes}.")
  return (chunking.concat_rows([distances for distances, _ in best], num_queries),
          chunking.concat_rows([indices for _, indices in best], num_queries))


def _query_chunk(requested: int | None, k: int, num_words: int) -> int:
  if requested is not None:
    if operator.index(requested) < 1:
      raise ValueError(f"query_chunk must be a positive number of queries; got {requested}.")
    return requested
  candidate_bytes = 2 * 4 * k * BIN_SIZE * num_words  # gathered codes and their XOR, per query
  return max(1, min(chunking.default_query_chunk(), _CANDIDATE_BYTES // candidate_bytes))


def _block_rows(requested: int | None, num_words: int) -> int:
  """Rows per database block: block-local indices must fit the key (2**20 to 2**25 codes)."""
  limit = 1 << keys.index_shift(max_distance(num_words))
  if requested is None:
    return min(_BLOCK_ROWS, limit)
  if operator.index(requested) < 1:
    raise ValueError(f"db_chunk must be a positive number of codes; got {requested}.")
  return min(requested, limit)


@functools.cache
def _search_step(backend: str):
  """Jitted: top-k of one query chunk in one block, merged into the chunk's running top-k."""
  del backend  # the cache key: compiler options differ per backend
  return jax.jit(_merge_block, static_argnames=("num_valid", "k"),
                 compiler_options=chunking.cpu_compiler_options())


def _merge_block(queries, block, offset, best_distances, best_indices, *, num_valid, k):
  distances, indices = block_topk(queries, block, num_valid, k)
  return append_topk((best_distances, best_indices), (distances, indices + offset), k,
                     max_distance(queries.shape[1]))
