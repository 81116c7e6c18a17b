"""DLBHC (Lin, Yang, Hsiao, Chen, CVPR 2015 Workshops): a sigmoid latent layer learns the codes.

A latent layer H of ``bits`` sigmoid units sits between fc7 and the classifier, and the whole
network is trained with softmax cross-entropy only (point-wise: no pairs, no code-specific loss);
the code is H > 0.5. Retrieval can re-rank a Hamming candidate pool by fc7 distance
(``jaxhash.rerank``).
"""

from __future__ import annotations

import flax.linen as nn
import jax
import jax.numpy as jnp
import optax

from jaxhash.methods.base import Method


class DLBHCHead(nn.Module):
  bits: int
  num_classes: int

  @nn.compact
  def __call__(self, features: jax.Array) -> dict:
    z = nn.Dense(self.bits, name="latent")(features)
    latent = nn.sigmoid(z)
    logits = nn.Dense(self.num_classes, name="classifier")(latent)
    return {"z": z, "latent": latent, "logits": logits}


def classification_loss(outputs, labels, step, config):
  """Softmax cross-entropy against the label distribution (one-hot for single-label data)."""
  del step, config
  logits = outputs["logits"]
  labels = labels.astype(jnp.float32)
  targets = labels / jnp.maximum(labels.sum(axis=-1, keepdims=True), 1.0)
  loss = optax.softmax_cross_entropy(logits, targets).mean()
  hit = jnp.take_along_axis(labels, jnp.argmax(logits, axis=-1)[:, None], axis=-1)[:, 0]
  return loss, {"accuracy": hit.mean()}


def binarize(outputs) -> jax.Array:
  return outputs["latent"] > 0.5


def defaults() -> dict:
  return {"name": "dlbhc", "bits": 48}


METHOD = Method(
  name="dlbhc",
  make_head=lambda config, num_classes: DLBHCHead(bits=config.bits, num_classes=num_classes),
  loss=classification_loss,
  binarize=binarize,
  defaults=defaults,
  classifies=True,
)
