"""How the first pass reads the codes: the uint32 words, or on CPU the same memory as other types.

On XLA CPU the population count of a vector of uint32 lanes costs a byte lookup plus a byte sum per
lane; that of bytes is the lookup alone, and that of uint64 lanes needs one sum for 64 bits. So
pass 1 reads the codes as uint8 bytes when it has many queries to vectorise over (each stored byte
meets ``BIN_SIZE`` codes per query), and as uint64 words (uint32 for an odd number of words) for
a few queries (fewer, wider lanes). Both are views of the caller's buffer: on CPU ``np.asarray``
of a JAX array shares its memory, and ``device_put`` of an aligned NumPy array shares it back, so
no code is copied. Accelerators read the uint32 words as they are.

A database prepared once for many searches (``prepare_codes``) also holds its codes as byte
columns, ``(4W, N)``: byte ``j`` of every code in one contiguous row. A few queries then run
through the codes with the codes innermost, 32 codes per AVX2 register, instead of one code's
words at a time: 3-5x less time per query on the distance pass. A per-call transposition would
cost more than it saves, so only prepared databases have columns.
"""

from __future__ import annotations

import contextlib

import jax
import numpy as np

FEW_QUERIES = 16  # up to this many queries per chunk, pass 1 reads 64-bit words on CPU
COLUMNS = "columns"  # the key of the byte-column view in a prepared database's views


def on_cpu() -> bool:
  return jax.default_backend() == "cpu"


def pass_dtype(num_queries: int, num_words: int) -> np.dtype:
  """The type pass 1 reads the codes as, for a chunk of ``num_queries`` on the default backend."""
  if not on_cpu():
    return np.dtype(np.uint32)
  if num_queries > FEW_QUERIES:
    return np.dtype(np.uint8)
  return np.dtype(np.uint64 if num_words % 2 == 0 else np.uint32)


def pass_kind(num_queries: int, num_words: int, available) -> np.dtype | str:
  """:func:`pass_dtype`, or :data:`COLUMNS` for few queries when the database has columns."""
  if COLUMNS in available and on_cpu() and num_queries <= FEW_QUERIES:
    return COLUMNS
  return pass_dtype(num_queries, num_words)


def byte_columns(words) -> jax.Array:
  """uint8 ``(4W, N)`` columns of uint32 ``(N, W)`` codes: row ``j`` holds byte ``j`` of each code.

  Bytes in the order of ``lax.bitcast_convert_type``; queries go through :func:`code_bytes`, so
  the order is the same on both sides and distances do not depend on it.
  """
  return _byte_columns(jax.device_put(words))


@jax.jit
def _byte_columns(words):
  return code_bytes(words).T


def code_bytes(words) -> jax.Array:
  """uint8 ``(N, 4W)``: the bytes of uint32 ``(N, W)`` codes (traceable)."""
  return jax.lax.bitcast_convert_type(words, np.uint8).reshape(words.shape[0], -1)


def x64(dtype) -> contextlib.AbstractContextManager:
  """Where 64-bit views are traced and run: ``jax.enable_x64`` (thread-local) for uint64."""
  wide = dtype != COLUMNS and np.dtype(dtype).itemsize == 8
  return jax.enable_x64(True) if wide else contextlib.nullcontext()


def as_view(words, dtype):
  """uint32 ``(N, W)`` words (NumPy, or JAX on the default device) as ``dtype``, not copied.

  On CPU a NumPy view, which a jitted function takes without a copy when its buffer is 64-byte
  aligned (as JAX's own buffers are), and with less overhead than ``device_put``; elsewhere the
  words themselves. Pass 64-bit views to jitted functions inside :func:`x64`.
  """
  if not on_cpu():
    return words
  return np.asarray(words).view(dtype)
