"""Backbones: AlexNet in torchvision's layout, checked against an independent NCHW reference
that follows torch's conventions (OIHW weights, (C, H, W) flattening, adaptive average pooling)."""

import jax
import jax.numpy as jnp
import numpy as np

from jaxhash.models import AlexNet, LeNet
from jaxhash.models.weights import alexnet_params_from_torch

_CONVS = ((0, 3, 64, 11, 4, 2), (3, 64, 192, 5, 1, 2), (6, 192, 384, 3, 1, 1), (8, 384, 256, 3, 1, 1),
          (10, 256, 256, 3, 1, 1))


def random_torch_state_dict(rng):
  sd = {}
  for i, cin, cout, k, _, _ in _CONVS:
    sd[f"features.{i}.weight"] = rng.normal(0, (cin * k * k) ** -0.5, (cout, cin, k, k)).astype(np.float32)
    sd[f"features.{i}.bias"] = rng.normal(0, 0.1, cout).astype(np.float32)
  for i, fin in ((1, 256 * 36), (4, 4096)):
    sd[f"classifier.{i}.weight"] = rng.normal(0, fin**-0.5, (4096, fin)).astype(np.float32)
    sd[f"classifier.{i}.bias"] = rng.normal(0, 0.1, 4096).astype(np.float32)
  sd["classifier.6.weight"] = np.zeros((1000, 4096), np.float32)  # dropped by the import
  return sd


def torch_style_forward(sd, x_nchw):
  x = jnp.asarray(x_nchw)
  for i, _, _, _, stride, pad in _CONVS:
    x = jax.lax.conv_general_dilated(x, sd[f"features.{i}.weight"], (stride, stride), [(pad, pad)] * 2,
                                     dimension_numbers=("NCHW", "OIHW", "NCHW"))
    x = jax.nn.relu(x + sd[f"features.{i}.bias"][None, :, None, None])
    if i in (0, 3, 10):
      x = jax.lax.reduce_window(x, -jnp.inf, jax.lax.max, (1, 1, 3, 3), (1, 1, 2, 2), "VALID")
  x = np.asarray(x)
  h, w = x.shape[2:]
  pooled = np.zeros(x.shape[:2] + (6, 6), np.float32)
  for a in range(6):
    for b in range(6):
      ys, ye = (a * h) // 6, -(-((a + 1) * h) // 6)
      xs, xe = (b * w) // 6, -(-((b + 1) * w) // 6)
      pooled[:, :, a, b] = x[:, :, ys:ye, xs:xe].mean(axis=(2, 3))
  x = pooled.reshape(len(x), -1)
  for i in (1, 4):
    x = np.maximum(x @ sd[f"classifier.{i}.weight"].T + sd[f"classifier.{i}.bias"], 0)
  return x


def test_alexnet_import_matches_torch_semantics():
  rng = np.random.default_rng(0)
  sd = random_torch_state_dict(rng)
  x = rng.normal(size=(2, 3, 99, 99)).astype(np.float32)  # 99 px: a 2x2 map is pooled to 6x6
  params = alexnet_params_from_torch(sd)
  ours = AlexNet().apply({"params": params}, jnp.transpose(x, (0, 2, 3, 1)), train=False)
  np.testing.assert_allclose(ours, torch_style_forward(sd, x), rtol=2e-3, atol=2e-3)


def test_alexnet_import_rejects_other_state_dicts():
  import pytest

  with pytest.raises(ValueError, match="not a torchvision AlexNet state_dict"):
    alexnet_params_from_torch({"conv1.weight": np.zeros((1, 1, 1, 1))})


def test_imported_tree_matches_flax_init():
  params = jax.eval_shape(lambda: AlexNet().init(jax.random.key(0), jnp.zeros((1, 224, 224, 3))))["params"]
  imported = alexnet_params_from_torch(random_torch_state_dict(np.random.default_rng(1)))
  assert jax.tree.map(lambda a: a.shape, imported) == jax.tree.map(lambda a: a.shape, params)


def test_lenet_feature_shape():
  out = LeNet().apply(LeNet().init(jax.random.key(0), jnp.zeros((1, 28, 28, 1))), jnp.zeros((3, 28, 28, 1)))
  assert out.shape == (3, 500)
