"""IndexSet: the shards of an index built in parts (``jaxhash.index --shard I/N``), as one.

Shard ``i`` of ``n`` holds a contiguous block of the listed images, in listing order, so a code's
position in the whole index is its shard's offset (the codes of the shards before it) plus its
position in the shard. Each shard finds its own top list by (distance, position); the lists, in
shard order, merge exactly (``merge_parts``), so results, ties included, are those of the index
built in one piece. Re-ranking merges the shards' Hamming pools the same way, then reorders the
pool as ``HammingIndex.search`` does.
"""

from __future__ import annotations

import numpy as np

from jaxhash.digests import hex_id
from jaxhash.errors import UsageError
from jaxhash.retrieval.index import DEFAULT_RERANK_POOL, HammingIndex, check_rerank_features, rerank
from jaxhash.retrieval.merge import merge_parts
from jaxhash.retrieval.topk import check_k


def shard_record(index: int, count: int, first: int, paths: list[str]) -> dict:
  """What a shard file records (``HammingIndex.shard``): which part of which listing it holds."""
  listing = hex_id("\n".join(paths).encode("utf-8"))
  return {"index": index, "count": count, "first": first, "listed": len(paths), "listing": listing}


def shard_bounds(index: int, count: int, total: int) -> tuple[int, int]:
  """Positions ``[start, stop)`` of shard ``index`` of ``count`` in a listing of ``total`` items."""
  return index * total // count, (index + 1) * total // count


class IndexSet:
  """Every shard of one index, searched as that index (same ``search`` as ``HammingIndex``)."""

  def __init__(self, shards: list[HammingIndex], names: list[str] | None = None):
    names = names or [f"shard {i}" for i in range(len(shards))]
    self.shards = _ordered(shards, names)
    self.nbits, self.run = self.shards[0].nbits, self.shards[0].run
    self.offsets = np.cumsum([0] + [len(s) for s in self.shards])
    self._filled = [(s, int(o)) for s, o in zip(self.shards, self.offsets) if len(s)]

  @classmethod
  def load(cls, paths: list[str]) -> IndexSet:
    return cls([HammingIndex.load(p) for p in paths], list(paths))

  @property
  def ntotal(self) -> int:
    return int(self.offsets[-1])

  def __len__(self) -> int:
    return self.ntotal

  @property
  def ids(self) -> np.ndarray:
    """Every code's id, in whole-index order."""
    return np.concatenate([s.ids for s in self.shards])

  @property
  def features(self) -> list[np.ndarray] | None:
    """Each non-empty shard's features, in shard order, or None when the shards hold none."""
    held = [s.features for s, _ in self._filled]
    return None if not held or held[0] is None else held

  def search(
    self, queries, k: int, *, features=None, pool: int = DEFAULT_RERANK_POOL
  ) -> tuple[np.ndarray, np.ndarray]:
    """What ``HammingIndex.search`` returns for the index built in one piece."""
    check_k(k, self.ntotal)
    if features is None:
      distances, positions = self.search_positions(queries, k)
      return distances, self.ids_at(positions)
    distances, _, ids = self.rerank_search(queries, features, k, pool=pool)
    return distances, ids

  def rerank_search(self, queries, features, k: int, *, pool: int = DEFAULT_RERANK_POOL):
    """What ``HammingIndex.rerank_search`` returns for the index built in one piece."""
    check_k(k, self.ntotal)
    held = self.features
    features = check_rerank_features(features, len(np.asarray(queries)), held and held[0])
    distances, positions = self.search_positions(queries, min(max(pool, k), self.ntotal))
    shard, local = self._locate(positions)
    candidates = np.empty((*positions.shape, features.shape[1]), np.float32)
    for i, part in enumerate(self.shards):
      if len(part):
        candidates[shard == i] = part.features[local[shard == i]]
    distances, by, positions = rerank(distances, positions, candidates, features, k)
    return distances, by, self.ids_at(positions)

  def search_positions(self, queries, k: int) -> tuple[np.ndarray, np.ndarray]:
    """The top ``k`` by (distance, position in the whole index): int32 distances, int64
    positions."""
    lists = [
      (part.search_positions(queries, min(k, len(part))), offset) for part, offset in self._filled
    ]
    return merge_parts(
      [d for (d, _), _ in lists], [p.astype(np.int64) + o for (_, p), o in lists], k, self.nbits
    )

  def ids_at(self, positions: np.ndarray) -> np.ndarray:
    """The ids of the codes at whole-index ``positions``."""
    shard, local = self._locate(positions)
    parts = [self.shards[i].ids_at(local[shard == i]) for i in range(len(self.shards))]
    ids = np.empty(positions.shape, dtype=np.result_type(*[p.dtype for p in parts]))
    for i, part in enumerate(parts):
      ids[shard == i] = part
    return ids

  def _locate(self, positions: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    shard = np.searchsorted(self.offsets, positions, side="right") - 1
    return shard, positions - self.offsets[shard]


def _ordered(shards: list[HammingIndex], names: list[str]) -> list[HammingIndex]:
  """The shards in shard order, after checking that they are all the parts of one index."""
  records = [s.shard for s in shards]
  for name, record in zip(names, records):
    if not isinstance(record, dict):
      raise UsageError(
        f"{name} is not a shard of an index built in parts (python -m jaxhash.index "
        "--shard I/N); search it alone."
      )
  first = records[0]
  for name, shard, record in zip(names, shards, records):
    if (record.get("count"), record.get("listing")) != (first.get("count"), first.get("listing")):
      raise UsageError(
        f"{name} and {names[0]} are shards of different listings or shard counts; "
        "pass the shards of one index."
      )
    if shard.nbits != shards[0].nbits or shard.run != shards[0].run:
      raise UsageError(
        f"{name} and {names[0]} were built by different runs or code lengths; "
        "pass the shards of one index."
      )
  filled = [(name, shard) for name, shard in zip(names, shards) if len(shard)]
  for name, shard in filled:
    if (shard.features is None) != (filled[0][1].features is None):
      raise UsageError(
        f"{name} and {filled[0][0]}: only one holds features; build every shard "
        "with or without --features."
      )
  found: dict[int, str] = {}
  for name, record in zip(names, records):
    if record["index"] in found:
      raise UsageError(
        f"{found[record['index']]} and {name} are both shard "
        f"{record['index']}/{first['count']}; pass each shard once."
      )
    found[record["index"]] = name
  missing = sorted(set(range(first["count"])) - set(found))
  if missing:
    raise UsageError(
      f"shard{'s' if len(missing) > 1 else ''} {', '.join(map(str, missing))} of "
      f"{first['count']} {'are' if len(missing) > 1 else 'is'} missing; pass all "
      f"{first['count']} shard files to --index."
    )
  order = sorted(range(len(shards)), key=lambda i: records[i]["index"])
  return [shards[i] for i in order]


def load_index(paths: list[str]) -> HammingIndex | IndexSet:
  """One index file, or every shard file of one index; one shard of several alone is refused."""
  if len(paths) > 1:
    return IndexSet.load(paths)
  index = HammingIndex.load(paths[0])
  if index.shard and index.shard.get("count", 1) > 1:
    raise UsageError(
      f"{paths[0]} is shard {index.shard['index']} of {index.shard['count']}; pass "
      f"all {index.shard['count']} shard files of its index to --index."
    )
  return index
