"""Exact Hamming top-k of queries against a database held in memory or streamed in chunks."""

from __future__ import annotations

import operator
from collections.abc import Iterable

import jax
import jax.numpy as jnp
import numpy as np

from jaxhash.errors import UsageError
from jaxhash.retrieval import chunking, views
from jaxhash.retrieval.block_topk import block_topk, max_distance
from jaxhash.retrieval.codes import check_words
from jaxhash.retrieval.merge import append_topk

MAX_K = 100_000


def check_k(k, num_codes: int | None = None) -> int:
  """Returns ``k`` as an int, or raises a ValueError saying which values are allowed."""
  try:
    k = operator.index(k)
  except TypeError:
    raise UsageError(f"k must be an integer number of results; got {k!r}.") from None
  if k < 1 or k > MAX_K:
    raise UsageError(f"k={k} is out of range: ask for 1 to {MAX_K} results per query.")
  if num_codes is not None and k > num_codes:
    raise UsageError(
      f"k={k} is larger than the database ({num_codes} codes): use k <= {num_codes}."
    )
  return k


class PreparedCodes:
  """A database laid out once for many searches, as adding codes to FAISS's ``IndexBinaryFlat``.

  Holds an aligned copy of the codes, zero-padded to whole groups of bins, and on CPU their byte
  columns (see ``views.py``): 2x the codes' memory. Searching it skips the per-call preparation
  and tail block of a plain array, and a few queries read the columns. Build it with
  :func:`prepare_codes`; it is immutable (``HammingIndex`` rebuilds its own after ``add``).
  """

  def __init__(self, words, *, db_chunk: int | None = None):
    words = check_words(words, "db_words")
    self.num_codes, self.num_words = words.shape
    if self.num_codes > chunking.MAX_CODES:
      raise UsageError(
        f"the database has more than {chunking.MAX_CODES} codes (indices are "
        "int32); split it and search the parts separately."
      )
    rows = chunking.block_rows(self.num_words, db_chunk)
    dtypes = {views.pass_dtype(size, self.num_words) for size in (1, views.FEW_QUERIES + 1)}
    self.part = chunking.prepare_padded(words, rows, dtypes)


def prepare_codes(db_words, *, db_chunk: int | None = None) -> PreparedCodes:
  """uint32 ``(N, W)`` packed codes laid out for repeated :func:`hamming_topk` calls."""
  return PreparedCodes(db_words, db_chunk=db_chunk)


def hamming_topk(
  query_words, db_words, k: int, *, query_chunk: int | None = None, db_chunk: int | None = None
) -> tuple[jax.Array, jax.Array]:
  """The ``k`` nearest database codes of each query, exactly, by (Hamming distance, index).

  Args:
    query_words: uint32 ``(Q, W)`` packed codes (see ``pack_bits``).
    db_words: uint32 ``(N, W)`` packed codes, NumPy or JAX, or a :class:`PreparedCodes` (faster
      for repeated searches of one database, above all for a few queries at a time).
    k: results per query, 1 <= k <= min(N, MAX_K).
    query_chunk: queries per chunk (a memory/speed knob; the result does not depend on it).
    db_chunk: database codes per block (likewise); a prepared database has its ``db_chunk``
      fixed by :func:`prepare_codes`.

  Returns:
    ``(distances, indices)``, int32 ``(Q, k)`` each, sorted by distance and, among equal
    distances, by database index, so results are identical on every backend and chunking.

  Call it outside ``jax.jit``: it loops over chunks on the host (and, on CPU, over threads).
  """
  queries = check_words(query_words, "query_words")
  if not isinstance(db_words, PreparedCodes):
    database = check_words(db_words, "db_words", queries.shape[1])
    k = check_k(k, database.shape[0])
    return stream_topk(queries, [database], k, query_chunk=query_chunk, db_chunk=db_chunk)
  if db_chunk is not None:
    raise ValueError("db_chunk is fixed when a database is prepared: pass it to prepare_codes.")
  if queries.shape[1] != db_words.num_words:
    raise ValueError(
      f"query_words has {queries.shape[1]} words per code but the prepared database has "
      f"{db_words.num_words}: queries and database must be packed from codes of the same length."
    )
  k = check_k(k, db_words.num_codes)
  chunks = _query_chunks(queries, k, query_chunk)
  num_queries = queries.shape[0]
  kind = views.pass_kind(num_queries, queries.shape[1], db_words.part.views)
  if num_queries and kind == views.COLUMNS:  # one pass over the columns for all the queries
    chunks = [(0, num_queries)]
  return _search(queries, [(0, db_words.part)], k, chunks)


def stream_topk(
  query_words,
  db_chunks: Iterable,
  k: int,
  *,
  query_chunk: int | None = None,
  db_chunk: int | None = None,
) -> tuple[jax.Array, jax.Array]:
  """:func:`hamming_topk` over a database given as consecutive chunks, read once, in order.

  ``db_chunks`` is any iterable of uint32 ``(n_i, W)`` arrays (for example memory-mapped slices of
  a file too large for memory); indices count from the start of the first chunk. Only one chunk
  and the running top-k lists are held at a time. Chunks of one size share one compiled kernel.
  Raises ValueError after the last chunk if the chunks hold fewer than ``k`` codes.
  """
  queries = check_words(query_words, "query_words")
  k = check_k(k)
  num_words = queries.shape[1]
  chunks = _query_chunks(queries, k, query_chunk)
  dtypes = {views.pass_dtype(size, num_words) for _, size in chunks}
  parts = chunking.parts(db_chunks, num_words, chunking.block_rows(num_words, db_chunk), dtypes)
  return _search(queries, parts, k, chunks)


def _query_chunks(queries, k: int, query_chunk: int | None) -> list[tuple[int, int]]:
  num_queries, num_words = queries.shape
  return chunking.query_chunks(num_queries, chunking.query_chunk_size(query_chunk, k, num_words))


def _search(queries, parts: Iterable, k: int, chunks: list[tuple[int, int]]):
  """Top-k of every query chunk ``(start, size)`` over the ``(offset, Part)`` database parts."""
  num_queries = queries.shape[0]
  queries = np.asarray(queries) if views.on_cpu() else jnp.asarray(queries)
  best = [None] * len(chunks)
  num_codes = 0
  # A few queries' pass 1 already runs on every core (XLA splits it); chunks in parallel threads
  # would only compete. Bulk chunks run in parallel: their selection stage is single-threaded.
  parallel = num_queries > views.FEW_QUERIES
  for offset, part in parts:
    best = chunking.map_chunks(
      lambda j: _search_part(chunking.padded_rows(queries, *chunks[j]), part, offset, best[j], k),
      len(chunks),
      parallel,
    )
    num_codes = offset + part.num_codes
  if num_codes < k:
    raise UsageError(
      f"k={k} is larger than the database ({num_codes} codes streamed): use k <= {num_codes}."
    )
  if not chunks:
    return jnp.zeros((0, k), jnp.int32), jnp.zeros((0, k), jnp.int32)
  return (
    chunking.concat_rows([distances for distances, _ in best], num_queries),
    chunking.concat_rows([indices for _, indices in best], num_queries),
  )


def _search_part(queries, part: chunking.Part, offset: int, best, k: int):
  """One query chunk's top-k in one database part, merged into its running top-k (if any)."""
  kind = views.pass_kind(queries.shape[0], queries.shape[1], part.views)
  columns = kind == views.COLUMNS
  step = chunking.search_jit(_search_blocks, ("plan", "k", "columns"))
  with views.x64(kind):
    return step(
      queries,
      queries if columns else views.as_view(queries, kind),
      *part.views[np.dtype(np.uint32)],
      *part.views[kind],
      np.int32(offset),
      best,
      plan=part.blocks,
      k=k,
      columns=columns,
    )


def _search_blocks(
  queries,
  pass_queries,
  words,
  tail,
  pass_words,
  pass_tail,
  offset,
  best,
  *,
  plan: chunking.Blocks,
  k: int,
  columns: bool,
):
  top = max_distance(queries.shape[1])
  if columns:
    pass_queries = views.code_bytes(pass_queries)

  def visit(in_tail, start, num_rows, num_valid):
    source, view, first = (tail, pass_tail, plan.tail_start) if in_tail else (words, pass_words, 0)
    distances, indices = block_topk(
      queries, pass_queries, source, view, start, num_rows, num_valid, k, columns=columns
    )
    return distances, indices + (first + start)

  distances, indices = chunking.fold_blocks(plan, visit, lambda a, b: append_topk(a, b, k, top))
  found = distances, indices + offset
  return found if best is None else append_topk(best, found, k, top)
