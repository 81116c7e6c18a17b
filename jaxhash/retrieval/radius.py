"""Radius search: every database code within Hamming distance r of a query, with a cap."""

from __future__ import annotations

import operator
import warnings
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
from jax import lax

from jaxhash.errors import UsageError
from jaxhash.retrieval import chunking, views
from jaxhash.retrieval.block_topk import (
  code_query_distances,
  distance_dtype,
  max_distance,
  valid_rows,
)
from jaxhash.retrieval.codes import check_words
from jaxhash.retrieval.topk import MAX_K, hamming_topk

DEFAULT_MAX_RESULTS = 10_000


class RangeSearchResult(NamedTuple):
  """FAISS-style CSR result: query q's results are ``[lims[q], lims[q + 1])``.

  ``distances`` (int32) and ``indices`` (int32 database positions, or int64 ids from
  ``HammingIndex``) are sorted by (distance, index) within each query. ``truncated[q]`` is True
  when query q had more than ``max_results`` codes within the radius and only the nearest
  ``max_results`` are listed; ``counts`` holds the true numbers within the radius.
  """

  lims: np.ndarray
  distances: np.ndarray
  indices: np.ndarray
  truncated: np.ndarray
  counts: np.ndarray


def check_radius(radius) -> int:
  try:
    radius = operator.index(radius)
  except TypeError:
    raise UsageError(f"radius must be an integer Hamming distance; got {radius!r}.") from None
  if radius < 0:
    raise UsageError(f"radius={radius} is negative; use a radius >= 0.")
  return radius


def count_within_radius(query_words, db_words, radius: int) -> jax.Array:
  """int32 ``(Q,)``: number of database codes at Hamming distance <= ``radius`` of each query.

  One fused pass that stores no distances: the cheap "how many are retrieved" of precision within
  radius, and the size of the range search result before it is built.
  """
  queries = check_words(query_words, "query_words")
  num_queries, num_words = queries.shape
  database = check_words(db_words, "db_words", num_words)
  radius = min(check_radius(radius), max_distance(num_words))
  queries = np.asarray(queries) if views.on_cpu() else jnp.asarray(queries)
  chunks = chunking.query_chunks(num_queries, chunking.query_chunk_size(None, 1, num_words))
  dtypes = {views.pass_dtype(size, num_words) for _, size in chunks}
  counts = [jnp.zeros(size, jnp.int32) for _, size in chunks]
  for _, part in chunking.parts([database], num_words, chunking.block_rows(num_words), dtypes):
    counts = chunking.map_chunks(
      lambda j: counts[j] + _count_part(chunking.padded_rows(queries, *chunks[j]), part, radius),
      len(chunks),
    )
  if not chunks:
    return jnp.zeros(0, jnp.int32)
  return chunking.concat_rows(counts, num_queries)


def hamming_range_search(
  query_words,
  db_words,
  radius: int,
  *,
  max_results: int = DEFAULT_MAX_RESULTS,
  strict: bool = False,
) -> RangeSearchResult:
  """All database codes within Hamming distance ``radius`` of each query, nearest first.

  "Within" includes the radius (distance <= radius, as in "Hamming radius 2" in the hashing
  literature); FAISS's binary ``range_search`` keeps distance < radius instead.

  At most ``max_results`` (<= MAX_K) per query are listed. When a query has more, its
  ``truncated`` flag is set and a RuntimeWarning says how many queries were cut, or, with
  ``strict=True``, a ValueError is raised instead; raise ``max_results`` or lower the radius.
  """
  queries = check_words(query_words, "query_words")
  database = check_words(db_words, "db_words", queries.shape[1])
  if (
    isinstance(max_results, bool)
    or not isinstance(max_results, (int, np.integer))
    or not 1 <= max_results <= MAX_K
  ):
    raise UsageError(f"max_results={max_results} is out of range: use 1 to {MAX_K}.")
  counts = np.asarray(count_within_radius(queries, database, radius))
  kept = np.minimum(counts, max_results)
  truncated = counts > max_results
  if truncated.any():
    message = (
      f"{int(truncated.sum())} of {len(counts)} queries have more than "
      f"max_results={max_results} codes within radius {radius} (up to {counts.max()}); "
      "only the nearest are listed (see .truncated). Raise max_results or lower the radius."
    )
    if strict:
      raise UsageError(message)
    warnings.warn(message, RuntimeWarning, stacklevel=2)
  lims = np.concatenate([[0], np.cumsum(kept)]).astype(np.int64)
  width = int(kept.max(initial=0))
  if width == 0:
    empty = np.zeros(0, np.int32)
    return RangeSearchResult(lims, empty, empty.copy(), truncated, counts)
  distances, indices = (np.asarray(x) for x in hamming_topk(queries, database, width))
  listed = np.arange(width)[None, :] < kept[:, None]
  return RangeSearchResult(lims, distances[listed], indices[listed], truncated, counts)


def _count_part(queries, part: chunking.Part, radius: int):
  dtype = views.pass_dtype(queries.shape[0], queries.shape[1])
  step = chunking.search_jit(_count_blocks, ("plan", "radius"))
  with views.x64(dtype):
    return step(views.as_view(queries, dtype), *part.views[dtype], plan=part.blocks, radius=radius)


def _count_blocks(pass_queries, pass_words, pass_tail, *, plan: chunking.Blocks, radius: int):
  distance = distance_dtype(pass_queries.shape[1] * pass_queries.dtype.itemsize // 4)

  def visit(in_tail, start, num_rows, num_valid):
    block = lax.dynamic_slice_in_dim(pass_tail if in_tail else pass_words, start, num_rows)
    within = code_query_distances(pass_queries, block, distance) <= radius
    valid = valid_rows(num_rows, num_valid)
    if valid is not None:
      within = within & valid
    return jnp.sum(within, axis=0, dtype=jnp.int32)

  return chunking.fold_blocks(plan, visit, jnp.add)
