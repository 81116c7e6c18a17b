"""How the first pass reads the codes: the uint32 words, or on CPU the same memory as other types.

On XLA CPU the population count of a vector of uint32 lanes costs a byte lookup plus a byte sum per
lane; that of bytes is the lookup alone, and that of uint64 lanes needs one sum for 64 bits. So
pass 1 reads the codes as uint8 bytes when it has many queries to vectorise over (each stored byte
meets ``BIN_SIZE`` codes per query), and as uint64 words (uint32 for an odd number of words) for
a few queries (fewer, wider lanes; byte transposition would not pay for itself). Both are views of
the caller's buffer: on CPU ``np.asarray`` of a JAX array shares its memory, and ``device_put``
of an aligned NumPy array shares it back, so no code is copied. Accelerators read the uint32
words as they are.
"""

from __future__ import annotations

import contextlib

import jax
import numpy as np

FEW_QUERIES = 16  # up to this many queries per chunk, pass 1 reads 64-bit words on CPU


def on_cpu() -> bool:
  return jax.default_backend() == "cpu"


def pass_dtype(num_queries: int, num_words: int) -> np.dtype:
  """The type pass 1 reads the codes as, for a chunk of ``num_queries`` on the default backend."""
  if not on_cpu():
    return np.dtype(np.uint32)
  if num_queries > FEW_QUERIES:
    return np.dtype(np.uint8)
  return np.dtype(np.uint64 if num_words % 2 == 0 else np.uint32)


def x64(dtype) -> contextlib.AbstractContextManager:
  """Where 64-bit views are traced and run: ``jax.enable_x64`` (thread-local) for uint64."""
  return jax.enable_x64(True) if np.dtype(dtype).itemsize == 8 else contextlib.nullcontext()


def as_view(words, dtype):
  """uint32 ``(N, W)`` words (NumPy, or JAX on the default device) as ``dtype``, not copied.

  On CPU a NumPy view, which a jitted function takes without a copy when its buffer is 64-byte
  aligned (as JAX's own buffers are), and with less overhead than ``device_put``; elsewhere the
  words themselves. Pass 64-bit views to jitted functions inside :func:`x64`.
  """
  if not on_cpu():
    return words
  return np.asarray(words).view(dtype)
