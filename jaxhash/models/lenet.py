"""LeNet-style backbone for 28×28 inputs (the Caffe MNIST layout: conv20-pool-conv50-pool-fc500)."""

from __future__ import annotations

import flax.linen as nn
import jax


class LeNet(nn.Module):
  """Returns the 500-d penultimate features, which play the role of AlexNet's fc7."""

  conv_features: tuple[int, int] = (20, 50)
  fc_features: int = 500

  @nn.compact
  def __call__(self, x: jax.Array, train: bool = False) -> jax.Array:
    del train  # no dropout or batch norm: the method's head sees deterministic features
    for i, width in enumerate(self.conv_features):
      x = nn.Conv(width, (5, 5), padding="VALID", name=f"conv{i + 1}")(x)
      x = nn.max_pool(x, (2, 2), strides=(2, 2))
    x = x.reshape((x.shape[0], -1))
    return nn.relu(nn.Dense(self.fc_features, name="fc")(x))
