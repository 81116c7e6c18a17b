"""Encoding images into packed binary codes (and fc7 features for re-ranking)."""

from __future__ import annotations

import jax
import numpy as np

from jaxhash.data.augment import preprocess
from jaxhash.data.batches import eval_batches
from jaxhash.progress import Stage
from jaxhash.retrieval import pack_bits


def make_encoder(model, method, data_config, start: int = 0):
  """A jitted ``(variables, inputs) -> (bool codes, fc7 features)``.

  ``variables``: ``{"params", "batch_stats"}``; ``inputs``: uint8 images, or with ``start`` > 0
  the activations of the backbone's first ``start`` stages (``jaxhash.feature_cache``).
  """

  @jax.jit
  def encode(variables, inputs):
    if start:
      inputs = inputs.astype(jax.numpy.float32)
    else:
      inputs = preprocess(inputs, None, data_config, train=False)
    outputs = model.apply(variables, inputs, start=start)
    return method.binarize(outputs), outputs["features"]

  return encode


def encode_indices(encoder, variables, images, indices: np.ndarray, batch_size: int,
                   with_features: bool, sharding=None,
                   label: str = "encoding") -> tuple[np.ndarray, np.ndarray | None]:
  """Packed codes uint32 (len(indices), W) and, if asked, float32 features of the given images.

  ``sharding``: how each batch is laid out over devices (default: JAX's default device).
  A progress line named ``label`` appears when encoding takes more than a few seconds.
  """
  codes, features = [], []
  with Stage(label, len(indices)) as stage:
    for batch, valid in eval_batches(images, indices, batch_size):
      bits, feats = encoder(variables, jax.device_put(batch, sharding))
      codes.append(pack_bits(np.asarray(bits)[:valid]))
      if with_features:
        features.append(np.asarray(feats, dtype=np.float32)[:valid])
      stage.advance(valid)
  return np.concatenate(codes), (np.concatenate(features) if with_features else None)
