"""What a hashing method is: a head on fc7, a loss (or a fit), a binarization, its config defaults.

Adding a method is one file that builds a :class:`Method` and registers it in ``__init__.py``.
A deep method trains its head (and the backbone's trainable stages) by gradient steps on ``loss``;
a shallow one (``jaxhash.methods.shallow``) has ``fit`` instead, which sets its head's parameters
from the frozen backbone's features in one pass (``jaxhash.run.fitting``).
"""

from __future__ import annotations

import dataclasses
from typing import Any, Callable, Mapping

import flax.linen as nn
import jax
import ml_collections

Outputs = Mapping[str, jax.Array]  # "features" (fc7), "z" (hash pre-activation), method extras


@dataclasses.dataclass(frozen=True)
class Method:
  name: str
  # (method config, number of classes) -> head module mapping fc7 features to a dict with "z".
  make_head: Callable[[ml_collections.ConfigDict, int], nn.Module]
  # (outputs, multi-hot labels, step, method config) -> (scalar loss, dict of scalar metrics);
  # None for a fitted method.
  loss: (
    Callable[[Outputs, jax.Array, jax.Array, ml_collections.ConfigDict], tuple[jax.Array, dict]]
    | None
  )
  # outputs -> bool codes (N, bits).
  binarize: Callable[[Outputs], jax.Array]
  # method section of the config, with its defaults.
  defaults: Callable[[], dict[str, Any]]
  # method config -> None, raising ValueError naming a bad ``config.method`` key.
  validate: Callable[[ml_collections.ConfigDict], None] = lambda config: None
  # whether the head outputs class ``logits`` (a classifier): ``config.eval.classifier_baseline``.
  classifies: bool = False
  # Shallow methods: (float32 features (N, D) of the training images, their multi-hot labels
  # (N, C), method config, PRNG key) -> (the head's params, dict of scalar metrics).
  fit: (
    Callable[[jax.Array, jax.Array, ml_collections.ConfigDict, jax.Array], tuple[dict, dict]] | None
  ) = None
  supervised: bool = True  # needs labels to train or fit; False: any folder of images will do


class HashModel(nn.Module):
  """Backbone -> fc7 features -> method head. Returns the head's dict plus ``features``.

  ``start``: the backbone stage the input enters at (0: images; k: the output of stage k - 1, as
  ``jaxhash.run.feature_cache`` stores it; the number of stages: the backbone's features).
  """

  backbone: nn.Module
  head: nn.Module

  @nn.compact
  def __call__(self, images: jax.Array, train: bool = False, start: int = 0) -> dict:
    if not start:
      features = self.backbone(images, train=train)
    elif start == len(type(self.backbone).STAGES):
      features = images
    else:
      features = self.backbone(images, train=train, start=start)
    return {"features": features, **self.head(features)}
