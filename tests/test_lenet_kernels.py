"""LeNet's hand-written pooling and convolution gradients against references.

max_pool_2x2 must match ``nn.max_pool`` exactly, gradient included (ties go to the first maximum);
conv_valid must match a float64 numpy convolution plus bias and its gradients; LeNet keeps nn.Conv's
parameters and gives the same features however its batch is split.
"""

import chex
import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from jaxhash.models import LeNet
from jaxhash.models.lenet import conv_valid, max_pool_2x2


class ReferenceLeNet(nn.Module):
  """The layout LeNet had before its kernels were written out: nn.Conv and nn.max_pool."""

  @nn.compact
  def __call__(self, x, train=False):
    for i, width in enumerate((20, 50)):
      x = nn.Conv(width, (5, 5), padding="VALID", name=f"conv{i + 1}")(x)
      x = nn.max_pool(x, (2, 2), strides=(2, 2))
    return nn.relu(nn.Dense(500, name="fc")(x.reshape((x.shape[0], -1))))


def numpy_conv(x, w):
  n, h, width, _ = x.shape
  kh, kw, _, o = w.shape
  y = np.zeros((n, h - kh + 1, width - kw + 1, o))
  for i in range(kh):
    for j in range(kw):
      y += np.einsum("nyxc,co->nyxo", x[:, i:i + y.shape[1], j:j + y.shape[2]], w[i, j])
  return y


def numpy_conv_grads(x, w, g):
  dx, dw = np.zeros(x.shape), np.zeros(w.shape)
  oh, ow = g.shape[1:3]
  for i in range(w.shape[0]):
    for j in range(w.shape[1]):
      dw[i, j] = np.einsum("nyxc,nyxo->co", x[:, i:i + oh, j:j + ow], g)
      dx[:, i:i + oh, j:j + ow] += np.einsum("nyxo,co->nyxc", g, w[i, j])
  return dx, dw


@settings(max_examples=12, deadline=None)
@given(st.integers(1, 3), st.integers(1, 4), st.integers(1, 3), st.integers(1, 3), st.integers(1, 3),
       st.booleans(), st.integers(0, 2**31 - 1))
def test_max_pool_matches_flax_exactly(n, half_h, half_w, c, levels, ties, seed):
  rng = np.random.default_rng(seed)
  shape = (n, 2 * half_h, 2 * half_w, c)
  # few distinct values: most windows hold several maxima, and the gradient must pick the first
  x = rng.integers(0, levels + 1, shape).astype(np.float32) if ties else rng.normal(size=shape).astype(np.float32)
  g = rng.normal(size=(n, half_h, half_w, c)).astype(np.float32)
  ours, ours_vjp = jax.vjp(jax.jit(max_pool_2x2), x)
  ref, ref_vjp = jax.vjp(lambda v: nn.max_pool(v, (2, 2), strides=(2, 2)), x)
  np.testing.assert_array_equal(ours, ref)
  np.testing.assert_array_equal(ours_vjp(g)[0], ref_vjp(g)[0])


@settings(max_examples=10, deadline=None)
@given(st.integers(1, 3), st.integers(0, 4), st.integers(0, 4), st.integers(1, 3), st.integers(1, 4),
       st.sampled_from([(1, 1), (3, 3), (5, 5), (2, 3)]), st.integers(0, 2**31 - 1))
def test_conv_valid_matches_numpy(n, extra_h, extra_w, c, o, kernel, seed):
  rng = np.random.default_rng(seed)
  kh, kw = kernel
  x = rng.normal(size=(n, kh + extra_h, kw + extra_w, c)).astype(np.float32)
  w = rng.normal(size=(kh, kw, c, o)).astype(np.float32)
  b = rng.normal(size=o).astype(np.float32)
  y, vjp = jax.vjp(jax.jit(conv_valid), x, w, b)
  ref_y = numpy_conv(x.astype(np.float64), w.astype(np.float64)) + b
  np.testing.assert_allclose(y, ref_y, rtol=1e-5, atol=1e-5)
  g = rng.normal(size=y.shape).astype(np.float32)
  dx, dw, db = vjp(g)
  ref_dx, ref_dw = numpy_conv_grads(x.astype(np.float64), w.astype(np.float64), g.astype(np.float64))
  np.testing.assert_allclose(dx, ref_dx, rtol=1e-5, atol=1e-4)
  np.testing.assert_allclose(dw, ref_dw, rtol=1e-5, atol=1e-4)
  np.testing.assert_allclose(db, g.astype(np.float64).sum(axis=(0, 1, 2)), rtol=1e-5, atol=1e-4)


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
  grad = lambda parts: jax.jit(jax.grad(lambda p: jnp.sum(LeNet(parts=parts).apply(p, x) ** 2)))(params)
  chex.assert_trees_all_close(grad(3), grad(1), rtol=1e-4, atol=1e-5)
