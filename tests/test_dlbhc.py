"""DLBHC head, loss and binarization: shapes, values and gradients."""

import chex
import jax
import jax.numpy as jnp
import numpy as np
import optax

from jaxhash.methods import HashModel, dlbhc, get_method
from jaxhash.models import LeNet


def test_head_shapes_and_code_rule():
  head = dlbhc.DLBHCHead(bits=48, num_classes=10)
  feats = jax.random.normal(jax.random.key(0), (7, 500))
  params = head.init(jax.random.key(1), feats)
  out = head.apply(params, feats)
  chex.assert_shape(out["z"], (7, 48))
  chex.assert_shape(out["logits"], (7, 10))
  np.testing.assert_allclose(out["latent"], jax.nn.sigmoid(out["z"]), rtol=1e-6)
  codes = dlbhc.binarize(out)
  chex.assert_type(codes, bool)
  np.testing.assert_array_equal(codes, np.asarray(out["latent"]) > 0.5)


def test_loss_is_softmax_cross_entropy_and_accuracy():
  logits = jnp.array([[2.0, 0.0, -1.0], [0.0, 3.0, 0.0]])
  labels = jnp.array([[1, 0, 0], [0, 0, 1]], jnp.uint8)
  loss, aux = dlbhc.classification_loss({"logits": logits}, labels, 0, None)
  expected = np.mean(
    [
      optax.softmax_cross_entropy_with_integer_labels(logits[0], 0),
      optax.softmax_cross_entropy_with_integer_labels(logits[1], 2),
    ]
  )
  np.testing.assert_allclose(loss, expected, rtol=1e-6)
  np.testing.assert_allclose(aux["accuracy"], 0.5)


def test_gradients_reach_backbone_and_are_finite():
  method = get_method("dlbhc")
  model = HashModel(backbone=LeNet(), head=dlbhc.DLBHCHead(bits=16, num_classes=10))
  x = jax.random.normal(jax.random.key(0), (4, 28, 28, 1))
  labels = jax.nn.one_hot(jnp.arange(4), 10).astype(jnp.uint8)
  params = jax.jit(model.init)(jax.random.key(1), x)[
    "params"
  ]  # jitted: one compile, not one per op

  def loss_fn(p):
    return method.loss(model.apply({"params": p}, x), labels, 0, None)[0]

  grads = jax.jit(jax.grad(loss_fn))(params)
  chex.assert_trees_all_equal_shapes(grads, params)
  chex.assert_tree_all_finite(grads)
  assert float(jnp.abs(grads["backbone"]["conv1"]["kernel"]).sum()) > 0
  assert float(jnp.abs(grads["head"]["latent"]["kernel"]).sum()) > 0
