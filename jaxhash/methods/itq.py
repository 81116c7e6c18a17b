"""ITQ: PCA, then the rotation that best aligns the projected data with the cube's vertices
(Gong and Lazebnik, "Iterative Quantization", CVPR 2011; Gong, Lazebnik, Gordo, Perronnin,
TPAMI 2013).

The centred features are projected on their ``bits`` leading principal directions, V = (X - mean)
W. ITQ then looks for the orthogonal R minimising the quantisation loss |B - V R|²_F over codes
B in {-1, 1}^(N x bits), alternating the paper's two exact steps from a random orthogonal R:

- B-step: B = sign(V R) (0 -> +1);
- R-step: the orthogonal Procrustes problem, R = S Ŝᵀ from the SVD Bᵀ V = Ŝ Ω Sᵀ.

Each step minimises the loss over its variable, so the loss never increases. The hash function
of a new x is sign((x - mean) W R): the head's projection is W R.
"""

from __future__ import annotations

import functools

import chex
import jax
import jax.numpy as jnp

from jaxhash.errors import UsageError
from jaxhash.methods.base import Method
from jaxhash.methods.shallow import (
  ProjectionHead,
  binarize,
  check_bits,
  principal_components,
  signs,
)


def random_rotation(key, bits: int) -> jax.Array:
  """An orthogonal (bits, bits) matrix: the left singular vectors of a Gaussian one (the
  released code's initialisation)."""
  u, _, _ = jnp.linalg.svd(jax.random.normal(key, (bits, bits), jnp.float32))
  return u


def quantisation_loss(v: jax.Array, rotation: jax.Array) -> jax.Array:
  """|sign(V R) - V R|²_F: how far the rotated data lie from their nearest cube vertices."""
  z = v @ rotation
  return jnp.sum((signs(z) - z) ** 2)


@functools.partial(jax.jit, static_argnames="iterations")
def rotation(v: jax.Array, key: jax.Array, iterations: int) -> tuple[jax.Array, jax.Array]:
  """(R, the quantisation loss at the initial R and after each of ``iterations`` B- and R-steps)."""
  chex.assert_rank(v, 2)

  def step(r, _):
    b = signs(v @ r)
    s_hat, _, s_t = jnp.linalg.svd(b.T @ v)
    r = s_t.T @ s_hat.T
    return r, quantisation_loss(v, r)

  r0 = random_rotation(key, v.shape[1])
  r, losses = jax.lax.scan(step, r0, None, length=iterations)
  return r, jnp.concatenate([quantisation_loss(v, r0)[None], losses])


def fit_rotation(mean, projection, features, key, iterations: int):
  """The head's parameters for ``projection`` followed by ITQ's rotation (ITQ and ITQ-CCA)."""
  r, losses = rotation((features - mean) @ projection, key, iterations)
  return (
    {"mean": mean, "projection": projection @ r, "offset": jnp.zeros(r.shape[1], jnp.float32)},
    {"quantisation_loss": float(losses[-1]) / len(features)},
  )


def fit(features, labels, config, key):
  del labels  # unsupervised
  check_bits("ITQ", config.bits, features.shape[1])
  mean = features.mean(axis=0)
  directions, _ = principal_components(features - mean, config.bits)
  return fit_rotation(mean, directions, features, key, config.iterations)


def validate(config) -> None:
  if config.iterations < 1:
    raise UsageError(f"config.method.iterations={config.iterations!r} must be >= 1.")


def defaults() -> dict:
  return {
    "name": "itq",
    "bits": 48,
    "iterations": 50,  # alternations of the B-step and the R-step (the paper's 50)
  }


METHOD = Method(
  name="itq",
  make_head=lambda config, num_classes: ProjectionHead(config.bits),
  loss=None,
  binarize=binarize,
  defaults=defaults,
  validate=validate,
  fit=fit,
  supervised=False,
)
