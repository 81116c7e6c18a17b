"""AlexNet in torchvision's layer layout, so ImageNet weights map one to one (see ``weights.py``).

Layer names follow torchvision's ``features.N`` / ``classifier.N`` indices (``features_0`` ...),
and the output is fc7 (``classifier.4`` after its ReLU); torchvision's last layer, the 1000-way
classifier, is replaced by each method's head.
"""

from __future__ import annotations

import flax.linen as nn
import jax
import jax.numpy as jnp

# (torchvision index, output channels, kernel, stride, padding, max-pool after it)
_CONVS = (
    (0, 64, 11, 4, 2, True),
    (3, 192, 5, 1, 2, True),
    (6, 384, 3, 1, 1, False),
    (8, 256, 3, 1, 1, False),
    (10, 256, 3, 1, 1, True),
)
POOLED_SIZE = 6


def adaptive_avg_pool(x: jax.Array, size: int) -> jax.Array:
  """torch's AdaptiveAvgPool2d on NHWC: bin i spans [floor(i*H/size), ceil((i+1)*H/size))."""

  def pool_axis(x, axis):
    n = x.shape[axis]
    bins = [
        jnp.mean(jax.lax.slice_in_dim(x, (i * n) // size, -(-((i + 1) * n) // size), axis=axis),
                 axis=axis, keepdims=True)
        for i in range(size)
    ]
    return jnp.concatenate(bins, axis=axis)

  return pool_axis(pool_axis(x, 1), 2)


class AlexNet(nn.Module):
  dropout_rate: float = 0.5

  @nn.compact
  def __call__(self, x: jax.Array, train: bool = False) -> jax.Array:
    for index, width, kernel, stride, pad, pool in _CONVS:
      x = nn.Conv(width, (kernel, kernel), strides=(stride, stride), padding=((pad, pad), (pad, pad)),
                  name=f"features_{index}")(x)
      x = nn.relu(x)
      if pool:
        x = nn.max_pool(x, (3, 3), strides=(2, 2))
    x = adaptive_avg_pool(x, POOLED_SIZE)
    # torchvision flattens (C, H, W); keep that order so imported fc6 weights need no permutation.
    x = jnp.transpose(x, (0, 3, 1, 2)).reshape((x.shape[0], -1))
    for index in (1, 4):
      x = nn.Dropout(self.dropout_rate, deterministic=not train)(x)
      x = nn.relu(nn.Dense(4096, name=f"classifier_{index}")(x))
    return x
