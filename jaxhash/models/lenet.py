"""LeNet-style backbone for 28×28 inputs (the Caffe MNIST layout: conv20-pool-conv50-pool-fc500).

Each convolution and the pooling after it are one operation, ``conv_pool``, written out with its
gradient for XLA's CPU backend, where this small network trains: the values and the parameters are
those of ``nn.Conv`` and ``nn.max_pool``, in a third of the time per training step that XLA takes
for those (``benchmarks/train_throughput.py``'s step: 8.2 against 24.8 ms on a 2-core Xeon).
"""

from __future__ import annotations

import functools

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

from jaxhash.arith import round_up
from jaxhash.environment import cpu_cores
from jaxhash.errors import UsageError


@functools.lru_cache(maxsize=None)
def _patch_index(h: int, w: int, c: int, kh: int, kw: int) -> np.ndarray:
  """Flat positions, in one (h, w, c) image with a one appended at position h·w·c, of each output
  position's input window (HWIO kernel order) followed by that one.

  Output position (2·py + dy, 2·px + dx) is row ((2·dy + dx)·ph + py)·pw + px: the four members of
  each 2×2 pooling window lie in four contiguous blocks, so pooling is a maximum over blocks.
  """
  oh, ow = h - kh + 1, w - kw + 1
  oy, ox, i, j, ch = np.meshgrid(
    np.arange(oh), np.arange(ow), np.arange(kh), np.arange(kw), np.arange(c), indexing="ij"
  )
  window = (((oy + i) * w + ox + j) * c + ch).reshape(oh, ow, kh * kw * c)
  rows = np.concatenate([window, np.full((oh, ow, 1), h * w * c)], axis=2)
  blocks = rows.reshape(oh // 2, 2, ow // 2, 2, -1).transpose(1, 3, 0, 2, 4)
  return np.ascontiguousarray(blocks).reshape(-1).astype(np.int32)


def _patches(x, kh: int, kw: int) -> jax.Array:
  """(n·oh·ow, kh·kw·c + 1): each image's rows in ``_patch_index``'s order, then the next image's.

  The positions are in bounds by construction; ``mode="clip"`` spares the per-element bounds
  select of ``jnp.take``'s default mode (the step ~1% faster on a 2-core Xeon).
  """
  n, h, w, c = x.shape
  with_one = jnp.pad(x.reshape(n, -1), ((0, 0), (0, 1)), constant_values=1)
  return jnp.take(with_one, _patch_index(h, w, c, kh, kw), axis=1, mode="clip").reshape(
    -1, kh * kw * c + 1
  )


@jax.custom_vjp
def conv_pool(x: jax.Array, w: jax.Array, b: jax.Array) -> jax.Array:
  """``nn.max_pool(conv(x) + b, (2, 2), strides=(2, 2))`` for a stride-1 "VALID" convolution of
  NHWC ``x`` with an HWIO kernel ``w``: the convolution's output height and width must be even.

  As matrix products. Forward: input patches × kernel, the bias entering as one more kernel row
  against a column of ones in the patches; the patch rows are ordered so that the pooling is a
  maximum over four contiguous blocks of the product. Backward: the gradient goes to the first
  maximum of each window in row-major order, as XLA's select-and-scatter does; kernel and bias
  gradient are one product, patchesᵀ × output gradient; the input gradient is the output gradient
  × each kernel offset's (in, out) matrix, added in at that offset (``_input_gradient``).

  XLA's CPU backend runs its own convolution gradients and select-and-scatter several times slower.
  Fusing the pooling into the convolution's row order (rather than a max over the interleaved
  (n, h/2, 2, w/2, 2, c) view) makes ``benchmarks/train_throughput.py``'s step about 4% faster on
  a 2-core Xeon (both forms alternating in separate processes).
  """
  return _conv_pool_fwd(x, w, b)[0]


def _check_even(x_shape, w_shape):
  n, h, w, c = x_shape
  kh, kw = w_shape[:2]
  oh, ow = h - kh + 1, w - kw + 1
  if oh < 2 or ow < 2 or oh % 2 or ow % 2:
    raise ValueError(
      f"conv_pool: a {kh}×{kw} convolution of {h}×{w} inputs gives {oh}×{ow}, "
      "which 2×2 pooling cannot halve; give inputs whose output sides are even."
    )


def _conv_pool_fwd(x, w, b):
  _check_even(x.shape, w.shape)
  n, h, width, _ = x.shape
  kh, kw, _, o = w.shape
  ph, pw = (h - kh + 1) // 2, (width - kw + 1) // 2
  patches = _patches(x, kh, kw)
  weights = jnp.concatenate([w.reshape(-1, o), b[None]])
  y = (patches @ _padded_columns(weights)).reshape(n, 4, ph * pw, -1)  # (image, block, row, out)
  # A reduction, which XLA does not fuse into the next layer's gather (a maximum of four slices
  # was fused there and recomputed for every patch element: the step 35% slower).
  pooled = y[..., :o].max(axis=1)
  return pooled.reshape(n, ph, pw, o), (patches, w, x.shape, y, pooled)


def _padded_columns(matrix):
  """``matrix`` with zero columns up to a multiple of 64 when that adds at most 30% of them.

  XLA's CPU matrix kernels run LeNet's second convolution (500 x 50 kernel) 1.6x faster with 64
  output columns on an AVX-512 Xeon, with bitwise the same 50 columns; the whole training step
  gains about 6% there (``benchmarks/train_throughput.py``). The first convolution's 20 columns
  would triple, and are left as they are.
  """
  columns = matrix.shape[1]
  padded = round_up(columns, 64)
  if padded == columns or padded > 1.3 * columns:
    return matrix
  return jnp.pad(matrix, ((0, 0), (0, padded - columns)))


def _conv_pool_bwd(residuals, g):
  patches, w, x_shape, y, pooled = residuals
  n, ph, pw, o = g.shape
  g = g.reshape(n, ph * pw, o)
  blocks, taken = [], jnp.zeros(g.shape, bool)
  for k in range(4):  # window members in row-major order: the first maximum takes the gradient
    first = (y[:, k, :, :o] == pooled) & ~taken
    blocks.append(jnp.where(first, g, 0).astype(g.dtype))
    taken = taken | first
  g_rows = jnp.stack(blocks, axis=1)  # the convolution's output gradient, in the patches' order
  weights_gradient = _weights_gradient(patches, g_rows.reshape(-1, o))
  g_image = g_rows.reshape(n, 2, 2, ph, pw, o).transpose(0, 3, 1, 4, 2, 5)
  return (
    _input_gradient(g_image.reshape(n, 2 * ph, 2 * pw, o), w, x_shape),
    weights_gradient[:-1].reshape(w.shape),
    weights_gradient[-1],
  )


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
  over all kh·kw offsets instead doubled the step's time there. (XLA drops it for the first layer,
  whose input needs no gradient.)
  """
  kh, kw, c, o = w.shape
  n, oh, ow, _ = g.shape
  per_offset = (g.reshape(-1, o) @ w.reshape(-1, o).T).reshape(n, oh, ow, kh, kw, c)
  dx = jnp.zeros(x_shape, g.dtype)
  for i in range(kh):
    row = sum(
      jnp.pad(per_offset[:, :, :, i, j], ((0, 0), (0, 0), (j, kw - 1 - j), (0, 0)))
      for j in range(kw)
    )
    dx = dx.at[:, i : i + oh].add(row)
  return dx


conv_pool.defvjp(_conv_pool_fwd, _conv_pool_bwd)


class ConvPool(nn.Module):
  """``nn.Conv(features, kernel_size, padding="VALID")`` then 2×2 max pooling, by ``conv_pool``:
  nn.Conv's parameter names, shapes and initial values."""

  features: int
  kernel_size: tuple[int, int] = (5, 5)

  @nn.compact
  def __call__(self, x: jax.Array) -> jax.Array:
    kernel = self.param(
      "kernel", nn.initializers.lecun_normal(), (*self.kernel_size, x.shape[-1], self.features)
    )
    bias = self.param("bias", nn.initializers.zeros_init(), (self.features,))
    return conv_pool(x, kernel, bias)


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
    self._check_sides(*x.shape[1:3])
    convs = [ConvPool(width, name=f"conv{i + 1}") for i, width in enumerate(self.conv_features)]
    fc = nn.Dense(self.fc_features, name="fc")

    def conv_stages(x):
      for conv in convs:
        x = conv(x)
      return x.reshape((x.shape[0], -1))

    parts = self.parts or (cpu_cores() if jax.default_backend() == "cpu" else 1)
    if parts == 1 or x.shape[0] % parts:
      x = conv_stages(x)
    else:
      stages = []
      for i, part in enumerate(jnp.split(x, parts)):
        with jax.named_scope(f"part{i}"):  # names the slices' operations in profiles
          stages.append(conv_stages(part))
      x = jnp.concatenate(stages)
    return nn.relu(fc(x))

  def _check_sides(self, h: int, w: int) -> None:
    """Each 5×5 convolution's output must have even sides of at least 2 for its 2×2 pooling."""
    for side in (h, w):
      for _ in self.conv_features:
        if side - 4 < 2 or side % 2:
          raise UsageError(
            f"LeNet cannot take {h}×{w} images: each 5×5 convolution must leave even sides for "
            "its 2×2 pooling, which sides of 28 or 32 (any multiple of 4 from 16) do; set "
            "data.crop or data.image_size."
          )
        side = (side - 4) // 2
