"""Spectral hashing (Weiss, Torralba, Fergus, NIPS 2008).

The codes are thresholded eigenfunctions of the Laplacian of a similarity graph on the data. For
data uniformly distributed on a box, those eigenfunctions are known in closed form: along a
direction of range [a, b], the k-th one is sin(π/2 + kπ (x - a) / (b - a)), with eigenvalue
falling as (k / (b - a))². The paper applies this to the data's principal directions:

1. PCA: the min(bits, D) leading directions of the centred features;
2. on each, the range [a, b] of the training data's projections;
3. among all (direction, k >= 1), the ``bits`` with the smallest (k / (b - a))² (the smallest
   eigenvalues; ties in order of direction, then k, as the released code sorts them);
4. bit = [cos(kπ (p - a) / (b - a)) >= 0] for the projection p on the chosen direction.

A direction of wide range gives several bits of increasing frequency. Nothing is random: SH is
the same for every seed.
"""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp

from jaxhash.methods.base import Method
from jaxhash.methods.shallow import ProjectionHead, binarize, principal_components


@functools.partial(jax.jit, static_argnames="bits")
def modes(low: jax.Array, high: jax.Array, bits: int) -> tuple[jax.Array, jax.Array]:
  """(direction, angular frequency kπ / (b - a)) of the ``bits`` lowest modes."""
  frequencies = jnp.pi / (high - low)[:, None] * jnp.arange(1, bits + 1)  # (directions, bits)
  order = jnp.argsort(frequencies.reshape(-1), stable=True)[:bits]
  return order // bits, frequencies.reshape(-1)[order]


def fit(features, labels, config, key):
  del labels, key  # unsupervised and deterministic
  mean = features.mean(axis=0)
  directions, _ = principal_components(features - mean, min(config.bits, features.shape[1]))
  projected = (features - mean) @ directions
  low, high = projected.min(axis=0), projected.max(axis=0)
  which, omega = modes(low, high, config.bits)
  return {
    "mean": mean,
    "projection": directions[:, which] * omega,
    "offset": low[which] * omega,
  }, {}


def defaults() -> dict:
  return {"name": "sh", "bits": 48}


METHOD = Method(
  name="sh",
  make_head=lambda config, num_classes: ProjectionHead(config.bits, periodic=True),
  loss=None,
  binarize=binarize,
  defaults=defaults,
  fit=fit,
  supervised=False,
)
