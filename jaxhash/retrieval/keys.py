"""Order keys: a (distance, index) pair packed into one int32 that sorts like the pair.

``key = ((distance << shift) | index) + KEY_BIAS``. Selecting the smallest keys selects results in
(distance, index) order, so ties are broken by the lower index without a second sort key. Keys are
positive and at least ``KEY_BIAS = 2**23``, so with the sign bit set their float32 bit patterns are
normal negative floats whose order is the reverse of the keys' order: ``lax.top_k`` on those floats
(fast on XLA CPU, unlike ``top_k`` on int32, which lowers to a full sort) returns the smallest keys,
in order. The bias keeps every key out of the subnormal range, where flush-to-zero would make
different keys compare equal. A missing result (padding) gets distance ``max_distance + 1``.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
from jax import lax

KEY_BIAS = 1 << 23
_KEY_LIMIT = 0x7F000000  # keys stay below the float32 infinity/NaN patterns (0x7F800000 and up)


def index_shift(max_distance: int) -> int:
  """Largest ``shift`` for which every key up to distance ``max_distance + 1`` stays valid.

  Indices packed with this shift must be below ``2**shift`` (2**24 codes at 64 bits, 2**20 at
  1,024 bits); longer lists are split into blocks with block-local indices.
  """
  shift = 0
  while (max_distance + 2) << (shift + 1) <= _KEY_LIMIT:
    shift += 1
  return shift


def encode(distances: jax.Array, indices: jax.Array, shift: int) -> jax.Array:
  """int32 keys for int32 ``distances`` and ``indices < 2**shift``."""
  return ((distances << shift) | indices) + KEY_BIAS


def smallest(keys: jax.Array, k: int) -> tuple[jax.Array, jax.Array]:
  """The ``k`` smallest keys of each row in increasing order, and their positions in the row."""
  as_float = lax.bitcast_convert_type(keys | jnp.int32(-(2**31)), jnp.float32)
  values, positions = lax.top_k(as_float, k)
  return lax.bitcast_convert_type(values, jnp.int32) & 0x7FFFFFFF, positions


def decode(keys: jax.Array, shift: int) -> tuple[jax.Array, jax.Array]:
  """Inverse of :func:`encode`: ``(distances, indices)``."""
  unbiased = keys - KEY_BIAS
  return unbiased >> shift, unbiased & ((1 << shift) - 1)
