"""VGG-16 (configuration D, no batch norm) in torchvision's layer layout.

Names follow torchvision's ``features.N`` / ``classifier.N`` indices. Stages: ``block1`` …
``block5`` (3×3 convs with ReLUs, then a 2×2 max-pool), ``fc6`` (adaptive 7×7 pooling,
``classifier.0``, ReLU) and ``fc7`` (dropout, ``classifier.3``, ReLU); the output is fc7.
``with_classifier=True`` adds dropout and torchvision's 1000-way ``classifier.6`` and returns
``(features, logits)``.
"""

from __future__ import annotations

import flax.linen as nn
import jax

from jaxhash.models.layers import TorchvisionFCNet
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


class VGG16(TorchvisionFCNet):
  STAGES = ("block1", "block2", "block3", "block4", "block5", "fc6", "fc7")

  @nn.compact
  def __call__(
    self, x: jax.Array, train: bool = False, start=0, stop=None, with_classifier: bool = False
  ):
    def block(widths, indices):
      def stage(x):
        for width, index in zip(widths, indices):
          x = nn.Conv(width, (3, 3), padding=1, dtype=self.dtype, name=f"features_{index}")(x)
          x = nn.relu(x)
        return nn.max_pool(x, (2, 2), strides=(2, 2))

      return stage

    stages = [
      (f"block{i + 1}", block(widths, indices))
      for i, (widths, indices) in enumerate(zip(_BLOCKS, _feature_indices()))
    ]
    stages += [
      ("fc6", self.fc(0, train, dropout=False, pooled_size=POOLED_SIZE)),
      ("fc7", self.fc(3, train, dropout=True)),
    ]
    classifier = self.classifier(train, dropout=True) if with_classifier else None
    return run_stages(self.STAGES, stages, x, start, stop, classifier)
