"""Exact Hamming top-k of queries against a database held in memory or streamed in chunks."""

from __future__ import annotations

import operator
from collections.abc import Iterable

import jax
import jax.numpy as jnp
import numpy as np

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

  Call it outside ``jax.jit``: it loops over chunks on the host (and, on CPU, over threads).
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
  num_queries, num_words = queries.shape
  queries = np.asarray(queries) if views.on_cpu() else jnp.asarray(queries)
  chunks = chunking.query_chunks(num_queries, chunking.query_chunk_size(query_chunk, k, num_words))
  dtypes = {views.pass_dtype(size, num_words) for _, size in chunks}
  best = [None] * len(chunks)
  num_codes = 0
  for offset, part in chunking.parts(db_chunks, num_words, chunking.block_rows(num_words, db_chunk),
                                     dtypes):
    best = chunking.map_chunks(
        lambda j: _search_part(chunking.padded_rows(queries, *chunks[j]), part, offset, best[j], k),
        len(chunks))
    num_codes = offset + part.num_codes
  if num_codes < k:
    raise ValueError(
        f"k={k} is larger than the database ({num_codes} codes streamed): use k <= {num_codes}.")
  if not chunks:
    return jnp.zeros((0, k), jnp.int32), jnp.zeros((0, k), jnp.int32)
  return (chunking.concat_rows([distances for distances, _ in best], num_queries),
          chunking.concat_rows([indices for _, indices in best], num_queries))


def _search_part(queries, part: chunking.Part, offset: int, best, k: int):
  """One query chunk's top-k in one database part, merged into its running top-k (if any)."""
  dtype = views.pass_dtype(queries.shape[0], queries.shape[1])
  step = chunking.search_jit(_search_blocks, ("plan", "k"))
  with views.x64(dtype):
    return step(queries, views.as_view(queries, dtype), *part.views[np.dtype(np.uint32)],
                *part.views[dtype], np.int32(offset), best, plan=part.blocks, k=k)


def _search_blocks(queries, pass_queries, words, tail, pass_words, pass_tail, offset, best, *,
                   plan: chunking.Blocks, k: int):
  top = max_distance(queries.shape[1])

  def visit(in_tail, start, num_rows, num_valid):
    source, view, first = (tail, pass_tail, plan.tail_start) if in_tail else (words, pass_words, 0)
    distances, indices = block_topk(queries, pass_queries, source, view, start, num_rows,
                                    num_valid, k)
    return distances, indices + (first + start)

  distances, indices = chunking.fold_blocks(plan, visit, lambda a, b: append_topk(a, b, k, top))
  found = distances, indices + offset
  return found if best is None else append_topk(best, found, k, top)
