"""The HammingIndex file: one header plus payload, checksummed, written atomically.

Layout (little-endian):

  offset  size  field
  0       8     magic ``b"JXHASHIX"``
  8       4     format version (uint32, currently 1)
  12      4     bits per code (uint32)
  16      8     number of codes N (uint64)
  24      4     flags (uint32; bit 0: ids stored)
  28      32    SHA-256 of bytes 0..27 and the payload
  60      ...   payload: codes as uint32 (N, ceil(bits / 32)), then ids as int64 (N,) if stored

The checksum covers the header fields too, so any altered byte is detected; the declared sizes
catch truncation before the checksum is computed.
"""

from __future__ import annotations

import hashlib
import struct

import numpy as np

from jaxhash.io_utils import atomic_write_bytes
from jaxhash.retrieval.codes import check_nbits, num_words

MAGIC = b"JXHASHIX"
FORMAT_VERSION = 1
_FIELDS = struct.Struct("<8sIIQI")
_DIGEST_SIZE = 32
HEADER_SIZE = _FIELDS.size + _DIGEST_SIZE
_HAS_IDS = 1


def write_index(path: str, nbits: int, words: np.ndarray, ids: np.ndarray | None) -> None:
  """Writes codes (and ids) to ``path`` atomically: a crash leaves the old file or none."""
  fields = _FIELDS.pack(MAGIC, FORMAT_VERSION, nbits, words.shape[0], _HAS_IDS if ids is not None else 0)
  parts = [np.ascontiguousarray(words, dtype="<u4").tobytes()]
  if ids is not None:
    parts.append(np.ascontiguousarray(ids, dtype="<i8").tobytes())
  payload = b"".join(parts)
  atomic_write_bytes(path, b"".join([fields, _digest(fields, payload), payload]))


def read_index(path: str) -> tuple[int, np.ndarray, np.ndarray | None]:
  """``(nbits, words, ids or None)`` from ``path``; a ValueError names the file and the defect."""
  with open(path, "rb") as f:
    data = f.read()
  if len(data) < HEADER_SIZE:
    _fail(path, f"is truncated: {len(data)} bytes, shorter than the {HEADER_SIZE}-byte header")
  magic, version, nbits, count, flags = _FIELDS.unpack_from(data)
  if magic != MAGIC:
    _fail(path, f"is not a jaxhash index (magic bytes {magic!r}, expected {MAGIC!r})",
          fix="check the path: it should be a file written by HammingIndex.save")
  if version != FORMAT_VERSION:
    _fail(path, f"has index format version {version}; this jaxhash reads version {FORMAT_VERSION}",
          fix="re-create the index with this version of jaxhash")
  words_per_code = num_words(nbits)
  expected = HEADER_SIZE + count * (4 * words_per_code + (8 if flags & _HAS_IDS else 0))
  if len(data) != expected:
    problem = "is truncated" if len(data) < expected else "has unexpected trailing bytes"
    _fail(path, f"{problem}: {len(data)} bytes, the header declares {expected}")
  view = memoryview(data)
  fields, digest, payload = view[:_FIELDS.size], view[_FIELDS.size:HEADER_SIZE], view[HEADER_SIZE:]
  if _digest(fields, payload) != bytes(digest):
    _fail(path, "is corrupted: its SHA-256 checksum does not match the contents")
  try:
    check_nbits(nbits)
  except ValueError as error:
    _fail(path, f"declares an invalid code length ({error})")
  words_size = count * 4 * words_per_code
  words = np.frombuffer(payload, "<u4", count * words_per_code).reshape(count, words_per_code)
  ids = np.frombuffer(payload, "<i8", offset=words_size) if flags & _HAS_IDS else None
  return nbits, words.astype(np.uint32), None if ids is None else ids.astype(np.int64)


def _digest(fields, payload) -> bytes:
  digest = hashlib.sha256(fields)
  digest.update(payload)
  return digest.digest()


def _fail(path: str, problem: str, fix: str = "save the index again from its codes") -> None:
  raise ValueError(f"index file {path} {problem}; {fix}.")
