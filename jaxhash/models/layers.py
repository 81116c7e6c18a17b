"""Layers the pretrained backbones share: torch's adaptive pooling, batch norm, depthwise conv,
and the fc6/fc7/classifier layers of torchvision's AlexNet and VGG.

Batch norm is ``flax.linen.BatchNorm`` with its running statistics in the ``batch_stats``
collection. PyTorch's ``momentum`` m is Flax's ``1 - m`` (torchvision's 0.1 is 0.9 here). One
difference remains: the running variance is updated with the biased batch variance here and with
the unbiased one in PyTorch, so after one training step they differ by ``m * var * 1/(n - 1)``
(n = batch × height × width), which the parity tests account for.
"""

from __future__ import annotations

import functools
import math
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

from jaxhash.arith import ceil_div
from jaxhash.errors import UsageError


def adaptive_avg_pool(x: jax.Array, size: int) -> jax.Array:
  """torch's AdaptiveAvgPool2d on NHWC: bin i spans [floor(i*H/size), ceil((i+1)*H/size))."""

  def pool_axis(x, axis):
    n = x.shape[axis]
    bins = [
      jnp.mean(
        jax.lax.slice_in_dim(x, (i * n) // size, ceil_div((i + 1) * n, size), axis=axis),
        axis=axis,
        keepdims=True,
      )
      for i in range(size)
    ]
    return jnp.concatenate(bins, axis=axis)

  return pool_axis(pool_axis(x, 1), 2)


def flatten_chw(x: jax.Array) -> jax.Array:
  """Flattens NHWC in torch's (C, H, W) order, so imported fc6 weights need no permutation."""
  return jnp.transpose(x, (0, 3, 1, 2)).reshape((x.shape[0], -1))


def batch_norm(
  name: str,
  train: bool,
  frozen: bool,
  momentum: float,
  epsilon: float,
  dtype,
  relu6: bool = False,
  impl: str = "auto",
):
  """A BatchNorm that uses batch statistics (and updates the running ones) only when training
  and not ``frozen``; frozen, it normalises with the running averages and updates nothing.
  ``relu6``: ReLU6 follows it, fused into it where :class:`BatchNorm` fuses."""
  return BatchNorm(
    use_running_average=not train or frozen,
    momentum=momentum,
    epsilon=epsilon,
    dtype=dtype,
    relu6=relu6,
    impl=impl,
    name=name,
  )


class BatchNorm(nn.BatchNorm):
  """``nn.BatchNorm`` (the same variables, statistics and outputs), optionally followed by ReLU6.

  Training in float32 on the CPU (``impl`` ``"auto"`` or ``"fused"``), the normalisation, the
  ReLU6 and their gradient are one custom-gradient function (:func:`_train_normalize`): its
  backward pass reduces the gradient once and writes the input gradient once, where XLA's CPU
  backend ran the autodiff of the two as separate reductions and several elementwise passes.
  """

  relu6: bool = False
  impl: str = "auto"

  @nn.compact
  def __call__(self, x, use_running_average: bool | None = None):
    frozen = nn.merge_param("use_running_average", self.use_running_average, use_running_average)
    fused = _implementation(self.impl, "fused", "flax", "batch norm") == "fused"
    if (
      frozen
      or not fused
      or self.is_initializing()
      or x.dtype != jnp.float32
      or self.dtype not in (None, jnp.float32)
      or self.axis != -1
      or self.axis_name is not None
      or not (self.use_scale and self.use_bias and self.use_fast_variance)
    ):
      y = super().__call__(x, use_running_average)
      return nn.relu6(y) if self.relu6 else y
    channels = (x.shape[-1],)
    scale = self.param("scale", self.scale_init, channels, self.param_dtype)
    bias = self.param("bias", self.bias_init, channels, self.param_dtype)
    mean_average = self.variable("batch_stats", "mean", jnp.zeros, channels, jnp.float32)
    var_average = self.variable("batch_stats", "var", jnp.ones, channels, jnp.float32)
    y, mean, var = _train_normalize(x, scale, bias, self.epsilon, self.relu6)
    mean_average.value = self.momentum * mean_average.value + (1 - self.momentum) * mean
    var_average.value = self.momentum * var_average.value + (1 - self.momentum) * var
    return y


def _train_forward(x, scale, bias, epsilon: float, relu6: bool):
  """``(y, mean, var, z)``: flax's batch statistics (``E[x²] - E[x]²``, at least 0) and
  normalisation in its order of operations; ``y`` is ReLU6 of the normalised ``z`` if ``relu6``."""
  axes = tuple(range(x.ndim - 1))
  mean, mean2 = jnp.mean(x, axes), jnp.mean(jax.lax.square(x), axes)
  var = jnp.maximum(0.0, mean2 - jax.lax.square(mean))
  z = (x - mean) * (jax.lax.rsqrt(var + epsilon) * scale) + bias
  return (jnp.clip(z, 0.0, 6.0) if relu6 else z), mean, var, z


@functools.partial(jax.custom_vjp, nondiff_argnums=(3, 4))
def _train_normalize(x, scale, bias, epsilon: float, relu6: bool):
  """Batch norm in training, then ReLU6 if ``relu6``: ``(y, batch mean, batch variance)``."""
  return _train_forward(x, scale, bias, epsilon, relu6)[:3]


def _train_normalize_fwd(x, scale, bias, epsilon, relu6):
  y, mean, var, _ = _train_forward(x, scale, bias, epsilon, relu6)
  return (y, mean, var), (x, scale, bias, mean, var)


def _train_normalize_bwd(epsilon, relu6, residuals, cotangents):
  """The batch-norm gradient through ReLU6's mask (0 at 0 and 6, as ``jax.nn.relu6``), plus the
  statistics' own cotangents (zero in a training step: the running averages are not
  differentiated)."""
  x, scale, bias, mean, var = residuals
  g, g_mean, g_var = cotangents
  axes, count = tuple(range(x.ndim - 1)), x.size // x.shape[-1]
  rstd = jax.lax.rsqrt(var + epsilon)
  centred = x - mean
  if relu6:
    z = centred * (rstd * scale) + bias  # as the forward computed it: the same mask
    g = jnp.where((z > 0) & (z < 6), g, 0.0)
  normalised = centred * rstd
  g_bias, g_scale = jnp.sum(g, axes), jnp.sum(g * normalised, axes)
  g_x = (
    (scale * rstd) * (g - g_bias / count - normalised * (g_scale / count))
    + g_mean / count
    + centred * (g_var * (2.0 / count))
  )
  return g_x, g_scale, g_bias


_train_normalize.defvjp(_train_normalize_fwd, _train_normalize_bwd)


def _same_padding(size: int, kernel: int, stride: int) -> tuple[tuple[int, int], int]:
  """TensorFlow "SAME": output ceil(size / stride); an odd pixel of padding goes at the end."""
  out = ceil_div(size, stride)
  total = max((out - 1) * stride + kernel - size, 0)
  return (total // 2, total - total // 2), out


def _taps(padded: jax.Array, k: int, stride: int, out_h: int, out_w: int):
  """(i, j, the strided window of ``padded`` that kernel tap (i, j) multiplies), for every tap."""
  n, _, _, c = padded.shape
  for i in range(k):
    for j in range(k):
      yield (
        i,
        j,
        jax.lax.slice(
          padded,
          (0, i, j, 0),
          (n, i + stride * (out_h - 1) + 1, j + stride * (out_w - 1) + 1, c),
          (1, stride, stride, 1),
        ),
      )


def _pad_same(x: jax.Array, k: int, stride: int) -> tuple[jax.Array, int, int]:
  (pad_h, out_h), (pad_w, out_w) = (_same_padding(x.shape[axis], k, stride) for axis in (1, 2))
  return jnp.pad(x, ((0, 0), pad_h, pad_w, (0, 0))), out_h, out_w


def _shifted_sum(x: jax.Array, kernel: jax.Array, stride: int) -> jax.Array:
  k = kernel.shape[0]
  padded, out_h, out_w = _pad_same(x, k, stride)
  out = None
  for i, j, window in _taps(padded, k, stride, out_h, out_w):
    out = window * kernel[i, j, 0] if out is None else out + window * kernel[i, j, 0]
  return out


@functools.partial(jax.custom_vjp, nondiff_argnums=(2,))
def shifted_depthwise(x: jax.Array, kernel: jax.Array, stride: int) -> jax.Array:
  """Depthwise conv as the sum over the k² kernel taps of a strided window times a per-channel
  weight: XLA fuses it into one loop over the output, vectorised along the channels.

  Both gradients are written out (XLA's CPU backend runs JAX's own transposes slowly):
  :func:`_input_gradient` is the same kind of loop over the output gradient, and
  :func:`_kernel_gradient` sums a few images at a time (position pairs at small sizes). Lite0's
  stage6 to head, trained at 160², batch 64, on 2 EPYC cores: 510 ms a step instead of 848 (stage5
  to head: 1111 instead of 1882), before the position pairs.
  """
  return _shifted_sum(x, kernel, stride)


def _shifted_depthwise_fwd(x, kernel, stride):
  return _shifted_sum(x, kernel, stride), (x, kernel)


def _phases(size: int, k: int, stride: int):
  """The transposed convolution along one axis, split by the input position's residue r modulo
  ``stride``: input position ``stride * u + r`` gets ``sum(g[u + d] * w[tap])`` over the
  ``(tap, d)`` of phase r. Returns the phases, the output gradient's padding ``(low, high)`` that
  keeps every ``u + d`` in range, and the positions per phase (``ceil(size / stride)``)."""
  (front, _), out = _same_padding(size, k, stride)
  per_phase = ceil_div(size, stride)
  phases = []
  for r in range(stride):
    first = (r + front) % stride
    shift = (r + front - first) // stride
    phases.append([(first + stride * m, shift - m) for m in range(ceil_div(k - first, stride))])
  offsets = [d for taps in phases for _, d in taps]
  return (
    phases,
    (max(0, -min(offsets)), max(0, per_phase - 1 + max(offsets) - (out - 1))),
    per_phase,
  )


def _input_gradient(
  g: jax.Array, kernel: jax.Array, stride: int, size: tuple[int, int]
) -> jax.Array:
  """The input gradient of :func:`_shifted_sum`: per phase (``_phases``; one for stride 1) a sum
  of windows of the padded output gradient times kernel taps, the phases then interleaved.

  As JAX transposes the forward, XLA's CPU backend sums k² padded arrays, checking every tap's
  bounds at every element: 64 × 24 × 24 × 144 channels, k 3, stride 2 on 2 EPYC cores: 88 ms;
  this: 15 ms (k 5, stride 1, 64 × 12 × 12 × 240: 96 -> 29 ms).
  """
  (rows, pad_rows, height), (cols, pad_cols, width) = (
    _phases(n, kernel.shape[0], stride) for n in size
  )
  padded = jnp.pad(g, ((0, 0), pad_rows, pad_cols, (0, 0)))
  n, c = g.shape[0], g.shape[3]

  def phase(taps_y, taps_x):
    out = None
    for i, dy in taps_y:
      for j, dx in taps_x:
        top, left = dy + pad_rows[0], dx + pad_cols[0]
        term = (
          jax.lax.slice(padded, (0, top, left, 0), (n, top + height, left + width, c))
          * kernel[i, j, 0]
        )
        out = term if out is None else out + term
    return out

  grid = jnp.stack([jnp.stack([phase(ty, tx) for tx in cols], axis=3) for ty in rows], axis=2)
  return grid.reshape(n, height * stride, width * stride, c)[:, : size[0], : size[1]]


_GROUP = 4  # images summed together in the kernel gradient


def _kernel_gradient_by_images(x: jax.Array, g: jax.Array, kernel_shape, stride: int) -> jax.Array:
  """The kernel gradient, summed over a few images at a time, whose windows stay in cache.

  Over the whole batch, XLA writes each tap's window out as its own array (about 15 ms per tap
  for a 64 × 24 × 24 × 144 activation on 2 Xeon cores); one image at a time, the per-call cost of
  the small sums adds up. 2 EPYC cores, batch 64, 4 images instead of 1: 24 × 24 × 240, k 5,
  stride 2: 245 -> 137 ms; 6 × 6 × 672, k 5: 115 -> 33 ms.
  """
  k, group = kernel_shape[0], math.gcd(_GROUP, x.shape[0])

  def some_images(pair):
    images, images_g = pair
    padded, out_h, out_w = _pad_same(images, k, stride)
    return jnp.stack(
      [
        jnp.sum(images_g * window, axis=(0, 1, 2))
        for _, _, window in _taps(padded, k, stride, out_h, out_w)
      ]
    )

  grouped = [a.reshape(-1, group, *a.shape[1:]) for a in (x, g)]
  return jax.lax.map(some_images, grouped).sum(axis=0).reshape(kernel_shape)


@functools.lru_cache(maxsize=None)
def _tap_matrix(height: int, width: int, k: int, stride: int) -> np.ndarray:
  """(output positions · input positions, k²): 1 where input position q meets output position p
  through kernel tap t (TensorFlow "SAME" padding), else 0."""
  ((top, _), out_h), ((left, _), out_w) = (
    _same_padding(height, k, stride),
    _same_padding(width, k, stride),
  )
  taps = np.zeros((out_h, out_w, height, width, k, k), np.float32)
  for y, x, i, j in np.ndindex(out_h, out_w, k, k):
    row, col = y * stride + i - top, x * stride + j - left
    if 0 <= row < height and 0 <= col < width:
      taps[y, x, row, col, i, j] = 1
  return taps.reshape(-1, k * k)


def _kernel_gradient_by_positions(x: jax.Array, g: jax.Array, kernel_shape, stride: int):
  """The kernel gradient from every (output, input) position pair's correlation over the batch,
  per channel (one batched matrix product), summed per tap by a product with ``_tap_matrix``.

  It multiplies (input positions / k²) times as much as the direct sum, but as matrix products:
  at Lite0's 6 × 6 and 3 × 3 stages it takes 6 ms instead of 11 (6 × 6 × 672, k 5) and 2 instead
  of 6 (3 × 3 × 1152, k 5) on 2 EPYC cores, batch 64.
  """
  n, height, width, channels = x.shape
  correlation = jnp.einsum("npc,nqc->cpq", g.reshape(n, -1, channels), x.reshape(n, -1, channels))
  taps = jnp.asarray(_tap_matrix(height, width, kernel_shape[0], stride), x.dtype)
  return (correlation.reshape(channels, -1) @ taps).T.reshape(kernel_shape)


def _kernel_gradient(x: jax.Array, g: jax.Array, kernel_shape, stride: int) -> jax.Array:
  """The depthwise kernel's gradient: by position pairs where the input has at most 3 × k²
  positions (``_kernel_gradient_by_positions``; about as fast at 3 ×, slower beyond), else a few
  images at a time."""
  k = kernel_shape[0]
  if x.shape[1] * x.shape[2] <= 3 * k * k:
    return _kernel_gradient_by_positions(x, g, kernel_shape, stride)
  return _kernel_gradient_by_images(x, g, kernel_shape, stride)


def _shifted_depthwise_bwd(stride, residuals, g):
  x, kernel = residuals
  return _input_gradient(g, kernel, stride, x.shape[1:3]), _kernel_gradient(
    x, g, kernel.shape, stride
  )


shifted_depthwise.defvjp(_shifted_depthwise_fwd, _shifted_depthwise_bwd)


def _implementation(impl: str, on_cpu: str, elsewhere: str, layer: str) -> str:
  """``impl``; ``"auto"`` is ``on_cpu`` on the CPU backend, ``elsewhere`` on the others."""
  if impl == "auto":
    return on_cpu if jax.default_backend() == "cpu" else elsewhere
  if impl not in (on_cpu, elsewhere):
    raise UsageError(f"{layer} impl {impl!r}: choose auto, {on_cpu} or {elsewhere}.")
  return impl


class DepthwiseConv(nn.Module):
  """k×k depthwise convolution without bias, TensorFlow "SAME" padding. The kernel is (k, k, 1, C),
  the layout of ``nn.Conv(C, feature_group_count=C)``, with the same initialiser.

  ``impl``: ``"grouped"`` is XLA's grouped convolution; ``"shifted"`` is
  :func:`shifted_depthwise`, several times faster on CPU, where XLA's grouped convolution is slow
  (``benchmarks/backbone_speed.py``); ``"auto"`` takes ``shifted`` on CPU, ``grouped`` elsewhere.
  """

  kernel_size: int
  strides: int = 1
  impl: str = "auto"
  dtype: Any = jnp.float32

  @nn.compact
  def __call__(self, x: jax.Array) -> jax.Array:
    k, channels = self.kernel_size, x.shape[-1]
    kernel = self.param("kernel", nn.initializers.lecun_normal(), (k, k, 1, channels), jnp.float32)
    x, kernel = x.astype(self.dtype), kernel.astype(self.dtype)
    if _implementation(self.impl, "shifted", "grouped", "depthwise") == "shifted":
      return shifted_depthwise(x, kernel, self.strides)
    return jax.lax.conv_general_dilated(
      x,
      kernel,
      (self.strides, self.strides),
      "SAME",
      dimension_numbers=("NHWC", "HWIO", "NHWC"),
      feature_group_count=channels,
    )


class PatchConv(nn.Module):
  """k×k convolution without bias, TensorFlow "SAME" padding, as one matrix product of its k²
  strided windows laid side by side (im2col), with the parameter (and initialiser) of
  ``nn.Conv(features, (k, k), strides, padding="SAME", use_bias=False)``.

  For layers with few input channels, such as EfficientNet's stem (3): XLA's CPU backend computes
  a ``conv_general_dilated``'s kernel gradient there slowly (122 ms a step for Lite0's stem at
  96², batch 64, on 2 Xeon cores), where as (windows)ᵀ × gradient it is one small product.
  ``impl``: ``"patches"``, ``"xla"`` (``conv_general_dilated``), or ``"auto"``: patches on CPU.
  """

  features: int
  kernel_size: int
  strides: int = 1
  impl: str = "auto"
  dtype: Any = jnp.float32

  @nn.compact
  def __call__(self, x: jax.Array) -> jax.Array:
    k, s = self.kernel_size, self.strides
    kernel = self.param(
      "kernel", nn.initializers.lecun_normal(), (k, k, x.shape[-1], self.features), jnp.float32
    )
    x, kernel = x.astype(self.dtype), kernel.astype(self.dtype)
    if _implementation(self.impl, "patches", "xla", "convolution") == "xla":
      return jax.lax.conv_general_dilated(
        x, kernel, (s, s), "SAME", dimension_numbers=("NHWC", "HWIO", "NHWC")
      )
    padded, out_h, out_w = _pad_same(x, k, s)
    patches = jnp.concatenate(
      [window for _, _, window in _taps(padded, k, s, out_h, out_w)], axis=-1
    )
    rows = patches.reshape(-1, patches.shape[-1])  # columns (i, j, channel): the kernel's order
    return (rows @ kernel.reshape(-1, self.features)).reshape(*patches.shape[:-1], self.features)


class PointwiseConv(nn.Module):
  """1×1 convolution without bias or padding as one matrix product over all (strided) positions,
  with the parameter (and initialiser) of ``nn.Conv(features, (1, 1), strides, use_bias=False)``.

  XLA's CPU backend runs the product several times faster than a 1×1 ``conv_general_dilated``:
  forward and backward of 64 × 24 × 24 × 144 -> 40 channels, 80 -> 18 ms on 2 Xeon cores.
  """

  features: int
  dtype: Any = jnp.float32
  strides: int = 1

  @nn.compact
  def __call__(self, x: jax.Array) -> jax.Array:
    kernel = self.param(
      "kernel", nn.initializers.lecun_normal(), (1, 1, x.shape[-1], self.features), jnp.float32
    )
    x, kernel = x.astype(self.dtype), kernel.astype(self.dtype)
    x = x[:, :: self.strides, :: self.strides]
    return (x.reshape(-1, x.shape[-1]) @ kernel[0, 0]).reshape(*x.shape[:-1], self.features)


class TorchvisionFCNet(nn.Module):
  """Fields and fc layers shared by AlexNet and VGG-16 (torchvision's ``classifier.N`` layout).

  ``fc_width`` (4096) is the width of fc6 and fc7; smaller values serve fast tests.
  """

  CLASSIFIER = "classifier_6"

  dropout_rate: float = 0.5
  fc_width: int = 4096
  num_classes: int = 1000
  dtype: Any = jnp.float32

  def fc(self, index: int, train: bool, dropout: bool, pooled_size: int | None = None):
    """The stage ``[adaptive pool + flatten], [dropout], classifier_<index>, ReLU``."""

    def stage(x):
      if pooled_size:
        x = flatten_chw(adaptive_avg_pool(x, pooled_size))
      if dropout:
        x = nn.Dropout(self.dropout_rate, deterministic=not train)(x)
      return nn.relu(nn.Dense(self.fc_width, dtype=self.dtype, name=f"classifier_{index}")(x))

    return stage

  def classifier(self, train: bool, dropout: bool):
    """torchvision's 1000-way ``classifier.6``, after dropout where the network has one."""

    def logits(x):
      if dropout:
        x = nn.Dropout(self.dropout_rate, deterministic=not train)(x)
      return nn.Dense(self.num_classes, dtype=self.dtype, name=self.CLASSIFIER)(x)

    return logits
