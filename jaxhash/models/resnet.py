"""ResNet-18 and ResNet-50 in torchvision's layout (v1.5: the stride of a bottleneck is in its 3×3).

Names follow torchvision's ``state_dict`` with the index of a ``Sequential`` joined by ``_``:
``conv1``, ``bn1``, ``layer1_0`` (``conv1``, ``bn1``, ``conv2``, ``bn2``[, ``conv3``, ``bn3``],
``downsample_0``, ``downsample_1``) … ``layer4_K``, and ``fc`` for the 1000-way classifier.
Stages: ``stem`` (7×7 conv, batch norm, ReLU, 3×3 max-pool), ``layer1`` … ``layer4``; ``layer4``
ends in global average pooling, so the output is the pooled 512 (ResNet-18) or 2048 (ResNet-50)
vector; ``with_classifier=True`` adds ``fc`` and returns ``(features, logits)``. Batch norm as
torchvision: eps 1e-5, PyTorch momentum 0.1 (Flax 0.9).
"""

from __future__ import annotations

import functools
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp

from jaxhash.models.layers import PointwiseConv, batch_norm
from jaxhash.models.stages import run_stages

_WIDTHS = (64, 128, 256, 512)
_MOMENTUM, _EPSILON = 0.9, 1e-5


class _Block(nn.Module):
  """Basic block (two 3×3 convs) or, with ``bottleneck``, 1×1 → 3×3 → 1×1 with 4× expansion."""

  width: int
  stride: int
  bottleneck: bool
  downsample: bool
  train: bool
  frozen: bool
  dtype: Any

  @nn.compact
  def __call__(self, x):
    def conv(width, kernel, stride, pad, name):
      if kernel == 1:  # unpadded, as every 1×1 convolution here
        return PointwiseConv(width, self.dtype, stride, name=name)
      return nn.Conv(
        width,
        (kernel, kernel),
        strides=stride,
        padding=pad,
        use_bias=False,
        dtype=self.dtype,
        name=name,
      )

    norm = functools.partial(
      batch_norm,
      train=self.train,
      frozen=self.frozen,
      momentum=_MOMENTUM,
      epsilon=_EPSILON,
      dtype=self.dtype,
    )
    if self.bottleneck:
      layers = ((self.width, 1, 1, 0), (self.width, 3, self.stride, 1), (4 * self.width, 1, 1, 0))
    else:
      layers = ((self.width, 3, self.stride, 1), (self.width, 3, 1, 1))
    y = x
    for i, (width, kernel, stride, pad) in enumerate(layers, start=1):
      y = conv(width, kernel, stride, pad, f"conv{i}")(y)
      y = norm(f"bn{i}")(y)
      if i < len(layers):
        y = nn.relu(y)
    if self.downsample:
      x = conv(layers[-1][0], 1, self.stride, 0, "downsample_0")(x)
      x = norm("downsample_1")(x)
    return nn.relu(y + x)


class ResNet(nn.Module):
  """A torchvision ResNet; use :class:`ResNet18` or :class:`ResNet50`."""

  STAGES = ("stem", "layer1", "layer2", "layer3", "layer4")
  CLASSIFIER = "fc"

  stage_sizes: tuple[int, ...] = (2, 2, 2, 2)
  bottleneck: bool = False
  freeze_batch_norm: bool = False
  num_classes: int = 1000
  dtype: Any = jnp.float32

  @nn.compact
  def __call__(
    self, x: jax.Array, train: bool = False, start=0, stop=None, with_classifier: bool = False
  ):
    expansion = 4 if self.bottleneck else 1

    def stem(x):
      x = nn.Conv(64, (7, 7), strides=2, padding=3, use_bias=False, dtype=self.dtype, name="conv1")(
        x
      )
      x = batch_norm("bn1", train, self.freeze_batch_norm, _MOMENTUM, _EPSILON, self.dtype)(x)
      return nn.max_pool(nn.relu(x), (3, 3), strides=(2, 2), padding=((1, 1), (1, 1)))

    def layer(i):
      def stage(x):
        for j in range(self.stage_sizes[i]):
          stride = 2 if i > 0 and j == 0 else 1
          downsample = j == 0 and (stride != 1 or x.shape[-1] != _WIDTHS[i] * expansion)
          x = _Block(
            _WIDTHS[i],
            stride,
            self.bottleneck,
            downsample,
            train,
            self.freeze_batch_norm,
            self.dtype,
            name=f"layer{i + 1}_{j}",
          )(x)
        return jnp.mean(x, axis=(1, 2)) if i == len(_WIDTHS) - 1 else x

      return stage

    def classifier(x):
      return nn.Dense(self.num_classes, dtype=self.dtype, name=self.CLASSIFIER)(x)

    stages = [("stem", stem)] + [(f"layer{i + 1}", layer(i)) for i in range(len(_WIDTHS))]
    return run_stages(self.STAGES, stages, x, start, stop, classifier if with_classifier else None)


class ResNet18(ResNet):
  stage_sizes: tuple[int, ...] = (2, 2, 2, 2)
  bottleneck: bool = False


class ResNet50(ResNet):
  stage_sizes: tuple[int, ...] = (3, 4, 6, 3)
  bottleneck: bool = True
