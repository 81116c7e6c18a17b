"""AlexNet in torchvision's layer layout, so ImageNet weights map one to one (see ``weights.py``).

Layer names follow torchvision's ``features.N`` / ``classifier.N`` indices (``features_0`` ...).
Stages: ``conv1`` … ``conv5`` (each conv with its ReLU and max-pool), ``fc6`` (adaptive 6×6
pooling, dropout, ``classifier.1``, ReLU) and ``fc7`` (dropout, ``classifier.4``, ReLU); the output
is fc7. ``with_classifier=True`` adds torchvision's 1000-way ``classifier.6`` and returns
``(features, logits)``.
"""

from __future__ import annotations

import flax.linen as nn
import jax

from jaxhash.models.layers import TorchvisionFCNet
from jaxhash.models.stages import run_stages

# (stage, torchvision index, output channels, kernel, stride, padding, max-pool after it)
_CONVS = (
  ("conv1", 0, 64, 11, 4, 2, True),
  ("conv2", 3, 192, 5, 1, 2, True),
  ("conv3", 6, 384, 3, 1, 1, False),
  ("conv4", 8, 256, 3, 1, 1, False),
  ("conv5", 10, 256, 3, 1, 1, True),
)
POOLED_SIZE = 6


class AlexNet(TorchvisionFCNet):
  STAGES = tuple(stage for stage, *_ in _CONVS) + ("fc6", "fc7")

  @nn.compact
  def __call__(
    self, x: jax.Array, train: bool = False, start=0, stop=None, with_classifier: bool = False
  ):
    def conv(index, width, kernel, stride, pad, pool):
      def stage(x):
        x = nn.relu(
          nn.Conv(
            width,
            (kernel, kernel),
            strides=stride,
            padding=pad,
            dtype=self.dtype,
            name=f"features_{index}",
          )(x)
        )
        return nn.max_pool(x, (3, 3), strides=(2, 2)) if pool else x

      return stage

    stages = [(name, conv(*spec)) for name, *spec in _CONVS]
    stages += [
      ("fc6", self.fc(1, train, dropout=True, pooled_size=POOLED_SIZE)),
      ("fc7", self.fc(4, train, dropout=True)),
    ]
    classifier = self.classifier(train, dropout=False) if with_classifier else None
    return run_stages(self.STAGES, stages, x, start, stop, classifier)
