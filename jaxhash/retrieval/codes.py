"""Bit packing of binary codes.

Convention (the project's bit order, used everywhere): a code of ``b`` bits is stored in
``ceil(b / 32)`` uint32 words; bit ``i`` goes to word ``i // 32`` at position ``i % 32`` (least
significant first); unused high bits are 0.
FAISS ``IndexBinary*`` stores ``b / 8`` bytes per code with bit ``i`` in byte ``i // 8`` at position
``i % 8``. On a little-endian view these two layouts hold the same bytes, so conversion is a
reinterpretation plus padding, never a re-encoding.
"""

from __future__ import annotations

import numpy as np

from jaxhash.arith import ceil_div
from jaxhash.errors import UsageError

MIN_BITS = 8
MAX_BITS = 1024


def num_words(nbits: int) -> int:
  """Number of uint32 words that hold ``nbits`` bits."""
  return ceil_div(nbits, 32)


def check_nbits(nbits: int) -> int:
  """Returns ``nbits`` as an int, or raises a ValueError naming the valid range."""
  if isinstance(nbits, bool) or int(nbits) != nbits or not MIN_BITS <= nbits <= MAX_BITS:
    raise UsageError(
      f"bits={nbits!r} is not a valid code length: use an integer from {MIN_BITS} to {MAX_BITS}."
    )
  return int(nbits)


def check_words(words, name: str, expected_words: int | None = None):
  """Returns ``words`` if it is a uint32 ``(N, W)`` array of packed codes, else a ValueError.

  ``W`` must be 1..32 (8 to 1,024 bits) and equal ``expected_words`` when given (queries and
  database must have the same code length). NumPy and JAX arrays pass through unchanged.
  """
  if not hasattr(words, "shape"):
    words = np.asarray(words)
  shape, dtype = words.shape, words.dtype
  if len(shape) != 2 or dtype != np.uint32:
    raise ValueError(
      f"{name} must be packed codes: a uint32 array (num_codes, words) from pack_bits; "
      f"got {dtype} {shape}."
    )
  if not 1 <= shape[1] <= num_words(MAX_BITS):
    raise ValueError(
      f"{name} has {shape[1]} words per code; codes of {MIN_BITS} to {MAX_BITS} bits have "
      f"1 to {num_words(MAX_BITS)} uint32 words."
    )
  if expected_words is not None and shape[1] != expected_words:
    raise ValueError(
      f"{name} has {shape[1]} words per code but the queries have {expected_words}: "
      "queries and database must be packed from codes of the same length."
    )
  return words


def pack_bits(bits) -> np.ndarray:
  """Packs codes ``(N, b)`` into uint32 words ``(N, ceil(b/32))``.

  Accepts bool, 0/1 or ±1 values (any numeric dtype): an entry is a 1 bit when it is > 0.
  """
  arr = np.asarray(bits)
  if arr.ndim != 2:
    raise ValueError(f"pack_bits expects a 2-D array (num_codes, bits); got shape {arr.shape}.")
  nbits = arr.shape[1]
  if nbits < 1:
    raise ValueError("pack_bits got codes with 0 bits; a code needs at least one bit.")
  ones = arr if arr.dtype == np.bool_ else arr > 0
  width = num_words(nbits) * 32
  padded = np.zeros((arr.shape[0], width), dtype=np.bool_)
  padded[:, :nbits] = ones
  as_bytes = np.packbits(padded, axis=1, bitorder="little")
  return np.ascontiguousarray(as_bytes).view("<u4").astype(np.uint32)


def unpack_bits(words, nbits: int) -> np.ndarray:
  """Inverse of :func:`pack_bits`: uint32 ``(N, W)`` to uint8 0/1 ``(N, nbits)``."""
  words = np.asarray(words)
  if words.ndim != 2 or words.dtype != np.uint32:
    raise ValueError(
      "unpack_bits expects uint32 words of shape (num_codes, words); "
      f"got {words.dtype} {words.shape}."
    )
  if words.shape[1] != num_words(nbits):
    raise ValueError(
      f"{nbits} bits need {num_words(nbits)} uint32 words per code, but the array has "
      f"{words.shape[1]}."
    )
  as_bytes = np.ascontiguousarray(words.astype("<u4")).view(np.uint8)
  return np.unpackbits(as_bytes, axis=1, bitorder="little")[:, :nbits]


def to_faiss_bytes(words, nbits: int) -> np.ndarray:
  """uint32 words to FAISS's binary layout: uint8 ``(N, nbits / 8)``."""
  if nbits % 8:
    raise ValueError(f"FAISS binary codes need a multiple of 8 bits; got {nbits}.")
  words = np.asarray(words)
  if words.ndim != 2 or words.shape[1] != num_words(nbits):
    raise ValueError(
      f"{nbits} bits need uint32 words of shape (N, {num_words(nbits)}); got {words.shape}."
    )
  as_bytes = np.ascontiguousarray(words.astype("<u4")).view(np.uint8)
  return np.ascontiguousarray(as_bytes[:, : nbits // 8])


def from_faiss_bytes(codes, nbits: int) -> np.ndarray:
  """FAISS's binary layout (uint8 ``(N, nbits / 8)``) to uint32 words."""
  codes = np.asarray(codes)
  if nbits % 8 or codes.ndim != 2 or codes.dtype != np.uint8 or codes.shape[1] != nbits // 8:
    raise ValueError(
      f"FAISS codes of {nbits} bits are uint8 arrays of shape (N, {nbits // 8}); "
      f"got {codes.dtype} {codes.shape}."
    )
  padded = np.zeros((codes.shape[0], num_words(nbits) * 4), dtype=np.uint8)
  padded[:, : codes.shape[1]] = codes
  return padded.view("<u4").astype(np.uint32)
