"""LeNet's hand-written convolution-and-pooling against references.

conv_pool must match a float64 numpy convolution, bias and 2×2 max pooling and their gradients,
and route gradients exactly as flax's nn.Conv and nn.max_pool do when windows hold tied maxima
(the first maximum takes it); LeNet keeps nn.Conv's parameters and gives the same features however
its batch is split.
"""

import os

import chex
import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from jaxhash.models import LeNet
from jaxhash.models.lenet import conv_pool


class ReferenceLeNet(nn.Module):
  """The layout LeNet had before its kernels were written out: nn.Conv and nn.max_pool."""

  @nn.compact
  def __call__(self, x, train=False):
    for i, width in enumerate((20, 50)):
      x = nn.Conv(width, (5, 5), padding="VALID", name=f"conv{i + 1}")(x)
      x = nn.max_pool(x, (2, 2), strides=(2, 2))
    return nn.relu(nn.Dense(500, name="fc")(x.reshape((x.shape[0], -1))))


def numpy_conv_pool(x, w, b):
  """Float64 convolution + bias, then 2×2 max pooling; also each window's first maximum."""
  n, h, width, _ = x.shape
  kh, kw, _, o = w.shape
  y = np.zeros((n, h - kh + 1, width - kw + 1, o)) + b
  for i in range(kh):
    for j in range(kw):
      y += np.einsum("nyxc,co->nyxo", x[:, i : i + y.shape[1], j : j + y.shape[2]], w[i, j])
  windows = y.reshape(n, y.shape[1] // 2, 2, y.shape[2] // 2, 2, o).transpose(0, 1, 3, 5, 2, 4)
  windows = windows.reshape(*windows.shape[:4], 4)  # row-major order within each window
  return windows.max(axis=-1), windows.argmax(axis=-1)


def numpy_conv_pool_grads(x, w, first, g):
  """Gradients of ``numpy_conv_pool`` for output gradient ``g``: each window's first maximum."""
  n, ph, pw, o = g.shape
  kh, kw = w.shape[:2]
  g_conv = np.zeros((n, 2 * ph, 2 * pw, o))
  for k in range(4):
    g_conv[:, k // 2 :: 2, k % 2 :: 2] = np.where(first == k, g, 0)
  dx, dw = np.zeros(x.shape), np.zeros(w.shape)
  for i in range(kh):
    for j in range(kw):
      dw[i, j] = np.einsum("nyxc,nyxo->co", x[:, i : i + 2 * ph, j : j + 2 * pw], g_conv)
      dx[:, i : i + 2 * ph, j : j + 2 * pw] += np.einsum("nyxo,co->nyxc", g_conv, w[i, j])
  return dx, dw, g_conv.sum(axis=(0, 1, 2))


@settings(max_examples=10, deadline=None)
@given(
  st.integers(1, 3),
  st.integers(1, 3),
  st.integers(1, 3),
  st.integers(1, 3),
  st.integers(1, 4),
  st.sampled_from([(1, 1), (3, 3), (5, 5), (2, 3)]),
  st.integers(0, 2**31 - 1),
)
def test_conv_pool_matches_numpy(n, half_h, half_w, c, o, kernel, seed):
  rng = np.random.default_rng(seed)
  kh, kw = kernel
  x = rng.normal(size=(n, 2 * half_h + kh - 1, 2 * half_w + kw - 1, c)).astype(np.float32)
  w = rng.normal(size=(kh, kw, c, o)).astype(np.float32)
  b = rng.normal(size=o).astype(np.float32)
  y, vjp = jax.vjp(jax.jit(conv_pool), x, w, b)
  ref_y, first = numpy_conv_pool(x.astype(np.float64), w.astype(np.float64), b.astype(np.float64))
  np.testing.assert_allclose(y, ref_y, rtol=1e-5, atol=1e-5)
  g = rng.normal(size=y.shape).astype(np.float32)
  refs = numpy_conv_pool_grads(
    x.astype(np.float64), w.astype(np.float64), first, g.astype(np.float64)
  )
  for ours, ref in zip(vjp(g), refs):
    np.testing.assert_allclose(ours, ref, rtol=1e-5, atol=1e-4)


@pytest.mark.parametrize("seed", range(3))
def test_conv_pool_routes_tied_maxima_exactly_as_flax(seed):
  """Small integers: every sum is exact in float32, most windows hold several maxima, and the
  values and all three gradients must equal those of nn.Conv's convolution and nn.max_pool."""
  rng = np.random.default_rng(seed)
  x = rng.integers(-2, 3, (3, 12, 14, 2)).astype(np.float32)
  w = rng.integers(-1, 2, (5, 5, 2, 3)).astype(np.float32)
  b = rng.integers(-1, 2, 3).astype(np.float32)
  g = rng.integers(-3, 4, (3, 4, 5, 3)).astype(np.float32)

  def flax_conv_pool(x, w, b):
    y = jax.lax.conv_general_dilated(
      x, w, (1, 1), "VALID", dimension_numbers=("NHWC", "HWIO", "NHWC")
    )
    return nn.max_pool(y + b, (2, 2), strides=(2, 2))

  ours, ours_vjp = jax.vjp(jax.jit(conv_pool), x, w, b)
  ref, ref_vjp = jax.vjp(flax_conv_pool, x, w, b)
  np.testing.assert_array_equal(ours, ref)
  for a, r in zip(ours_vjp(g), ref_vjp(g)):
    np.testing.assert_array_equal(a, r)


@pytest.mark.parametrize("side", [30, 26, 12])
def test_lenet_refuses_sizes_it_cannot_pool_naming_the_setting(side):
  with pytest.raises(ValueError, match=rf"LeNet cannot take {side}×{side} images.*data.image_size"):
    LeNet(parts=1).init(jax.random.key(0), jnp.zeros((1, side, side, 1)))
  with pytest.raises(ValueError, match="conv_pool: a 5×5 convolution of 13×13 inputs gives 9×9"):
    conv_pool(jnp.zeros((1, 13, 13, 1)), jnp.zeros((5, 5, 1, 2)), jnp.zeros(2))


def test_a_run_lenet_cannot_pool_stops_before_writing_its_workdir(tmp_path):
  from conftest import load_config
  from jaxhash.run import trainer

  config = load_config("test").unlock()
  config.data.crop = 26
  workdir = str(tmp_path / "run")
  with pytest.raises(ValueError, match="LeNet cannot take 26×26 images"):
    trainer.train_and_evaluate(config.lock(), workdir)
  assert not os.path.exists(workdir)


@pytest.mark.parametrize("side", [16, 20, 28, 32])
def test_lenet_takes_multiples_of_4_from_16(side):
  variables = LeNet(parts=1).init(jax.random.key(0), jnp.zeros((1, side, side, 3)))
  assert LeNet(parts=1).apply(variables, jnp.ones((2, side, side, 3))).shape == (2, 500)


def test_lenet_keeps_the_nn_conv_parameters_and_gradients():
  rng = np.random.default_rng(0)
  x = rng.normal(size=(8, 28, 28, 1)).astype(np.float32)
  x[:, :4] = x[0, 0, 0, 0]  # a flat border, like MNIST's background: tied pooling windows
  params = LeNet(parts=1).init(jax.random.key(3), x[:1])["params"]
  reference = ReferenceLeNet().init(jax.random.key(3), x[:1])["params"]
  chex.assert_trees_all_equal(params, reference)  # same names, shapes and initial values

  def loss(model, p):
    return jnp.sum(jnp.sin(model.apply({"params": p}, x)))

  ours = jax.jit(jax.value_and_grad(lambda p: loss(LeNet(parts=1), p)))(params)
  ref = jax.jit(jax.value_and_grad(lambda p: loss(ReferenceLeNet(), p)))(params)
  np.testing.assert_allclose(ours[0], ref[0], rtol=1e-5)
  chex.assert_trees_all_close(ours[1], ref[1], rtol=1e-4, atol=1e-5)


def test_lenet_parts_give_the_same_features_and_close_gradients():
  x = np.random.default_rng(1).normal(size=(12, 28, 28, 1)).astype(np.float32)
  params = LeNet(parts=1).init(jax.random.key(0), x[:1])
  whole = jax.jit(LeNet(parts=1).apply)(params, x)
  for parts in (3, 5):  # 5 does not divide 12: one part
    np.testing.assert_array_equal(jax.jit(LeNet(parts=parts).apply)(params, x), whole)
  grad = lambda parts: jax.jit(jax.grad(lambda p: jnp.sum(LeNet(parts=parts).apply(p, x) ** 2)))(
    params
  )
  chex.assert_trees_all_close(grad(3), grad(1), rtol=1e-4, atol=1e-5)
