"""ITQ-CCA: canonical correlation analysis with the labels, then ITQ's rotation (Gong and
Lazebnik, CVPR 2011; Gong, Lazebnik, Gordo, Perronnin, TPAMI 2013, section 5).

CCA finds the directions w of the features whose projections correlate most with a linear
function of the labels: the leading eigenvectors of Cxx⁻¹ Cxy Cyy⁻¹ Cyx, with the canonical
correlations r as the square roots of their eigenvalues. As in the released code, the features
are projected on the ``bits`` leading directions scaled by their r (directions that carry no label
information fade out) and ITQ's rotation (``jaxhash.methods.itq``) is fitted on the result.
Computed through the symmetric form Cxx^-1/2 Cxy Cyy⁻¹ Cyx Cxx^-1/2. Both covariances get
``regularisation`` times their mean variance added on the diagonal (the released code adds an
absolute 1e-4 for GIST features; relative, the same setting suits features of any scale).
With C classes, at most C - 1 correlations are non-zero.
"""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp

from jaxhash.errors import UsageError
from jaxhash.methods import itq
from jaxhash.methods.base import Method
from jaxhash.methods.shallow import ProjectionHead, binarize, check_bits


def _inverse_sqrt(matrix: jax.Array) -> jax.Array:
  values, vectors = jnp.linalg.eigh(matrix)
  return (vectors / jnp.sqrt(values)) @ vectors.T


def _regularised_covariance(x: jax.Array, regularisation: float) -> jax.Array:
  covariance = x.T @ x / x.shape[0]
  ridge = regularisation * jnp.trace(covariance) / covariance.shape[0]
  return covariance + ridge * jnp.eye(covariance.shape[0], dtype=x.dtype)


@functools.partial(jax.jit, static_argnames="bits")
def canonical_directions(
  x: jax.Array, y: jax.Array, bits: int, regularisation: float
) -> tuple[jax.Array, jax.Array]:
  """The ``bits`` leading canonical directions of centred ``x`` (D, bits), of unit length (as
  MATLAB's ``eig`` returns them to the released code), and their correlations, largest first."""
  whiten_x = _inverse_sqrt(_regularised_covariance(x, regularisation))
  cyy = _regularised_covariance(y, regularisation)
  cxy = x.T @ y / x.shape[0]
  m = whiten_x @ cxy @ jnp.linalg.solve(cyy, cxy.T) @ whiten_x
  values, vectors = jnp.linalg.eigh((m + m.T) / 2)
  correlations = jnp.sqrt(jnp.maximum(values[::-1][:bits], 0.0))
  directions = whiten_x @ vectors[:, ::-1][:, :bits]
  return directions / jnp.linalg.norm(directions, axis=0), correlations


def fit(features, labels, config, key):
  check_bits("ITQ-CCA", config.bits, features.shape[1])
  mean = features.mean(axis=0)
  labels = labels.astype(jnp.float32)
  directions, correlations = canonical_directions(
    features - mean, labels - labels.mean(axis=0), config.bits, config.regularisation
  )
  params, metrics = itq.fit_rotation(
    mean, directions * correlations, features, key, config.iterations
  )
  return params, {**metrics, "largest_correlation": float(correlations[0])}


def validate(config) -> None:
  itq.validate(config)
  if not config.regularisation > 0:
    raise UsageError(f"config.method.regularisation={config.regularisation!r} must be > 0.")


def defaults() -> dict:
  return {
    "name": "itq_cca",
    "bits": 48,
    "iterations": 50,  # ITQ's alternations after CCA (the paper's 50)
    "regularisation": 1e-4,  # added to both covariances' diagonals, times their mean variance
  }


METHOD = Method(
  name="itq_cca",
  make_head=lambda config, num_classes: ProjectionHead(config.bits),
  loss=None,
  binarize=binarize,
  defaults=defaults,
  validate=validate,
  fit=fit,
)
