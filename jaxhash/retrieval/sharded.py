"""Hamming top-k with the database sharded across devices (jax.sharding + shard_map).

Each device holds a contiguous slice of the database, finds its own exact top-k with
shard-offset indices, and an ``all_gather`` of those (Q, k) lists, merged in shard order, gives
every device the global top-k: identical to :func:`hamming_topk`, ties included, because shards
are contiguous and merged in order. Only k results per query and shard cross devices.

Several processes, each holding only its own part of the database: ``processes.process_topk``
(tested with two processes; docs/distributed.md). This function needs the whole database in every
process.
"""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
import numpy as np
from jax import lax
from jax.sharding import Mesh, NamedSharding, PartitionSpec

from jaxhash.arith import ceil_div, round_up
from jaxhash.retrieval import chunking
from jaxhash.retrieval.block_topk import ROW_MULTIPLE, block_topk, max_distance
from jaxhash.retrieval.codes import check_words
from jaxhash.retrieval.merge import append_topk, merge_topk
from jaxhash.retrieval.topk import check_k

_AXIS = "db"


def database_mesh(devices=None) -> Mesh:
  """A 1-D mesh named ``"db"`` over ``devices`` (default: all local devices)."""
  return Mesh(np.asarray(devices if devices is not None else jax.local_devices()), (_AXIS,))


def sharded_topk(
  query_words,
  db_words,
  k: int,
  *,
  mesh: Mesh | None = None,
  query_chunk: int | None = None,
  db_chunk: int | None = None,
) -> tuple[jax.Array, jax.Array]:
  """:func:`hamming_topk` with the database split over the devices of a 1-D ``mesh``.

  Each shard is searched in blocks of ``db_chunk`` codes (default 2**20). Returns the same int32
  ``(distances, indices)`` as ``hamming_topk``, replicated.
  """
  queries = check_words(query_words, "query_words")
  database = check_words(db_words, "db_words", queries.shape[1])
  num_codes = database.shape[0]
  k = check_k(k, num_codes)
  mesh = mesh if mesh is not None else database_mesh()
  if mesh.axis_names != (_AXIS,):
    raise ValueError(
      f"sharded_topk needs a 1-D mesh with axis {_AXIS!r} (see database_mesh); "
      f"got axes {mesh.axis_names}."
    )
  num_shards = mesh.devices.size
  block_rows = chunking.block_rows(queries.shape[1], db_chunk)
  shard_rows = round_up(max(ceil_div(num_codes, num_shards), k), ROW_MULTIPLE)
  if shard_rows > block_rows:  # whole blocks per shard, each at least k codes
    shard_rows = round_up(shard_rows, block_rows)
  padded = np.zeros((num_shards * shard_rows, queries.shape[1]), np.uint32)
  padded[:num_codes] = np.asarray(database)
  sharded_db = jax.device_put(padded, NamedSharding(mesh, PartitionSpec(_AXIS, None)))
  search = _sharded_search(mesh, num_codes, shard_rows, block_rows, k)
  num_queries = queries.shape[0]
  chunks = chunking.query_chunks(
    num_queries, chunking.query_chunk_size(query_chunk, k, queries.shape[1])
  )
  results = [
    search(chunking.padded_rows(jnp.asarray(queries), *chunk), sharded_db) for chunk in chunks
  ]
  if not results:
    return jnp.zeros((0, k), jnp.int32), jnp.zeros((0, k), jnp.int32)
  return (
    chunking.concat_rows([distances for distances, _ in results], num_queries),
    chunking.concat_rows([indices for _, indices in results], num_queries),
  )


@functools.lru_cache(maxsize=16)
def _sharded_search(mesh: Mesh, num_codes: int, shard_rows: int, block_rows: int, k: int):
  """Jitted shard_map: local top-k per shard, all_gather, ordered merge."""

  def local_topk(queries, shard):
    top_distance = max_distance(queries.shape[1])
    offset = lax.axis_index(_AXIS) * shard_rows
    num_valid = jnp.clip(num_codes - offset, 0, shard_rows)
    distances, indices = _shard_topk(queries, shard, num_valid, k, block_rows, top_distance)
    gathered_distances = lax.all_gather(distances, _AXIS, axis=1, tiled=True)
    gathered_indices = lax.all_gather(indices + offset, _AXIS, axis=1, tiled=True)
    return merge_topk(gathered_distances, gathered_indices, k, top_distance)

  replicated = PartitionSpec()
  mapped = jax.shard_map(
    local_topk,
    mesh=mesh,
    in_specs=(replicated, PartitionSpec(_AXIS, None)),
    out_specs=(replicated, replicated),
    check_vma=False,
  )
  return jax.jit(mapped, compiler_options=chunking.compiler_options())


def _shard_topk(queries, shard, num_valid, k, block_rows, top_distance):
  """Top-k of one shard, block by block when the shard is longer than ``block_rows``."""
  block_rows = min(shard.shape[0], block_rows)
  best = None
  for start in range(0, shard.shape[0], block_rows):
    distances, indices = block_topk(
      queries,
      queries,
      shard,
      shard,
      start,
      block_rows,
      jnp.clip(num_valid - start, 0, block_rows),
      k,
    )
    new = distances, indices + start
    best = new if best is None else append_topk(best, new, k, top_distance)
  return best
