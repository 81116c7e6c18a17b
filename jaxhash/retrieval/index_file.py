"""The HammingIndex file: one header plus payload, checksummed, written atomically.

Format version 2 (little-endian):

  offset  size  field
  0       8     magic ``b"JXHASHIX"``
  8       4     format version (uint32, 2)
  12      4     bits per code (uint32)
  16      8     number of codes N (uint64)
  24      4     flags (uint32): bit 0 integer ids stored, bit 1 string ids stored, bit 2 features
  28      4     feature dimension D (uint32; 0 without features)
  32      8     S: bytes of the UTF-8 string ids (uint64; 0 without string ids)
  40      8     M: bytes of the metadata JSON (uint64)
  48      32    SHA-256 of bytes 0..47 and the payload
  80      ...   payload, in this order:
                codes as uint32 (N, ceil(bits / 32));
                integer ids as int64 (N,), or string ids as uint64 offsets (N + 1,) into the blob;
                features as float32 (N, D);
                the string ids' UTF-8 blob (S bytes);
                metadata: a UTF-8 JSON object (M bytes), e.g. the run the codes came from.

The checksum covers the header fields too, so any altered byte is detected; the declared sizes
catch truncation before the checksum is computed. Every defect is a ``UsageError`` naming the
file; a file of any other format version is refused.
"""

from __future__ import annotations

import dataclasses
import json
import struct

import numpy as np

from jaxhash.digests import sha256
from jaxhash.errors import UsageError
from jaxhash.io_utils import atomic_write_bytes, open_regular
from jaxhash.retrieval.codes import check_nbits, num_words

MAGIC = b"JXHASHIX"
FORMAT_VERSION = 2
_PREFIX = struct.Struct("<8sI")  # magic, version: read first, to refuse another format by name
_FIELDS = struct.Struct("<8sIIQIIQQ")
_DIGEST_SIZE = 32
HEADER_SIZE = _FIELDS.size + _DIGEST_SIZE
_INT_IDS, _STRING_IDS, _FEATURES = 1, 2, 4


@dataclasses.dataclass(frozen=True)
class IndexContents:
  nbits: int
  words: np.ndarray  # uint32 (N, W)
  ids: np.ndarray | list[str] | None  # int64 (N,), N strings, or None (ids = positions)
  features: np.ndarray | None  # float32 (N, D)
  metadata: dict


def write_index(path: str, contents: IndexContents) -> None:
  """Writes an index file atomically: a crash leaves the old file or none."""
  words, ids, features = contents.words, contents.ids, contents.features
  count = words.shape[0]
  flags, parts, blob = 0, [np.ascontiguousarray(words, dtype="<u4").tobytes()], b""
  if isinstance(ids, list):
    encoded = [s.encode("utf-8") for s in ids]
    offsets = np.zeros(count + 1, np.uint64)
    np.cumsum([len(b) for b in encoded], out=offsets[1:])
    flags, blob = flags | _STRING_IDS, b"".join(encoded)
    parts.append(offsets.astype("<u8").tobytes())
  elif ids is not None:
    flags |= _INT_IDS
    parts.append(np.ascontiguousarray(ids, dtype="<i8").tobytes())
  dim = 0
  if features is not None:
    flags, dim = flags | _FEATURES, features.shape[1]
    parts.append(np.ascontiguousarray(features, dtype="<f4").tobytes())
  metadata = (
    json.dumps(contents.metadata, sort_keys=True).encode("utf-8") if contents.metadata else b""
  )
  parts += [blob, metadata]
  payload = b"".join(parts)
  fields = _FIELDS.pack(
    MAGIC, FORMAT_VERSION, contents.nbits, count, flags, dim, len(blob), len(metadata)
  )
  atomic_write_bytes(path, b"".join([fields, sha256(fields, payload), payload]))


def is_index_file(path: str) -> bool:
  """Whether ``path`` is a regular file that starts with the index magic bytes."""
  try:
    with open_regular(path) as f:
      return f.read(len(MAGIC)) == MAGIC
  except (OSError, ValueError):
    return False


def read_index(path: str) -> IndexContents:
  """Reads a version 2 file; a ``UsageError`` names the file and the defect."""
  try:
    with open_regular(path, "index file") as f:  # a named pipe is refused, never waited on
      data = f.read()
  except FileNotFoundError:
    raise FileNotFoundError(
      f"index file {path} not found; build one with python -m jaxhash.index or HammingIndex.save."
    ) from None
  if len(data) < _PREFIX.size:
    _fail(path, f"is truncated: {len(data)} bytes, shorter than any index header")
  magic, version = _PREFIX.unpack_from(data)
  if magic != MAGIC:
    _fail(
      path,
      f"is not a jaxhash index (magic bytes {magic!r}, expected {MAGIC!r})",
      fix="check the path: it should be a file written by HammingIndex.save",
    )
  if version != FORMAT_VERSION:
    _fail(
      path,
      f"has index format version {version}; this jaxhash reads version {FORMAT_VERSION}",
      fix="re-create the index with this version of jaxhash",
    )
  if len(data) < HEADER_SIZE:
    _fail(path, f"is truncated: {len(data)} bytes, shorter than the {HEADER_SIZE}-byte header")
  _, _, nbits, count, flags, dim, text_bytes, meta_bytes = _FIELDS.unpack_from(data)
  if flags & ~(_INT_IDS | _STRING_IDS | _FEATURES) or (flags & _INT_IDS and flags & _STRING_IDS):
    _fail(path, f"has unknown or conflicting flags 0x{flags:x}")
  if bool(flags & _FEATURES) != (dim > 0) or (not flags & _STRING_IDS and text_bytes):
    _fail(path, "has inconsistent header fields (feature dimension or string-id size)")
  words_per_code = num_words(max(nbits, 1))
  sizes = [
    count * 4 * words_per_code,
    count * 8 if flags & _INT_IDS else (count + 1) * 8 if flags & _STRING_IDS else 0,
    count * dim * 4,
    text_bytes,
    meta_bytes,
  ]
  _check_size(path, len(data), HEADER_SIZE + sum(sizes))
  _check_digest(path, data)
  _check_nbits(path, nbits)
  starts = np.cumsum([HEADER_SIZE] + sizes).tolist()
  section = lambda i: memoryview(data)[starts[i] : starts[i + 1]]
  words = np.frombuffer(section(0), "<u4").reshape(count, words_per_code).astype(np.uint32)
  _check_spare_bits(path, nbits, words)
  ids = None
  if flags & _INT_IDS:
    ids = np.frombuffer(section(1), "<i8").astype(np.int64)
  elif flags & _STRING_IDS:
    ids = _strings(path, np.frombuffer(section(1), "<u8"), bytes(section(3)))
  features = None
  if flags & _FEATURES:
    features = np.frombuffer(section(2), "<f4").reshape(count, dim).astype(np.float32)
  try:
    metadata = json.loads(bytes(section(4)).decode("utf-8")) if meta_bytes else {}
  except (UnicodeDecodeError, json.JSONDecodeError) as error:
    _fail(path, f"has unreadable metadata ({error})")
  if not isinstance(metadata, dict):
    _fail(path, "has metadata that is not a JSON object")
  return IndexContents(nbits, words, ids, features, metadata)


def _strings(path: str, offsets: np.ndarray, blob: bytes) -> list[str]:
  if offsets[0] != 0 or offsets[-1] != len(blob) or np.any(np.diff(offsets.astype(np.int64)) < 0):
    _fail(path, "has string-id offsets that do not partition the string data")
  bounds = offsets.tolist()
  try:
    return [blob[a:b].decode("utf-8") for a, b in zip(bounds[:-1], bounds[1:])]
  except UnicodeDecodeError as error:
    _fail(path, f"has a string id that is not UTF-8 ({error})")


def _check_size(path: str, actual: int, expected: int) -> None:
  if actual != expected:
    problem = "is truncated" if actual < expected else "has unexpected trailing bytes"
    _fail(path, f"{problem}: {actual} bytes, the header declares {expected}")


def _check_digest(path: str, data: bytes) -> None:
  view = memoryview(data)
  if sha256(view[: _FIELDS.size], view[HEADER_SIZE:]) != bytes(view[_FIELDS.size : HEADER_SIZE]):
    _fail(path, "is corrupted: its SHA-256 checksum does not match the contents")


def _check_nbits(path: str, nbits: int) -> None:
  try:
    check_nbits(nbits)
  except ValueError as error:
    _fail(path, f"declares an invalid code length ({error})")


def _check_spare_bits(path: str, nbits: int, words: np.ndarray) -> None:
  spare = 32 * words.shape[1] - nbits
  if spare and words.size and (words[:, -1] >> (32 - spare)).any():
    _fail(path, f"has codes with bits set above its code length ({nbits} bits)")


def _fail(path: str, problem: str, fix: str = "save the index again from its codes") -> None:
  raise UsageError(f"index file {path} {problem}; {fix}.")
