"""Encoding images into packed binary codes (and fc7 features for re-ranking)."""

from __future__ import annotations

import jax
import numpy as np

from jaxhash import parallel
from jaxhash.data.augment import preprocess
from jaxhash.data.batches import eval_rows
from jaxhash.evaluation import classifier as classifier_baseline
from jaxhash.progress import Stage
from jaxhash.retrieval import pack_bits


def make_encoder(model, method, data_config, start: int = 0, classifier: bool = False):
  """A jitted ``(variables, inputs) -> (bool codes, fc7 features)``.

  ``variables``: ``{"params", "batch_stats"}``; ``inputs``: uint8 images, or with ``start`` > 0
  the activations of the backbone's first ``start`` stages (``jaxhash.run.feature_cache``).
  ``classifier``: the codes are a pair, the method's and the one-hot code of the predicted class
  (``jaxhash.evaluation.classifier``, from the head's ``logits``), both from one forward pass.
  """

  @jax.jit
  def encode(variables, inputs):
    if start:
      inputs = inputs.astype(jax.numpy.float32)
    else:
      inputs = preprocess(inputs, None, data_config, train=False)
    outputs = model.apply(variables, inputs, start=start)
    codes = method.binarize(outputs)
    if classifier:
      codes = (codes, classifier_baseline.codes(outputs["logits"]))
    return codes, outputs["features"]

  return encode


def encode_indices(
  encoder,
  variables,
  images,
  indices: np.ndarray,
  batch_size: int,
  with_features: bool,
  sharding=None,
  label: str = "encoding",
  stream=None,
) -> tuple[np.ndarray, np.ndarray | None]:
  """Packed codes uint32 (len(indices), W) and, if asked, float32 features of the given images.

  An encoder that gives several codes (``make_encoder(classifier=True)``) gets packed codes in the
  same structure (a pair).

  ``sharding``: how each batch is laid out over devices (default: JAX's default device); over the
  devices of several processes, each process reads only its rows of each batch, and every
  process gets all the codes. A progress line named ``label`` appears on ``stream`` (default
  stderr) when encoding takes more than a few seconds.
  """
  codes, features = [], []
  with Stage(label, len(indices), stream=stream) as stage:
    for rows, valid in eval_rows(indices, batch_size):
      if sharding is None:
        batch = images[rows]
      else:
        batch = parallel.global_batch(
          images[rows[parallel.local_rows(sharding, rows.shape)]], sharding, batch_size
        )
      bits, feats = encoder(variables, batch)
      codes.append(jax.tree.map(lambda b: pack_bits(parallel.to_host(b)[:valid]), bits))
      if with_features:
        features.append(parallel.to_host(feats).astype(np.float32)[:valid])
      stage.advance(valid)
  words = jax.tree.map(lambda *parts: np.concatenate(parts), *codes)
  return words, (np.concatenate(features) if with_features else None)
