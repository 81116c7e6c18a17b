"""HammingIndex: a growable, persistent, exact Hamming index with ids, features and provenance."""

from __future__ import annotations

import numpy as np

from jaxhash.errors import UsageError
from jaxhash.retrieval import index_file
from jaxhash.retrieval.codes import check_nbits, check_words, num_words, pack_bits
from jaxhash.retrieval.radius import DEFAULT_MAX_RESULTS, RangeSearchResult, hamming_range_search
from jaxhash.retrieval.topk import PreparedCodes, hamming_topk, prepare_codes

DEFAULT_RERANK_POOL = 1000


class _Rows:
  """An append-only array with amortised doubling, so adding in chunks costs linear time."""

  def __init__(self, shape_tail: tuple, dtype):
    self._data, self._n = np.zeros((0, *shape_tail), dtype), 0

  def __len__(self) -> int:
    return self._n

  def append(self, rows: np.ndarray) -> None:
    need = self._n + len(rows)
    if need > len(self._data):
      grown = np.empty((max(need, 2 * len(self._data)), *self._data.shape[1:]), self._data.dtype)
      grown[: self._n] = self._data[: self._n]
      self._data = grown
    self._data[self._n : need] = rows
    self._n = need

  @property
  def view(self) -> np.ndarray:
    return self._data[: self._n]


class HammingIndex:
  """Exact search over binary codes of ``nbits`` bits (like FAISS ``IndexBinaryFlat`` + ids).

  Codes may be given either packed (uint32 ``(n, ceil(nbits / 32))`` from ``pack_bits``) or as
  bits (``(n, nbits)`` of bool, 0/1 or -1/+1); the width tells them apart, since ``nbits`` is
  always more than the number of words. Results are ordered by (distance, insertion position)
  and report ids: integers or strings (such as image paths) passed to :meth:`add`, or the
  insertion positions. An index may also hold one float feature vector per code (DLBHC's fc7),
  to re-rank a Hamming candidate pool by Euclidean distance, and ``run``: a JSON-able dict saying
  which trained run made the codes (``python -m jaxhash.index`` records it). ``shard`` (a
  JSON-able dict, ``python -m jaxhash.index --shard``) marks one part of an index built in parts,
  searched together as an ``IndexSet``.

  Example::

    index = HammingIndex(64)
    index.add(bits, ids=["a.jpg", "b.jpg"])   # (n, 64) 0/1 or -1/+1, or pack_bits(bits)
    distances, ids = index.search(query_bits, k=10)
    index.save("codes.jhi")
    index = HammingIndex.load("codes.jhi")
  """

  def __init__(self, nbits: int, run: dict | None = None, shard: dict | None = None):
    self.nbits = check_nbits(nbits)
    self.run, self.shard = run, shard
    self._words = _Rows((num_words(self.nbits),), np.uint32)
    self._ids: _Rows | list[str] | None = None  # None: the ids are the insertion positions
    self._features: _Rows | None = None
    self._prepared: PreparedCodes | None = None  # the codes laid out for search, built on demand

  @property
  def ntotal(self) -> int:
    """Number of codes in the index."""
    return len(self._words)

  def __len__(self) -> int:
    return self.ntotal

  @property
  def codes(self) -> np.ndarray:
    """The packed codes, uint32 ``(ntotal, words)``, in insertion order (a read-only view)."""
    view = self._words.view
    view.flags.writeable = False
    return view

  @property
  def ids(self) -> np.ndarray:
    """int64 ids, or an object array of string ids, in insertion order."""
    if isinstance(self._ids, list):
      return np.array(self._ids, dtype=object)
    return np.arange(self.ntotal, dtype=np.int64) if self._ids is None else self._ids.view.copy()

  @property
  def features(self) -> np.ndarray | None:
    """float32 ``(ntotal, D)`` re-ranking features, or None when the index holds none."""
    return None if self._features is None else self._features.view

  def add(self, codes, ids=None, features=None) -> None:
    """Appends codes with their ids (ints or strings; default: insertion positions) and features.

    An index holds integer or string ids, not both; string ids must be given for every code, and
    features (float ``(n, D)``) either with every call to ``add`` or with none.
    """
    words = self._as_words(codes, "codes")
    n = words.shape[0]
    new_ids = self._check_ids(ids, n)
    new_features = self._check_features(features, n)
    self._words.append(words)
    self._prepared = None
    if isinstance(new_ids, list):
      if self._ids is None:
        self._ids = new_ids
      else:
        self._ids.extend(new_ids)
    elif new_ids is not None:
      if self._ids is None:
        self._ids = _Rows((), np.int64)
        self._ids.append(np.arange(self.ntotal - n, dtype=np.int64))
      self._ids.append(new_ids)
    elif self._ids is not None:
      self._ids.append(np.arange(self.ntotal - n, self.ntotal, dtype=np.int64))
    if new_features is not None:
      if self._features is None:
        self._features = _Rows(new_features.shape[1:], np.float32)
      self._features.append(new_features)

  def search(
    self, queries, k: int, *, features=None, pool: int = DEFAULT_RERANK_POOL
  ) -> tuple[np.ndarray, np.ndarray]:
    """The ``k`` nearest codes per query: int32 Hamming distances and ids, each ``(Q, k)``.

    With ``features`` (the queries' float ``(Q, D)`` features), the ``max(pool, k)`` nearest codes
    are re-ranked by Euclidean distance between features (DLBHC's coarse-to-fine retrieval; ties
    keep the Hamming order) and the first ``k`` returned; the distances stay Hamming distances.
    """
    if features is None:
      distances, positions = self.search_positions(queries, k)
      return distances, self.ids_at(positions)
    distances, _, ids = self.rerank_search(queries, features, k, pool=pool)
    return distances, ids

  def rerank_search(self, queries, features, k: int, *, pool: int = DEFAULT_RERANK_POOL):
    """``(hamming, feature_distances, ids)``, each ``(Q, k)``, ordered by feature distance.

    The ``max(pool, k)`` nearest codes are re-ranked by the Euclidean distance between features
    (float32; ties keep the Hamming order): what ``search(..., features=...)`` returns, with the
    distance it ranked by.
    """
    queries = self._as_words(queries, "queries")
    features = check_rerank_features(features, queries.shape[0], self.features)
    distances, positions = self.search_positions(queries, min(max(pool, k), self.ntotal))
    distances, by, positions = rerank(
      distances, positions, self._features.view[positions], features, k
    )
    return distances, by, self.ids_at(positions)

  def search_positions(self, queries, k: int) -> tuple[np.ndarray, np.ndarray]:
    """Like :meth:`search` without re-ranking, with insertion positions (int32) instead of ids."""
    distances, positions = hamming_topk(self._as_words(queries, "queries"), self._search_codes(), k)
    return np.asarray(distances), np.asarray(positions)

  def range_search(
    self, queries, radius: int, *, max_results: int = DEFAULT_MAX_RESULTS, strict: bool = False
  ) -> RangeSearchResult:
    """All codes within ``radius`` per query (CSR, ids in ``indices``); see hamming_range_search."""
    result = hamming_range_search(
      self._as_words(queries, "queries"),
      self._words.view,
      radius,
      max_results=max_results,
      strict=strict,
    )
    return result._replace(indices=self.ids_at(np.asarray(result.indices)))

  def save(self, path: str) -> None:
    """Writes the index to one checksummed file, atomically (see ``index_file``)."""
    ids = self._ids if isinstance(self._ids, list) or self._ids is None else self._ids.view
    metadata = {key: value for key, value in (("run", self.run), ("shard", self.shard)) if value}
    index_file.write_index(
      path, index_file.IndexContents(self.nbits, self._words.view, ids, self.features, metadata)
    )

  @classmethod
  def load(cls, path: str) -> HammingIndex:
    """Reads a saved index; a damaged or foreign file raises a ``UsageError`` naming it."""
    contents = index_file.read_index(path)
    metadata = contents.metadata
    index = cls(contents.nbits, run=metadata.get("run"), shard=metadata.get("shard"))
    index.add(contents.words, contents.ids, contents.features)
    return index

  def _search_codes(self) -> PreparedCodes:
    """The codes laid out for search (``prepare_codes``): built at the first search after an
    ``add``, as FAISS lays out codes when they are added, and kept until the next ``add``."""
    if self._prepared is None:
      self._prepared = prepare_codes(self._words.view)
    return self._prepared

  def ids_at(self, positions: np.ndarray) -> np.ndarray:
    """The ids of the codes at insertion ``positions`` (any shape)."""
    if self._ids is None:
      return positions.astype(np.int64)
    if isinstance(self._ids, list):
      found = np.empty(positions.size, dtype=object)
      found[:] = [self._ids[p] for p in positions.ravel().tolist()]
      return found.reshape(positions.shape)
    return self._ids.view[positions]

  def _check_ids(self, ids, n: int):
    """int64 array, list of str, or None (positions), consistent with the ids already held."""
    strings = isinstance(self._ids, list)
    if ids is None:
      if strings:
        raise UsageError("this index has string ids; pass one id per code to add.")
      return None
    if not isinstance(ids, np.ndarray):
      ids = list(ids)
    if len(ids) != n:
      raise UsageError(f"ids must be one per code ({n}); got {len(ids)}.")
    if n and (ids.dtype.kind in "UO" if isinstance(ids, np.ndarray) else isinstance(ids[0], str)):
      if not all(isinstance(i, str) for i in ids):
        raise UsageError("ids must be all integers or all strings.")
      if self.ntotal and not strings:
        raise UsageError("this index has integer ids; string ids cannot be added to it.")
      return [str(i) for i in ids]
    ids = np.asarray(ids)
    if n and not np.issubdtype(ids.dtype, np.integer):
      raise UsageError(f"ids must be integers or strings, one per code ({n},); got {ids.dtype}.")
    if strings and n:
      raise UsageError("this index has string ids; integer ids cannot be added to it.")
    return None if strings else ids.astype(np.int64)

  def _check_features(self, features, n: int):
    if features is None:
      if self._features is not None and n:
        raise UsageError("this index holds features; pass them with every add.")
      return None
    features = np.asarray(features, np.float32)
    if self.ntotal and self._features is None:
      raise UsageError("this index was built without features; add features with every call.")
    dim = self._features.view.shape[1] if self._features is not None else None
    if (
      features.ndim != 2 or features.shape[0] != n or (dim is not None and features.shape[1] != dim)
    ):
      raise UsageError(
        f"features must be float ({n}, {dim or 'D'}), one row per code; got {features.shape}."
      )
    return features

  def _as_words(self, codes, name: str) -> np.ndarray:
    """Packed uint32 words from packed words or from bits, validated against ``nbits``."""
    codes = np.asarray(codes)
    words_per_code = num_words(self.nbits)
    if codes.ndim == 2 and codes.shape[1] == self.nbits:
      if not np.isin(codes, (-1, 0, 1)).all():
        raise UsageError(f"{name} given as bits must hold only 0/1, -1/+1 or bools.")
      return pack_bits(codes)
    if codes.ndim == 2 and codes.shape[1] == words_per_code and codes.dtype == np.uint32:
      spare_bits = 32 * words_per_code - self.nbits
      if spare_bits and (codes[:, -1] >> (32 - spare_bits)).any():
        raise UsageError(
          f"{name} has bits set above bit {self.nbits}: these words were not packed from "
          f"{self.nbits}-bit codes."
        )
      return check_words(codes, name, words_per_code)
    raise UsageError(
      f"{name} must be {self.nbits}-bit codes: bits of shape (n, {self.nbits}) or packed uint32 "
      f"words of shape (n, {words_per_code}); got {codes.dtype} {codes.shape}."
    )


def check_rerank_features(features, num_queries: int, held: np.ndarray | None) -> np.ndarray:
  """The queries' features as float32 ``(Q, D)``, checked against the index's (``held``)."""
  if held is None:
    raise UsageError(
      "this index holds no features to re-rank with; build it with features "
      "(python -m jaxhash.index --features)."
    )
  features = np.asarray(features, np.float32)
  if features.shape != (num_queries, held.shape[1]):
    raise UsageError(
      f"features must be ({num_queries}, {held.shape[1]}), one row per query; got {features.shape}."
    )
  return features


def rerank(
  distances: np.ndarray, positions: np.ndarray, candidates: np.ndarray, features: np.ndarray, k: int
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
  """The first ``k`` of each query's Hamming pool reordered by Euclidean distance between its
  ``candidates``' features ``(Q, depth, D)`` and the query's; ties keep the Hamming order.
  Returns ``(hamming distances, feature distances, positions)`` in the new order."""
  squared = np.sum((candidates - features[:, None, :]) ** 2, axis=-1)
  order = np.argsort(squared, axis=1, kind="stable")[:, :k]
  return (
    np.take_along_axis(distances, order, axis=1),
    np.sqrt(np.take_along_axis(squared, order, axis=1)),
    np.take_along_axis(positions, order, axis=1),
  )
