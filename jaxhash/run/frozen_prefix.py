"""The frozen prefix's activations for an experiment: the key they are cached under, and the cache
built (or reused) and read.

Training (``jaxhash.run.trainer``) starts from them instead of images, a shallow method is fitted
on them (``jaxhash.run.fitting``), and evaluation encodes from them
(``jaxhash.run.run_evaluation``). The cache itself, its shards and their checks, is
``jaxhash.run.feature_cache``.
"""

from __future__ import annotations

import functools
import os

import jax
import jax.numpy as jnp
import numpy as np

from jaxhash import digests, distributed
from jaxhash.data.augment import preprocess
from jaxhash.run import feature_cache
from jaxhash.run.experiment import Experiment
from jaxhash.run.model_state import trainable_mask
from jaxhash.run.state import TrainState


def _identity(tree) -> str:
  """SHA-256 of arrays' paths, shapes, dtypes and bytes, as the cache key records images, flips
  and the prefix's weights."""
  return digests.tree_sha256(tree, lambda path, leaf: f"{path}{leaf.shape}{leaf.dtype}")


def cached_features(
  exp: Experiment, workdir: str, state: TrainState, stream, on_shard=None
) -> tuple[np.ndarray, np.ndarray]:
  """The frozen prefix's activations (every image; the flipped training images when the run
  flips), built or reused.

  Kept in ``data.feature_cache_dir`` (default ``<workdir>/features``) under a key of everything
  they depend on, so runs that share the prefix (two methods, several code lengths) share the cache.
  With several processes, process 0 builds it on its own devices and every process reads it.
  """
  config, backbone = exp.config, exp.model.backbone
  stop = exp.frozen_stages if exp.frozen_stages < len(type(backbone).STAGES) else None
  mask = trainable_mask(exp.config, exp.model, state.params)["backbone"]
  frozen = {
    name: tree
    for name, tree in state.params["backbone"].items()
    if not jax.tree.leaves(mask[name])[0]
  }
  stats = state.batch_stats.get("backbone", {})
  images = exp.dataset.images
  flipped = exp.split.train if config.data.flip else np.zeros(0, np.int64)
  fields = {
    "dataset": exp.dataset.name,
    "num_images": len(exp.dataset.labels),
    "image_shape": list(exp.dataset.image_shape),
    "images": (
      _identity(images)
      if isinstance(images, np.ndarray)
      else _identity(list(getattr(images, "paths", [])))
    ),
    "flipped": _identity(flipped),
    "input": {k: config.data[k] for k in ("image_size", "crop")}
    | {"mean": list(config.data.mean), "std": list(config.data.std)},
    "backbone": config.model.backbone,
    "dtype": config.model.dtype,
    "frozen_stages": exp.frozen_stages,
    "weights": _identity(
      {"params": frozen, "batch_stats": {k: v for k, v in stats.items() if k in frozen}}
    ),
  }
  directory = config.data.feature_cache_dir or os.path.join(workdir, "features")
  cache = feature_cache.FeatureCache(
    directory, fields, len(exp.dataset.labels), flipped, batch_size=config.eval.batch_size
  )

  @jax.jit
  def prefix(variables, images, flip):
    x = preprocess(images, None, config.data, train=False)
    x = jnp.where(flip[:, None, None, None], x[:, :, ::-1], x)
    return backbone.apply(variables, x, train=False, stop=stop)

  if distributed.is_writer():
    variables = {"params": state.params["backbone"], "batch_stats": stats}
    variables = jax.device_put(jax.device_get(variables), jax.local_devices()[0])
    cache.build(functools.partial(prefix, variables), images, stream, on_shard)
  distributed.barrier("feature-cache")
  return cache.load()
