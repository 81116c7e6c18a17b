"""Splitting a search into query chunks and database blocks, and running query chunks in parallel.

Query chunks have power-of-two sizes (Q = 1,000 is 7 x 128 + 64 + 32 + 8 on CPU), so a few
compiled kernels serve every Q without padding much; off CPU the last chunk is padded instead (one
large launch beats several). A database array is searched in place, in blocks of whole groups of
bins: the rows past the last whole group (fewer than ``ROW_MULTIPLE``) are the only ones copied,
zero-padded, into a tail block. On CPU the query chunks run on a thread pool: XLA parallelises the
fused first pass itself, but not the selection, so separate chunks keep every core busy.
"""

from __future__ import annotations

import concurrent.futures
import functools
import operator
from collections.abc import Callable, Iterable, Iterator
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
from jax import lax

from jaxhash.arith import round_up
from jaxhash.environment import cpu_cores
from jaxhash.errors import UsageError
from jaxhash.retrieval import keys, views
from jaxhash.retrieval.block_topk import BIN_SIZE, ROW_MULTIPLE, max_distance
from jaxhash.retrieval.codes import check_words

MAX_CODES = 2**31 - 1  # indices are int32
_BLOCK_ROWS = 1 << 20  # default codes per block; keeps a chunk's bin minima at 4 MiB on CPU
_CANDIDATE_BYTES = 256 << 20  # bound on a query chunk's gathered candidate codes


def query_chunk_size(requested: int | None, k: int, num_words: int) -> int:
  """Most queries per chunk: 128 on CPU (cache-resident minima), 1,024 elsewhere; fewer at big k."""
  if requested is not None:
    return _positive(requested, "query_chunk", "queries")
  default = 128 if views.on_cpu() else 1024
  candidate_bytes = 2 * 4 * k * BIN_SIZE * num_words  # gathered codes and their XOR, per query
  return max(1, min(default, _CANDIDATE_BYTES // candidate_bytes))


def query_chunks(num_queries: int, most: int) -> list[tuple[int, int]]:
  """``(start, size)`` of the query chunks: chunks of ``most``, then powers of two (CPU) or one
  padded chunk (elsewhere) for the rest. A chunk may reach past ``num_queries`` (padding)."""
  full, rest = divmod(num_queries, most)
  sizes = [most] * full
  if rest and views.on_cpu():
    sizes += [1 << bit for bit in reversed(range(rest.bit_length())) if rest >> bit & 1]
  elif rest:
    sizes.append(min(most, 1 << (rest - 1).bit_length()))
  starts = np.cumsum([0] + sizes[:-1])
  return [(int(start), size) for start, size in zip(starts, sizes)]


def padded_rows(array, start: int, size: int):
  """Rows ``[start, start + size)`` of a NumPy or JAX array, zero rows past its end."""
  rows = array[start : start + size]
  if rows.shape[0] == size:
    return rows
  pad = ((0, size - rows.shape[0]), (0, 0))
  return np.pad(rows, pad) if isinstance(rows, np.ndarray) else jnp.pad(rows, pad)


class Blocks(NamedTuple):
  """Static plan of one database array: ``num_blocks`` blocks of ``block_rows`` rows, one of
  ``rest_rows`` (both multiples of ROW_MULTIPLE, read in place) of which ``rest_valid`` are codes
  (fewer only in a zero-padded array, see ``prepare_padded``), then ``tail_rows`` rows copied to a
  zero-padded tail array, of which ``tail_valid`` are codes."""

  block_rows: int
  num_blocks: int
  rest_rows: int
  tail_rows: int
  tail_valid: int
  rest_valid: int

  @property
  def tail_start(self) -> int:
    return self.num_blocks * self.block_rows + self.rest_rows

  @property
  def num_codes(self) -> int:
    return self.num_blocks * self.block_rows + self.rest_valid + self.tail_valid


class Part(NamedTuple):
  """One database array ready to search: ``{dtype: (words, tail)}`` views of its codes and of its
  zero-padded tail (None without one), for uint32 and the types pass 1 reads; and the plan."""

  views: dict
  blocks: Blocks

  @property
  def num_codes(self) -> int:
    return self.blocks.num_codes


def block_rows(num_words: int, requested: int | None = None) -> int:
  """Codes per block: ``requested`` (default 2**20) in whole groups of bins, and no more than a
  block-local index can address (2**20 codes at 1,024 bits, 2**24 at 64)."""
  limit = 1 << keys.index_shift(max_distance(num_words))
  requested = _BLOCK_ROWS if requested is None else _positive(requested, "db_chunk", "codes")
  return min(limit, round_up(requested, ROW_MULTIPLE))


def prepare(words, rows_per_block: int, dtypes: Iterable = ()) -> Part:
  """Plans the blocks of a database array, and views it and its tail as uint32 and ``dtypes``.

  The array goes to the device once (a copy only for NumPy input that is not 64-byte aligned);
  its views share that memory (see ``views.py``). Only the tail is copied.
  """
  num_codes = words.shape[0]
  main = num_codes // ROW_MULTIPLE * ROW_MULTIPLE
  num_blocks, rest = divmod(main, rows_per_block)
  tail_valid = num_codes - main
  tail_rows = round_up(tail_valid, BIN_SIZE)
  words = views.as_view(jax.device_put(words), np.uint32)
  tail = None
  if tail_valid:
    pad = np.pad if isinstance(words, np.ndarray) else jnp.pad
    tail = pad(words[main:], ((0, tail_rows - tail_valid), (0, 0)))
  as_views = {
    np.dtype(dtype): (
      views.as_view(words, dtype),
      None if tail is None else views.as_view(tail, dtype),
    )
    for dtype in {np.dtype(np.uint32), *dtypes}
  }
  return Part(as_views, Blocks(rows_per_block, num_blocks, rest, tail_rows, tail_valid, rest))


def prepare_padded(words, rows_per_block: int, dtypes: Iterable = ()) -> Part:
  """Like :func:`prepare` for a database searched many times: a copy of the codes, zero-padded
  to whole groups of bins, so no tail block is searched and merged, plus the byte columns that
  few queries read on CPU (``views.columns``). The padding lies in the last block."""
  num_codes = words.shape[0]
  padded_rows = round_up(max(num_codes, 1), ROW_MULTIPLE)
  num_blocks, rest = divmod(padded_rows, rows_per_block)
  if not rest:  # the padding goes in the rest block, so every full block is all codes
    num_blocks, rest = num_blocks - 1, rows_per_block
  words = jnp.pad(jnp.asarray(words), ((0, padded_rows - num_codes), (0, 0)))
  as_views = {
    np.dtype(dtype): (views.as_view(words, dtype), None) for dtype in {np.dtype(np.uint32), *dtypes}
  }
  if views.on_cpu():
    as_views[views.COLUMNS] = (views.byte_columns(words), None)
  return Part(
    as_views, Blocks(rows_per_block, num_blocks, rest, 0, 0, rest - (padded_rows - num_codes))
  )


def fold_blocks(plan: Blocks, visit: Callable, combine: Callable):
  """``combine`` over ``visit(in_tail, start, rows, num_valid)`` of each block in order (traced:
  the full blocks go through one ``fori_loop``). ``start`` counts in the main or the tail array."""
  result = None
  if plan.num_blocks:
    result = visit(False, 0, plan.block_rows, plan.block_rows)
    if plan.num_blocks > 1:
      result = lax.fori_loop(
        1,
        plan.num_blocks,
        lambda b, acc: combine(
          acc, visit(False, b * plan.block_rows, plan.block_rows, plan.block_rows)
        ),
        result,
      )
  later = []
  if plan.rest_rows:
    later.append(visit(False, plan.num_blocks * plan.block_rows, plan.rest_rows, plan.rest_valid))
  if plan.tail_rows:
    later.append(visit(True, 0, plan.tail_rows, plan.tail_valid))
  for part in later:
    result = part if result is None else combine(result, part)
  return result


def parts(
  chunks: Iterable, num_words: int, rows_per_block: int, dtypes: Iterable = ()
) -> Iterator[tuple[int, Part]]:
  """``(offset, Part)`` for each non-empty database chunk, checked, in order."""
  offset = 0
  for number, chunk in enumerate(chunks):
    chunk = check_words(chunk, f"database chunk {number}", num_words)
    if offset + chunk.shape[0] > MAX_CODES:
      raise UsageError(
        f"the database has more than {MAX_CODES} codes (indices are int32); "
        "split it and search the parts separately."
      )
    if chunk.shape[0]:
      yield offset, prepare(chunk, rows_per_block, dtypes)
    offset += chunk.shape[0]


def map_chunks(function: Callable[[int], object], num_chunks: int, parallel: bool = True) -> list:
  """``[function(j) for j in range(num_chunks)]``; on CPU, if ``parallel``, on a thread pool, one
  chunk per core."""
  workers = min(num_chunks, cpu_cores()) if views.on_cpu() and parallel else 1
  if workers <= 1:
    return [function(j) for j in range(num_chunks)]
  with concurrent.futures.ThreadPoolExecutor(workers) as pool:
    # Each thread waits for its own result: dispatch alone would queue the chunks on one stream.
    futures = [
      pool.submit(lambda j: jax.block_until_ready(function(j)), j) for j in range(num_chunks)
    ]
    return [future.result() for future in futures]


def _positive(value, name: str, unit: str) -> int:
  if operator.index(value) < 1:
    raise UsageError(f"{name} must be a positive number of {unit}; got {value}.")
  return operator.index(value)


def compiler_options() -> dict | None:
  """XLA options for the search kernels on CPU.

  512-bit vectors where the CPU has them (about 1.5x on the distance pass on AVX-512; no effect on
  AVX2), and no YNNPACK fusions: XLA would otherwise hand uint8 reductions to a library call,
  which splits the first pass and stores every distance (6x slower, checked in the HLO).
  """
  if not views.on_cpu():
    return None
  return {"xla_cpu_prefer_vector_width": 512, "xla_cpu_experimental_ynn_fusion_type": ""}


def search_jit(function: Callable, static_argnames: tuple[str, ...]) -> Callable:
  """``jax.jit(function)`` with the search compiler options of the current default backend."""
  return _search_jit(function, static_argnames, jax.default_backend())


@functools.cache
def _search_jit(function, static_argnames, backend):
  del backend  # part of the cache key: the options differ per backend
  return jax.jit(function, static_argnames=static_argnames, compiler_options=compiler_options())


def concat_rows(chunks: list, num_rows: int) -> jax.Array:
  """Concatenates per-chunk results and drops the padded rows."""
  if len(chunks) == 1 and chunks[0].shape[0] == num_rows:
    return chunks[0]  # a single search call pays no further dispatch
  return jnp.concatenate(chunks)[:num_rows]
