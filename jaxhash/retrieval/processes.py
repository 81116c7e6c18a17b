"""Hamming top-k over a database split across processes, each holding only its own part in memory.

After ``jax.distributed.initialize`` (or ``jaxhash.distributed.start``), process ``p`` holds a
contiguous part of the database: every code of process ``p`` comes before every code of process
``p + 1``. Each process finds the top-k of its own part (``hamming_topk``), the ``(Q, k)`` lists
of all processes are gathered in process order, and ``merge_parts`` merges them: exact, ties
broken by global position, as if one process held the whole database. Only ``k`` results per
query and process cross the network, so the database may be larger than one host's memory.
Every process passes the same queries and gets the same result.
"""

from __future__ import annotations

import numpy as np

from jaxhash.retrieval.codes import check_words
from jaxhash.retrieval.merge import merge_parts
from jaxhash.retrieval.topk import PreparedCodes, check_k, hamming_topk


def process_topk(query_words, local_db_words, k: int) -> tuple[np.ndarray, np.ndarray]:
  """``(distances int32 (Q, k), global positions int64 (Q, k))`` over every process's part.

  ``local_db_words``: this process's part of the database (uint32 ``(n_p, W)``, may be empty, or
  ``prepare_codes`` of it, to search it many times); positions count from the first code of
  process 0's part.
  """
  queries = check_words(query_words, "query_words")
  local = local_db_words
  if not isinstance(local, PreparedCodes):
    local = check_words(local_db_words, "local_db_words", queries.shape[1])
  sizes = part_sizes(_num_codes(local))
  k = check_k(k, int(sizes.sum()))
  return merge_processes(*local_topk(queries, local, k), sizes, k, 32 * queries.shape[1])


def part_sizes(local_size: int) -> np.ndarray:
  """Every process's number of codes, in process order."""
  from jax.experimental import multihost_utils

  return np.asarray(multihost_utils.process_allgather(np.int32(local_size))).astype(np.int64)


def _num_codes(local) -> int:
  return local.num_codes if isinstance(local, PreparedCodes) else local.shape[0]


def local_topk(queries: np.ndarray, local, k: int) -> tuple[np.ndarray, np.ndarray]:
  """This part's top-k, padded to ``k`` entries (distance ``32 * W + 1``) when it is shorter."""
  distances = np.full((queries.shape[0], k), 32 * queries.shape[1] + 1, np.int32)
  positions = np.zeros((queries.shape[0], k), np.int32)
  found = min(k, _num_codes(local))
  if found:
    d, p = hamming_topk(queries, local, found)
    distances[:, :found], positions[:, :found] = np.asarray(d), np.asarray(p)
  return distances, positions


def merge_processes(
  distances: np.ndarray, positions: np.ndarray, sizes: np.ndarray, k: int, max_distance: int
) -> tuple[np.ndarray, np.ndarray]:
  """Every process's ``local_topk`` gathered in process order and merged: the global top-k."""
  from jax.experimental import multihost_utils

  gathered_distances, gathered_positions = (
    np.asarray(a) for a in multihost_utils.process_allgather((distances, positions))
  )
  offsets = np.concatenate([[0], np.cumsum(sizes)[:-1]])
  return merge_parts(
    list(gathered_distances),
    [p.astype(np.int64) + o for p, o in zip(gathered_positions, offsets)],
    k,
    max_distance,
  )
