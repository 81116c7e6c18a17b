"""SDH: supervised discrete hashing (Shen, Shen, Liu, Shen, CVPR 2015).

Codes B in {-1, 1}^(N x bits) of the training images are learnt so that a linear classifier W
predicts the labels Y from them, while a hash function F(x) = φ(x) P reproduces them:

  min |Y - B W|² + λ |W|² + ν |B - φ(X) P|² (+ λ_F |P|² in the F-step),

with φ(x) = [exp(-|x - a_j|² / 2σ²)]_j, 1 on ``anchors`` training images a_j drawn at random.
The paper alternates three steps from random codes, as the released code does:

- G-step: W = (BᵀB + λI)⁻¹ BᵀY (ridge regression of the labels on the codes);
- F-step: P = (φᵀφ + λ_F I)⁻¹ φᵀB;
- B-step: discrete cyclic coordinate descent, bit by bit with the others fixed:
  b_l = sign(q_l - B' W' w_lᵀ), where Q = Y Wᵀ + ν φ P and ' drops bit l; sweeps repeat until
  no bit changes (at most ``sweeps``; a sweep that changes nothing is a fixed point).

A last F-step fits P to the final codes (the released code returns the P of its last iteration,
fitted to the codes before that iteration's B-step). σ is the mean distance of the training
images to their nearest anchor (the rule the released demo keeps beside a fixed σ for normalised
GIST). Defaults are the released demo's: 1,000 anchors, 5 iterations, λ = 1, λ_F = 0.01, ν = 1e-5.
"""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp

from jaxhash.errors import UsageError
from jaxhash.methods.base import Method
from jaxhash.methods.shallow import AnchorHead, binarize, kernel_features, signs, squared_distances


def _ridge(x: jax.Array, targets: jax.Array, penalty: float) -> jax.Array:
  """argmin_W |targets - x W|² + penalty |W|²."""
  gram = x.T @ x + penalty * jnp.eye(x.shape[1], dtype=x.dtype)
  return jnp.linalg.solve(gram, x.T @ targets)


def _bit_sweep(b: jax.Array, q: jax.Array, w: jax.Array) -> jax.Array:
  """One pass of discrete cyclic coordinate descent over the bits (the B-step's update)."""

  def update(bit, carry):
    b, bw = carry  # bw = B W, kept up to date as bits change
    others = bw - jnp.outer(b[:, bit], w[bit])
    new = signs(q[:, bit] - others @ w[bit])
    return b.at[:, bit].set(new), others + jnp.outer(new, w[bit])

  return jax.lax.fori_loop(0, b.shape[1], update, (b, b @ w))[0]


@functools.partial(jax.jit, static_argnames=("iterations", "sweeps"))
def discrete_hashing(phi, y, b, penalty, penalty_f, nu, iterations: int, sweeps: int):
  """(P, final codes B, objective per iteration) from initial codes ``b``."""

  def b_step(b, q, w):
    def sweep(carry):
      b, _, count = carry
      new = _bit_sweep(b, q, w)
      return new, jnp.any(new != b), count + 1

    start = (b, jnp.array(True), jnp.array(0))
    return jax.lax.while_loop(lambda c: c[1] & (c[2] < sweeps), sweep, start)[0]

  def iteration(b, _):
    w = _ridge(b, y, penalty)
    p = _ridge(phi, b, penalty_f)
    b = b_step(b, y @ w.T + nu * phi @ p, w)
    objective = (
      jnp.sum((y - b @ w) ** 2) + penalty * jnp.sum(w**2) + nu * jnp.sum((b - phi @ p) ** 2)
    )
    return b, objective

  b, objectives = jax.lax.scan(iteration, b, None, length=iterations)
  return _ridge(phi, b, penalty_f), b, objectives


def fit(features, labels, config, key):
  n = len(features)
  if config.anchors > n:
    raise UsageError(
      f"config.method.anchors={config.anchors} exceeds the {n} training images it "
      f"draws them from; set --config.method.anchors to at most {n}."
    )
  anchor_key, code_key = jax.random.split(key)
  anchors = features[jax.random.choice(anchor_key, n, (config.anchors,), replace=False)]
  width = jnp.mean(jnp.sqrt(squared_distances(features, anchors).min(axis=1)))
  phi = kernel_features(features, anchors, width)
  b0 = signs(jax.random.normal(code_key, (n, config.bits), jnp.float32))
  projection, _, objectives = discrete_hashing(
    phi,
    labels.astype(jnp.float32),
    b0,
    config.penalty,
    config.penalty_f,
    config.nu,
    config.iterations,
    config.sweeps,
  )
  return (
    {"anchors": anchors, "width": width, "projection": projection},
    {"objective": float(objectives[-1]) / n},
  )


def validate(config) -> None:
  for key in ("anchors", "iterations", "sweeps"):
    if config[key] < 1:
      raise UsageError(f"config.method.{key}={config[key]!r} must be >= 1.")
  for key in ("penalty", "penalty_f", "nu"):
    if not config[key] > 0:
      raise UsageError(f"config.method.{key}={config[key]!r} must be > 0.")


def defaults() -> dict:
  return {
    "name": "sdh",
    "bits": 48,
    "anchors": 1000,  # training images drawn as the Gaussian kernel's anchors
    "iterations": 5,  # G-, F- and B-steps
    "sweeps": 10,  # at most this many passes over the bits per B-step
    "penalty": 1.0,  # λ: ridge penalty of the label classifier W (G-step)
    "penalty_f": 0.01,  # λ_F: ridge penalty of the hash function P (F-step)
    "nu": 1e-5,  # ν: weight of |B - F(X)|² in the B-step
  }


METHOD = Method(
  name="sdh",
  make_head=lambda config, num_classes: AnchorHead(config.bits, config.anchors),
  loss=None,
  binarize=binarize,
  defaults=defaults,
  validate=validate,
  fit=fit,
)
