"""Layers the torchvision-layout backbones share: torch's adaptive pooling, and batch norm.

Batch norm is ``flax.linen.BatchNorm`` with its running statistics in the ``batch_stats``
collection. PyTorch's ``momentum`` m is Flax's ``1 - m`` (torchvision's 0.1 is 0.9 here). One
difference remains: the running variance is updated with the biased batch variance here and with
the unbiased one in PyTorch, so after one training step they differ by ``m * var * 1/(n - 1)``
(n = batch × height × width), which the parity tests account for.
"""

from __future__ import annotations

import flax.linen as nn
import jax
import jax.numpy as jnp


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


def flatten_chw(x: jax.Array) -> jax.Array:
  """Flattens NHWC in torch's (C, H, W) order, so imported fc6 weights need no permutation."""
  return jnp.transpose(x, (0, 3, 1, 2)).reshape((x.shape[0], -1))


def batch_norm(name: str, train: bool, frozen: bool, momentum: float, epsilon: float, dtype):
  """A BatchNorm that uses batch statistics (and updates the running ones) only when training
  and not ``frozen``; frozen, it normalises with the running averages and updates nothing."""
  return nn.BatchNorm(use_running_average=not train or frozen, momentum=momentum, epsilon=epsilon,
                      dtype=dtype, name=name)
