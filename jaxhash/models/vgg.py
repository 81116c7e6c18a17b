"""VGG-16 (configuration D, no batch norm) in torchvision's layer layout.

Names follow torchvision's ``features.N`` / ``classifier.N`` indices. Stages: ``block1`` …
``block5`` (3×3 convs with ReLUs, then a 2×2 max-pool), ``fc6`` (adaptive 7×7 pooling,
``classifier.0``, ReLU) and ``fc7`` (dropout, ``classifier.3``, ReLU); the output is fc7.
``with_classifier=True`` adds dropout and torchvision's 1000-way ``classifier.6`` and returns
``(features, logits)``.
"""

from __future__ import annotations

from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp

from jaxhash.models.layers import adaptive_avg_pool, flatten_chw
from jaxhash.models.stages import run_stages

_BLOCKS = ((64, 64), (128, 128), (256, 256, 256), (512, 512, 512), (512, 512, 512))
POOLED_SIZE = 7


def _feature_indices():
  """torchvision's ``features`` index of each conv, block by block (ReLUs and pools count too)."""
  index, blocks = 0, []
  for widths in _BLOCKS:
    blocks.append(tuple(range(index, index + 2 * len(widths), 2)))
    index += 2 * len(widths) + 1
  return tuple(blocks)


class VGG16(nn.Module):
  """``fc_width`` (4096) is the width of fc6 and fc7; smaller values serve fast tests."""

  STAGES = ("block1", "block2", "block3", "block4", "block5", "fc6", "fc7")
  CLASSIFIER = "classifier_6"

  dropout_rate: float = 0.5
  fc_width: int = 4096
  num_classes: int = 1000
  dtype: Any = jnp.float32

  @nn.compact
  def __call__(self, x: jax.Array, train: bool = False, start=0, stop=None,
               with_classifier: bool = False):
    def block(widths, indices):
      def stage(x):
        for width, index in zip(widths, indices):
          x = nn.Conv(width, (3, 3), padding=1, dtype=self.dtype, name=f"features_{index}")(x)
          x = nn.relu(x)
        return nn.max_pool(x, (2, 2), strides=(2, 2))
      return stage

    def fc(index, flatten=False):
      def stage(x):
        if flatten:
          x = flatten_chw(adaptive_avg_pool(x, POOLED_SIZE))
        else:
          x = nn.Dropout(self.dropout_rate, deterministic=not train)(x)
        return nn.relu(nn.Dense(self.fc_width, dtype=self.dtype, name=f"classifier_{index}")(x))
      return stage

    def classifier(x):
      x = nn.Dropout(self.dropout_rate, deterministic=not train)(x)
      return nn.Dense(self.num_classes, dtype=self.dtype, name=self.CLASSIFIER)(x)

    stages = [(f"block{i + 1}", block(widths, indices))
              for i, (widths, indices) in enumerate(zip(_BLOCKS, _feature_indices()))]
    stages += [("fc6", fc(0, flatten=True)), ("fc7", fc(3))]
    return run_stages(self.STAGES, stages, x, start, stop, classifier if with_classifier else None)
