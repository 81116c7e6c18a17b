"""HashNet (Cao, Long, Wang, Yu, ICCV 2017): deep learning to hash by continuation.

Hash layer: fc7 -> Dense(bits) -> z, and h = tanh(β·z) in the loss. β grows during training
(``jaxhash.run.schedules.continuation_schedule``, evaluated from ``state.step``), so h approaches
the code sign(z) and the network learns codes without a quantization loss. Codes: z >= 0
(sign, 0 -> +1).

Loss: the weighted pairwise maximum likelihood of the paper. With θ_ij = α·⟨h_i, h_j⟩ (α = 10/bits
by default, as in the released code) and s_ij = 1 when the multi-hot labels share a class, the
pair loss is log(1 + exp(θ_ij)) − s_ij·θ_ij, computed as softplus(θ) − s·θ (stable for any θ).

Pairs: every ordered pair (i, j), i ≠ j, of one batch. The released code instead concatenates two
independently drawn batches and uses only the pairs across them, a layout inherited from its
transfer-learning code base; one Gram matrix of the whole batch gives about twice as many pairs
per image at the same cost. The diagonal is left out: i is always similar to itself, and those
pairs would only inflate the similar set and push |h| up. Each unordered pair counts twice, which
changes no weight and no gradient direction.

Weights: ``balanced`` (the paper's w = |S|/|S1| for similar, |S|/|S0| for dissimilar pairs, with
c_ij = 1) gives the few similar pairs the same total mass as the many dissimilar ones; ``uniform``
weights every pair alike. Weights are normalised to sum to 1 over the batch's pairs, so both losses
are on the scale of a mean pair loss, and a batch without similar (or without dissimilar) pairs just
averages over the pairs it has. Not reproduced from the PyTorch release: its fixed
``class_num`` factor in place of these weights, and θ scaled by α inside the exponent but not in
s·θ.
"""

from __future__ import annotations

import chex
import flax.linen as nn
import jax
import jax.numpy as jnp
import optax

from jaxhash.errors import UsageError
from jaxhash.methods.base import Method
from jaxhash.presets import alexnet_imagenet_input
from jaxhash.run.schedules import continuation_schedule

WEIGHTINGS = ("balanced", "uniform")


class HashNetHead(nn.Module):
  """fc7 -> z; N(0, 0.01) weights and zero bias, as the released code's hash layer."""

  bits: int

  @nn.compact
  def __call__(self, features: jax.Array) -> dict:
    z = nn.Dense(self.bits, kernel_init=nn.initializers.normal(0.01), name="hash")(features)
    return {"z": z}


def similarity(labels: jax.Array) -> jax.Array:
  """bool (B, B): items i and j share at least one class of their multi-hot labels."""
  chex.assert_rank(labels, 2)
  labels = labels.astype(jnp.float32)
  return labels @ labels.T > 0


def pair_weights(similar: jax.Array, weighting: str) -> jax.Array:
  """float (B, B) weights of the pairs i ≠ j (0 on the diagonal), summing to 1."""
  off_diagonal = ~jnp.eye(similar.shape[0], dtype=bool)
  if weighting == "uniform":
    weights = off_diagonal.astype(jnp.float32)
  elif weighting == "balanced":
    n_similar = jnp.sum(similar & off_diagonal)
    n_dissimilar = jnp.sum(~similar & off_diagonal)
    weights = jnp.where(
      similar, 1.0 / jnp.maximum(n_similar, 1), 1.0 / jnp.maximum(n_dissimilar, 1)
    )
    weights = jnp.where(off_diagonal, weights, 0.0)
  else:
    raise UsageError(f"config.method.weighting={weighting!r}: use one of {WEIGHTINGS}.")
  return weights / jnp.maximum(weights.sum(), 1e-12)


def pairwise_loss(h: jax.Array, labels: jax.Array, alpha: float, weighting: str) -> jax.Array:
  """Weighted mean over pairs of softplus(θ) − s·θ, θ = α·h hᵀ; h (B, bits), labels (B, C)."""
  chex.assert_rank(h, 2)
  chex.assert_equal_shape_prefix((h, labels), 1)
  theta = alpha * (h @ h.T)
  similar = similarity(labels)
  per_pair = jax.nn.softplus(theta) - jnp.where(similar, theta, 0.0)
  return jnp.sum(pair_weights(similar, weighting) * per_pair)


def beta_schedule(config) -> optax.Schedule:
  """β(step): the continuation schedule, or the constant β0 when ``continuation`` is off."""
  if not config.continuation:
    return optax.constant_schedule(float(config.beta0))
  return continuation_schedule(config.beta0, config.gamma, config.power, config.step_size)


def alpha(config) -> float:
  """θ's scale: ``config.alpha``, or 10 / bits (the released code's default) when it is 0."""
  return float(config.alpha) if config.alpha else 10.0 / config.bits


def loss(outputs, labels, step, config):
  beta = beta_schedule(config)(step)
  h = jnp.tanh(beta * outputs["z"])
  value = pairwise_loss(h, labels, alpha(config), config.weighting)
  return value, {"beta": beta}


def binarize(outputs) -> jax.Array:
  return outputs["z"] >= 0


def validate(config) -> None:
  """Raises ValueError naming the bad ``config.method`` key."""
  if config.weighting not in WEIGHTINGS:
    raise UsageError(f"config.method.weighting={config.weighting!r}: use one of {WEIGHTINGS}.")
  if config.alpha < 0:
    raise UsageError(f"config.method.alpha={config.alpha!r} must be >= 0 (0 means 10 / bits).")
  try:
    continuation_schedule(config.beta0, config.gamma, config.power, config.step_size)
  except UsageError as e:
    raise UsageError(f"config.method (beta0, gamma, power, step_size): {e}") from None


def make_head(config, num_classes: int) -> HashNetHead:
  del num_classes  # pairwise: no classifier
  return HashNetHead(bits=config.bits)


def defaults() -> dict:
  return {
    "name": "hashnet",
    "bits": 48,
    "alpha": 0.0,  # θ = α·⟨h_i, h_j⟩; 0 means 10 / bits
    "weighting": "balanced",  # balanced (the paper's |S|/|S1|, |S|/|S0|) | uniform
    "continuation": True,  # False: fixed β = beta0
    "beta0": 1.0,
    "gamma": 0.005,
    "power": 0.5,
    "step_size": 200,  # β = beta0 · (1 + gamma · t)^power, t = step_size · ⌊step / step_size⌋
  }


METHOD = Method(
  name="hashnet",
  make_head=make_head,
  loss=loss,
  binarize=binarize,
  defaults=defaults,
  validate=validate,
)


def use_released_recipe(config, learning_rate: float):
  """The released code's AlexNet training, on a ``base_config("hashnet")`` (returned, unlocked).

  SGD with Nesterov momentum 0.9, weight decay 5e-4, the hash layer at 10× the rate, the rate
  halved every 2,000 of 10,000 steps, batch 256, 256² images with random 224² crops and flips.
  ``learning_rate`` is the per-dataset base rate of the released solvers. Caffe's 2× rate and no
  decay for biases are not reproduced (``jaxhash.run.optim`` treats all parameters of a group
  alike).
  """
  alexnet_imagenet_input(config)
  config.optim.optimizer = "sgd"
  config.optim.learning_rate = learning_rate
  config.optim.momentum, config.optim.nesterov = 0.9, True
  config.optim.weight_decay = 5e-4
  config.optim.head_lr_multiplier = 10.0
  config.optim.schedule, config.optim.decay_every, config.optim.decay_factor = "step", 2000, 0.5
  config.train.batch_size, config.train.num_steps = 256, 10_000
  config.train.checkpoint_every = 1000
  config.eval.rerank = False  # HashNet's results are codes-only
  return config
