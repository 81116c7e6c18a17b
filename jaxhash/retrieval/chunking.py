"""Splitting a search into query chunks and database blocks, and running query chunks in parallel.

Chunking bounds memory (a block's per-bin minima and candidate codes scale with chunk x block) and
keeps shapes static, so one compiled kernel serves every chunk. On CPU the query chunks run on a
thread pool: XLA parallelises the fused distance pass itself, but not ``top_k``, so separate chunks
in separate threads keep every core busy.
"""

from __future__ import annotations

import concurrent.futures
import functools
import operator
import os
from collections.abc import Callable, Iterable, Iterator

import jax
import jax.numpy as jnp

from jaxhash.retrieval import keys
from jaxhash.retrieval.block_topk import BIN_SIZE, ROW_MULTIPLE, max_distance
from jaxhash.retrieval.codes import check_words

MAX_CODES = 2**31 - 1  # indices are int32
_LANES = 8  # query chunks are a multiple of this, for vectorising across queries
_BLOCK_ROWS = 1 << 20  # default codes per block; keeps a query chunk's bin minima at 16 MiB
_CANDIDATE_BYTES = 256 << 20  # bound on a query chunk's gathered candidate codes


def round_up(value: int, multiple: int) -> int:
  return -(-value // multiple) * multiple


def query_chunk_size(requested: int | None, k: int, num_words: int) -> int:
  """Queries per chunk: 128 on CPU (cache-resident minima), 1,024 elsewhere, fewer for large k."""
  if requested is not None:
    return _positive(requested, "query_chunk", "queries")
  default = 128 if jax.default_backend() == "cpu" else 1024
  candidate_bytes = 2 * 4 * k * BIN_SIZE * num_words  # gathered codes and their XOR, per query
  return max(1, min(default, _CANDIDATE_BYTES // candidate_bytes))


def block_rows(num_words: int, requested: int | None = None, k: int = 0) -> int:
  """Codes per database block: ``requested`` (default 2**20), at least ``k``, whole bins, and
  no more than a block-local index can address (2**20 codes at 1,024 bits, 2**24 at 64)."""
  limit = 1 << keys.index_shift(max_distance(num_words))
  requested = _BLOCK_ROWS if requested is None else _positive(requested, "db_chunk", "codes")
  return min(limit, round_up(max(requested, k), BIN_SIZE))


def query_chunks(queries, chunk: int) -> tuple[list[jax.Array], int]:
  """Zero-padded query chunks of one shape (at least one chunk), and the real number of queries."""
  num_queries = queries.shape[0]
  chunk = max(_LANES, min(chunk, round_up(num_queries, _LANES)))
  padded_rows = round_up(max(num_queries, 1), chunk)
  queries = jnp.asarray(queries)
  if padded_rows != num_queries:
    queries = jnp.pad(queries, ((0, padded_rows - num_queries), (0, 0)))
  return [queries[start:start + chunk] for start in range(0, padded_rows, chunk)], num_queries


def padded_block(words, min_rows: int = 0) -> tuple[jax.Array, int]:
  """A block padded with zero codes to a multiple of ROW_MULTIPLE rows (and >= ``min_rows``).

  Whole groups of bins let the kernel select bins in two cheap steps; padding the bin keys inside
  the kernel instead measured 1.6x slower at 128 bits.
  """
  num_valid = words.shape[0]
  rows = round_up(max(num_valid, min_rows), ROW_MULTIPLE)
  words = jnp.asarray(words)
  if rows != num_valid:
    words = jnp.pad(words, ((0, rows - num_valid), (0, 0)))
  return words, num_valid


def offset_blocks(chunks: Iterable, num_words: int, block_rows: int) -> Iterator[tuple[int, object]]:
  """``(offset, words)`` for consecutive blocks of at most ``block_rows`` codes of the chunks."""
  offset = 0
  for number, chunk in enumerate(chunks):
    chunk = check_words(chunk, f"database chunk {number}", num_words)
    if offset + chunk.shape[0] > MAX_CODES:
      raise ValueError(
          f"the database has more than {MAX_CODES} codes (indices are int32); "
          "split it and search the parts separately.")
    for start in range(0, chunk.shape[0], block_rows):
      yield offset + start, chunk[start:start + block_rows]
    offset += chunk.shape[0]


def map_chunks(function: Callable[[int], object], num_chunks: int) -> list:
  """``[function(j) for j in range(num_chunks)]``; on CPU on a thread pool, one chunk per core."""
  workers = min(num_chunks, _num_cores()) if jax.default_backend() == "cpu" else 1
  if workers <= 1:
    return [function(j) for j in range(num_chunks)]
  with concurrent.futures.ThreadPoolExecutor(workers) as pool:
    # Each thread waits for its own result: dispatch alone would queue the chunks on one stream.
    futures = [pool.submit(lambda j: jax.block_until_ready(function(j)), j) for j in range(num_chunks)]
    return [future.result() for future in futures]


def _positive(value, name: str, unit: str) -> int:
  if operator.index(value) < 1:
    raise ValueError(f"{name} must be a positive number of {unit}; got {value}.")
  return operator.index(value)


def _num_cores() -> int:
  return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1


def cpu_compiler_options() -> dict | None:
  """XLA options for the search kernels: 512-bit vectors on CPU (about 1.5x on the distance pass)."""
  return {"xla_cpu_prefer_vector_width": 512} if jax.default_backend() == "cpu" else None


def search_jit(function: Callable, static_argnames: tuple[str, ...]) -> Callable:
  """``jax.jit(function)`` with the search compiler options of the current default backend."""
  return _search_jit(function, static_argnames, jax.default_backend())


@functools.cache
def _search_jit(function, static_argnames, backend):
  del backend  # part of the cache key: the options differ per backend
  return jax.jit(function, static_argnames=static_argnames, compiler_options=cpu_compiler_options())


def concat_rows(chunks: list, num_rows: int) -> jax.Array:
  """Concatenates per-chunk results and drops the padded rows."""
  return jnp.concatenate(chunks)[:num_rows]
