"""What the shallow methods share: heads whose weights are fitted, not trained, and PCA.

A shallow method (LSH, SH, ITQ, ITQ-CCA, SDH) learns no network: its hash function is fitted in
closed form or by its paper's alternating updates on the features of a frozen backbone, which
``jaxhash.run.feature_cache`` computes once (``model.trainable=head``). ``Method.fit`` maps the
training images' features (and labels) to the head's parameters; ``jaxhash.run.fitting`` calls it
and saves the result as an ordinary checkpoint, so the run is loaded, evaluated, indexed and
searched like a trained one. Codes are ``z >= 0``.

Two heads cover the five methods, both with all-zero initial parameters (``fit`` sets them):
``ProjectionHead``: z = (x - mean) @ projection - offset, or its cosine (``periodic``, spectral
hashing's eigenfunctions); ``AnchorHead``: z = [k(x, a_1) .. k(x, a_m), 1] @ projection with a
Gaussian kernel on ``m`` anchors (SDH's nonlinear features).
"""

from __future__ import annotations

import chex
import flax.linen as nn
import jax
import jax.numpy as jnp

from jaxhash.errors import UsageError

_zeros = nn.initializers.zeros


class ProjectionHead(nn.Module):
  """Linear (LSH, ITQ, ITQ-CCA) or cosine (SH) projection of the centred features."""

  bits: int
  periodic: bool = False

  @nn.compact
  def __call__(self, features: jax.Array) -> dict:
    dim = features.shape[-1]
    mean = self.param("mean", _zeros, (dim,))
    projection = self.param("projection", _zeros, (dim, self.bits))
    offset = self.param("offset", _zeros, (self.bits,))
    z = (features - mean) @ projection - offset
    return {"z": jnp.cos(z) if self.periodic else z}


class AnchorHead(nn.Module):
  """Gaussian kernel features on ``anchors`` points, plus a constant, then a linear map (SDH)."""

  bits: int
  anchors: int

  @nn.compact
  def __call__(self, features: jax.Array) -> dict:
    points = self.param("anchors", _zeros, (self.anchors, features.shape[-1]))
    width = self.param("width", nn.initializers.ones, ())
    projection = self.param("projection", _zeros, (self.anchors + 1, self.bits))
    return {"z": kernel_features(features, points, width) @ projection}


def squared_distances(x: jax.Array, anchors: jax.Array) -> jax.Array:
  """|x_i - a_j|² (N, m), through the Gram matrix (one product, no (N, m, D) difference)."""
  squared = (
    jnp.sum(x * x, axis=1, keepdims=True) - 2 * x @ anchors.T + jnp.sum(anchors * anchors, axis=1)
  )
  return jnp.maximum(squared, 0.0)


def kernel_features(x: jax.Array, anchors: jax.Array, width: jax.Array) -> jax.Array:
  """exp(-|x - a_j|² / (2 width²)) for each anchor a_j, then a column of ones: (N, m + 1)."""
  phi = jnp.exp(-squared_distances(x, anchors) / (2 * width**2))
  return jnp.concatenate([phi, jnp.ones((len(x), 1), phi.dtype)], axis=1)


def binarize(outputs) -> jax.Array:
  return outputs["z"] >= 0


def signs(x: jax.Array) -> jax.Array:
  """±1 of ``x``, 0 -> +1 (the code's bit for z = 0, as ``binarize``)."""
  return jnp.where(x >= 0, 1.0, -1.0).astype(x.dtype)


def principal_components(centred: jax.Array, count: int) -> tuple[jax.Array, jax.Array]:
  """The ``count`` leading eigenvectors (D, count) of the covariance and their eigenvalues,
  largest first."""
  chex.assert_rank(centred, 2)
  covariance = centred.T @ centred / centred.shape[0]
  values, vectors = jnp.linalg.eigh(covariance)  # ascending
  return vectors[:, ::-1][:, :count], values[::-1][:count]


def check_bits(name: str, bits: int, dim: int) -> None:
  """Methods that keep ``bits`` principal or canonical directions need bits <= dim."""
  if bits > dim:
    raise UsageError(
      f"config.method.bits={bits}: {name} projects the {dim}-dimensional features "
      f"onto {bits} directions, more than they have; use at most {dim} bits."
    )
