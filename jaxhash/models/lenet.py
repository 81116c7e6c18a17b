"""LeNet-style backbone for 28×28 inputs (the Caffe MNIST layout: conv20-pool-conv50-pool-fc500).

Its pooling and the gradients of its convolutions are written out for XLA's CPU backend, where
this small network trains: the values and the parameters are those of ``nn.Conv`` and
``nn.max_pool``, at about 40% less time per training step than XLA's own gradients
(``benchmarks/train_throughput.py``).
"""

from __future__ import annotations

import functools
import os

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np


@jax.custom_vjp
def max_pool_2x2(x: jax.Array) -> jax.Array:
  """2×2 max pooling with stride 2 of NHWC ``x`` (even height and width).

  Same values and gradient as ``nn.max_pool(x, (2, 2), strides=(2, 2))``: the gradient goes to
  the first maximum of each window in row-major order, as XLA's select-and-scatter does, which
  XLA's CPU backend runs several times slower than this.
  """
  n, h, w, c = x.shape
  return x.reshape(n, h // 2, 2, w // 2, 2, c).max(axis=(2, 4))


def _max_pool_fwd(x):
  y = max_pool_2x2(x)
  return y, (x, y)


def _max_pool_bwd(residuals, g):
  x, y = residuals
  n, h, w, c = x.shape
  hit = x.reshape(n, h // 2, 2, w // 2, 2, c) == y[:, :, None, :, None, :]
  grads, taken = [], jnp.zeros(y.shape, bool)
  for dy, dx in ((0, 0), (0, 1), (1, 0), (1, 1)):  # window positions in row-major order
    first = hit[:, :, dy, :, dx] & ~taken
    grads.append(jnp.where(first, g, 0).astype(g.dtype))
    taken = taken | first
  rows = [jnp.stack(grads[:2], axis=3), jnp.stack(grads[2:], axis=3)]  # (n, h/2, w/2, dx, c) each
  return (jnp.stack(rows, axis=2).reshape(n, h, w, c),)


max_pool_2x2.defvjp(_max_pool_fwd, _max_pool_bwd)


@functools.lru_cache(maxsize=None)
def _patch_index(h: int, w: int, c: int, kh: int, kw: int) -> np.ndarray:
  """Flat positions of patch element (out y, out x, i, j, channel) in one (h, w, c) image with a
  one appended at position h·w·c, which ends every patch."""
  oy, ox, i, j, ch = np.meshgrid(np.arange(h - kh + 1), np.arange(w - kw + 1), np.arange(kh),
                                 np.arange(kw), np.arange(c), indexing="ij")
  window = (((oy + i) * w + ox + j) * c + ch).reshape(-1, kh * kw * c)
  one = np.full((window.shape[0], 1), h * w * c)
  return np.concatenate([window, one], axis=1).reshape(-1).astype(np.int32)


def _patches(x, kh: int, kw: int) -> jax.Array:
  """(n·oh·ow, kh·kw·c + 1): each row one output position's input window, in HWIO kernel order,
  then a one (the bias's input)."""
  n, h, w, c = x.shape
  with_one = jnp.pad(x.reshape(n, -1), ((0, 0), (0, 1)), constant_values=1)
  return jnp.take(with_one, _patch_index(h, w, c, kh, kw), axis=1).reshape(-1, kh * kw * c + 1)


@jax.custom_vjp
def conv_valid(x: jax.Array, w: jax.Array, b: jax.Array) -> jax.Array:
  """Stride-1 "VALID" convolution of NHWC ``x`` with an HWIO kernel ``w``, plus the bias ``b``.

  As matrix products. Forward: input patches × kernel, the bias entering as one more kernel row
  against a column of ones in the patches. Kernel and bias gradient: one product, patchesᵀ ×
  output gradient. Input gradient: the output gradient × each kernel offset's (in, out) matrix,
  added in at that offset (``_input_gradient``). XLA's CPU backend computes the last as a full
  convolution over a zero-padded gradient (2.25× the multiply-adds for LeNet's second layer) and
  the one-channel kernel gradient slowly. Folding the bias into the products spares a pass over
  the output to add it and one over its gradient to sum it: ``benchmarks/train_throughput.py``'s
  step is about 4% faster on a 2-core Xeon (both forms alternating in separate processes).
  """
  return _conv_fwd(x, w, b)[0]


def _conv_fwd(x, w, b):
  n, h, width, _ = x.shape
  kh, kw, _, o = w.shape
  patches = _patches(x, kh, kw)
  weights = jnp.concatenate([w.reshape(-1, o), b[None]])
  y = (patches @ _padded_columns(weights))[:, :o]
  return y.reshape(n, h - kh + 1, width - kw + 1, o), (patches, w, x.shape)


def _padded_columns(matrix):
  """``matrix`` with zero columns up to a multiple of 64 when that adds at most 30% of them.

  XLA's CPU matrix kernels run LeNet's second convolution (500 x 50 kernel) 1.6x faster with 64
  output columns on an AVX-512 Xeon, with bitwise the same 50 columns; the whole training step
  gains about 6% there (``benchmarks/train_throughput.py``). The first convolution's 20 columns
  would triple, and are left as they are.
  """
  columns = matrix.shape[1]
  padded = -(-columns // 64) * 64
  if padded == columns or padded > 1.3 * columns:
    return matrix
  return jnp.pad(matrix, ((0, 0), (0, padded - columns)))


def _conv_bwd(residuals, g):
  patches, w, x_shape = residuals
  weights_gradient = _weights_gradient(patches, g.reshape(-1, w.shape[-1]))
  return (_input_gradient(g, w, x_shape), weights_gradient[:-1].reshape(w.shape),
          weights_gradient[-1])


def _weights_gradient(patches, g2):
  """patchesᵀ × ``g2``, computed as (``g2``ᵀ × patches)ᵀ.

  XLA's CPU backend runs the product in this orientation about 1.7x faster for LeNet's second
  layer (2048 x 500 patches, 50 channels: 1.2 -> 0.7 ms on one Xeon core); the barrier keeps its
  simplifier from folding the transpose back into the slower form. The transpose of the small
  (out, kh·kw·in + 1) result is negligible.
  """
  return jax.lax.optimization_barrier(g2.T @ patches).T


def _input_gradient(g, w, x_shape):
  """The input gradient: each kernel offset's (out -> in) product of ``g``, added in at that offset.

  One matrix product gives every offset's contribution; each kernel row's contributions are summed
  by one fused pad-and-add and added into the gradient in place. That is 1 + 2·kh operations where
  a product and an in-place update per offset were 2·kh·kw (50 for LeNet's second layer), which
  ran one after another on a single core: ``benchmarks/train_throughput.py``'s jaxhash step is
  about 9% faster on a 2-core Xeon (both forms alternating in one process). One fused pad-and-add
  over all kh·kw offsets instead doubled the step's time there.
  """
  kh, kw, c, o = w.shape
  n, oh, ow, _ = g.shape
  per_offset = (g.reshape(-1, o) @ w.reshape(-1, o).T).reshape(n, oh, ow, kh, kw, c)
  dx = jnp.zeros(x_shape, g.dtype)
  for i in range(kh):
    row = sum(jnp.pad(per_offset[:, :, :, i, j], ((0, 0), (0, 0), (j, kw - 1 - j), (0, 0)))
              for j in range(kw))
    dx = dx.at[:, i:i + oh].add(row)
  return dx


conv_valid.defvjp(_conv_fwd, _conv_bwd)


class ValidConv(nn.Module):
  """``nn.Conv(features, kernel_size, padding="VALID")``'s parameters and values, by ``conv_valid``."""

  features: int
  kernel_size: tuple[int, int] = (5, 5)

  @nn.compact
  def __call__(self, x: jax.Array) -> jax.Array:
    kernel = self.param("kernel", nn.initializers.lecun_normal(),
                        (*self.kernel_size, x.shape[-1], self.features))
    bias = self.param("bias", nn.initializers.zeros_init(), (self.features,))
    return conv_valid(x, kernel, bias)


def _cpu_cores() -> int:
  return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1


class LeNet(nn.Module):
  """Returns the 500-d penultimate features, which play the role of AlexNet's fc7.

  ``parts`` splits the batch into that many independent slices, each through the same convolution
  stages, so that XLA's CPU runtime runs them on separate cores: its own threading of these small
  operations gains little. ``fc`` then runs once on the whole batch, one larger product (about 3%
  faster per training step than one per slice). The features are the same; only the order in which
  the parameter gradients are summed changes. 0 (the default) means the number of CPU cores on the
  CPU backend and 1 elsewhere.
  """

  conv_features: tuple[int, int] = (20, 50)
  fc_features: int = 500
  parts: int = 0

  @nn.compact
  def __call__(self, x: jax.Array, train: bool = False) -> jax.Array:
    del train  # no dropout or batch norm: the method's head sees deterministic features
    convs = [ValidConv(width, name=f"conv{i + 1}") for i, width in enumerate(self.conv_features)]
    fc = nn.Dense(self.fc_features, name="fc")

    def conv_stages(x):
      for conv in convs:
        x = max_pool_2x2(conv(x))
      return x.reshape((x.shape[0], -1))

    parts = self.parts or (_cpu_cores() if jax.default_backend() == "cpu" else 1)
    if parts == 1 or x.shape[0] % parts:
      x = conv_stages(x)
    else:
      stages = []
      for i, part in enumerate(jnp.split(x, parts)):
        with jax.named_scope(f"part{i}"):  # names the slices' operations in profiles
          stages.append(conv_stages(part))
      x = jnp.concatenate(stages)
    return nn.relu(fc(x))
