"""LSH: signs of random projections of the centred features (Charikar, STOC 2002; the hashing
papers' data-independent baseline, after Indyk and Motwani, STOC 1998).

bit_i = [w_i · (x - mean) >= 0] with w_i ~ N(0, I): two vectors agree on a bit with probability
1 - angle / π, so the Hamming distance estimates their angle. Nothing is learnt but the mean,
which centres the features (a backbone's pooled activations are all positive, and uncentred
projections would give nearly constant bits), as the ITQ paper's released code centres the data
for every method it compares.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

from jaxhash.methods.base import Method
from jaxhash.methods.shallow import ProjectionHead, binarize


def fit(features, labels, config, key):
  del labels  # unsupervised
  mean = features.mean(axis=0)
  projection = jax.random.normal(key, (features.shape[1], config.bits), jnp.float32)
  return {"mean": mean, "projection": projection, "offset": jnp.zeros(config.bits, jnp.float32)}, {}


def defaults() -> dict:
  return {"name": "lsh", "bits": 48}


METHOD = Method(
  name="lsh",
  make_head=lambda config, num_classes: ProjectionHead(config.bits),
  loss=None,
  binarize=binarize,
  defaults=defaults,
  fit=fit,
  supervised=False,
)
