"""Hamming distance between bit-packed codes: XOR + population count, vmapped over queries."""

from __future__ import annotations

import jax
import jax.numpy as jnp


def _distances_one(query_words: jax.Array, db_words: jax.Array) -> jax.Array:
  """Distances from one packed code ``(W,)`` to every database code ``(N, W)`` -> int32 ``(N,)``."""
  xor = jnp.bitwise_xor(db_words, query_words[None, :])
  return jnp.sum(jax.lax.population_count(xor).astype(jnp.int32), axis=-1)


@jax.jit
def hamming_distances(query_words: jax.Array, db_words: jax.Array) -> jax.Array:
  """All pairwise Hamming distances, int32 ``(Q, N)``, from uint32 packed codes."""
  return jax.vmap(_distances_one, in_axes=(0, None))(query_words, db_words)
