"""HammingIndex: a growable, persistent, exact Hamming index with optional int64 ids."""

from __future__ import annotations

import numpy as np

from jaxhash.retrieval import index_file
from jaxhash.retrieval.codes import check_nbits, check_words, num_words, pack_bits
from jaxhash.retrieval.radius import DEFAULT_MAX_RESULTS, RangeSearchResult, hamming_range_search
from jaxhash.retrieval.topk import hamming_topk


class HammingIndex:
  """Exact search over binary codes of ``nbits`` bits (like FAISS ``IndexBinaryFlat`` + ids).

  Codes may be given either packed (uint32 ``(n, ceil(nbits / 32))`` from ``pack_bits``) or as
  bits (``(n, nbits)`` of bool, 0/1 or -1/+1); the width tells them apart, since ``nbits`` is
  always more than the number of words. Results are ordered by (distance, insertion position)
  and report ids: the ones passed to :meth:`add`, or the insertion positions.

  Example::

    index = HammingIndex(64)
    index.add(bits)                       # (n, 64) 0/1 or -1/+1, or pack_bits(bits)
    distances, ids = index.search(query_bits, k=10)
    index.save("codes.jxh")
    index = HammingIndex.load("codes.jxh")
  """

  def __init__(self, nbits: int):
    self.nbits = check_nbits(nbits)
    self._words = np.zeros((0, num_words(self.nbits)), np.uint32)
    self._ids = np.zeros(0, np.int64)

  @property
  def ntotal(self) -> int:
    """Number of codes in the index."""
    return self._words.shape[0]

  def __len__(self) -> int:
    return self.ntotal

  def add(self, codes, ids=None) -> None:
    """Appends codes; ``ids`` (int64, one per code) default to the insertion positions."""
    words = self._as_words(codes, "codes")
    if ids is None:
      ids = np.arange(self.ntotal, self.ntotal + words.shape[0], dtype=np.int64)
    ids = np.asarray(ids)
    if ids.shape != (words.shape[0],) or not np.issubdtype(ids.dtype, np.integer):
      raise ValueError(
          f"ids must be integers, one per code ({words.shape[0]},); got {ids.dtype} {ids.shape}.")
    self._words = np.concatenate([self._words, words])
    self._ids = np.concatenate([self._ids, ids.astype(np.int64)])

  def search(self, queries, k: int) -> tuple[np.ndarray, np.ndarray]:
    """The ``k`` nearest codes per query: int32 distances and int64 ids, each ``(Q, k)``."""
    distances, positions = hamming_topk(self._as_words(queries, "queries"), self._words, k)
    return np.asarray(distances), self._ids[np.asarray(positions)]

  def range_search(self, queries, radius: int, *, max_results: int = DEFAULT_MAX_RESULTS,
                   strict: bool = False) -> RangeSearchResult:
    """All codes within ``radius`` per query (CSR, ids in ``indices``); see hamming_range_search."""
    result = hamming_range_search(self._as_words(queries, "queries"), self._words, radius,
                                  max_results=max_results, strict=strict)
    return result._replace(indices=self._ids[result.indices])

  def save(self, path: str) -> None:
    """Writes the index to one checksummed file, atomically (see ``index_file``)."""
    default_ids = np.array_equal(self._ids, np.arange(self.ntotal))
    index_file.write_index(path, self.nbits, self._words, None if default_ids else self._ids)

  @classmethod
  def load(cls, path: str) -> HammingIndex:
    """Reads a saved index; a truncated, altered or other-version file raises a ValueError."""
    nbits, words, ids = index_file.read_index(path)
    index = cls(nbits)
    index.add(words, ids)
    return index

  def _as_words(self, codes, name: str) -> np.ndarray:
    """Packed uint32 words from packed words or from bits, validated against ``nbits``."""
    codes = np.asarray(codes)
    words_per_code = num_words(self.nbits)
    if codes.ndim == 2 and codes.shape[1] == self.nbits:
      if not np.isin(codes, (-1, 0, 1)).all():
        raise ValueError(f"{name} given as bits must hold only 0/1, -1/+1 or bools.")
      return pack_bits(codes)
    if codes.ndim == 2 and codes.shape[1] == words_per_code and codes.dtype == np.uint32:
      spare_bits = 32 * words_per_code - self.nbits
      if spare_bits and (codes[:, -1] >> (32 - spare_bits)).any():
        raise ValueError(
            f"{name} has bits set above bit {self.nbits}: these words were not packed from "
            f"{self.nbits}-bit codes.")
      return check_words(codes, name, words_per_code)
    raise ValueError(
        f"{name} must be {self.nbits}-bit codes: bits of shape (n, {self.nbits}) or packed uint32 "
        f"words of shape (n, {words_per_code}); got {codes.dtype} {codes.shape}.")
