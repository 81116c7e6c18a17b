"""HashNet: the loss against a float64 numpy reference, its invariances, numerics, β, training."""

import json
import os

import chex
import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import pytest
from absl.testing import parameterized
from hypothesis import given, settings
from hypothesis import strategies as st

from conftest import load_config
from jaxhash import config as config_lib
from jaxhash.methods import get_method, hashnet
from jaxhash.run.schedules import continuation_schedule

EXAMPLES = settings(max_examples=25, deadline=None)


def method_config(**overrides):
  c = ml_collections.ConfigDict(hashnet.defaults())
  c.update(overrides)
  return c


def random_batch(seed, batch, bits, classes, density=0.3, scale=1.0):
  """z (B, bits) float32 and multi-hot labels (B, C); some rows may be all zero."""
  rng = np.random.default_rng(seed)
  z = (scale * rng.standard_normal((batch, bits))).astype(np.float32)
  labels = (rng.random((batch, classes)) < density).astype(np.int32)
  return z, labels


def reference_loss(z, labels, beta, alpha, weighting):
  """The paper's loss written out pair by pair in float64."""
  h = np.tanh(beta * z.astype(np.float64))
  n = len(h)
  pairs = [(i, j) for i in range(n) for j in range(n) if i != j]
  sim = {(i, j): float(np.any(labels[i] & labels[j])) for i, j in pairs}
  n_sim = sum(sim.values())
  n_dis = len(pairs) - n_sim
  total = weight_sum = 0.0
  for i, j in pairs:
    theta = alpha * float(h[i] @ h[j])
    pair_loss = np.log(1.0 + np.exp(theta)) - sim[i, j] * theta
    if weighting == "balanced":
      w = len(pairs) / n_sim if sim[i, j] else len(pairs) / n_dis
    else:
      w = 1.0
    total += w * pair_loss
    weight_sum += w
  return total / weight_sum


@pytest.mark.parametrize("weighting", hashnet.WEIGHTINGS)
@EXAMPLES
@given(
  seed=st.integers(0, 2**31),
  batch=st.sampled_from([2, 5, 12]),
  classes=st.sampled_from([1, 3, 10]),
  beta=st.sampled_from([0.5, 1.0, 4.0]),
)
def test_loss_matches_float64_reference(weighting, seed, batch, classes, beta):
  z, labels = random_batch(seed, batch, 16, classes)
  config = method_config(bits=16, beta0=beta, continuation=False, weighting=weighting)
  value, metrics = hashnet.loss({"z": z}, labels, jnp.int32(0), config)
  expected = reference_loss(z, labels, beta, 10.0 / 16, weighting)
  np.testing.assert_allclose(float(value), expected, rtol=2e-5, atol=1e-6)
  assert float(metrics["beta"]) == beta


@EXAMPLES
@given(
  seed=st.integers(0, 2**31), batch=st.sampled_from([3, 8, 16]), classes=st.sampled_from([2, 10])
)
def test_loss_is_invariant_to_permuting_the_batch(seed, batch, classes):
  z, labels = random_batch(seed, batch, 24, classes)
  perm = np.random.default_rng(seed + 1).permutation(batch)
  config = method_config(bits=24)
  a, _ = hashnet.loss({"z": z}, labels, jnp.int32(1000), config)
  b, _ = hashnet.loss({"z": z[perm]}, labels[perm], jnp.int32(1000), config)
  np.testing.assert_allclose(float(a), float(b), rtol=1e-5)


class FiniteTest(chex.TestCase):
  @chex.variants(with_jit=True, without_jit=True)
  @parameterized.product(weighting=hashnet.WEIGHTINGS, z_scale=(1e-3, 1.0, 1e4), beta=(1.0, 1e3))
  def test_values_and_gradients_stay_finite(self, weighting, z_scale, beta):
    z, labels = random_batch(0, 16, 48, 5, scale=z_scale)
    z[0] = 0.0  # tanh'(0) and the code of an exact zero
    config = method_config(beta0=beta, continuation=False, weighting=weighting)
    loss_fn = lambda z: hashnet.loss({"z": z}, labels, jnp.int32(0), config)[0]
    loss, grad = self.variant(jax.value_and_grad(loss_fn))(jnp.asarray(z))
    assert np.isfinite(float(loss)) and np.all(np.isfinite(np.asarray(grad)))


def test_balanced_weights_give_similar_and_dissimilar_pairs_equal_mass():
  _, labels = random_batch(3, 32, 1, 10, density=0.15)
  similar = hashnet.similarity(labels)
  off = ~np.eye(32, dtype=bool)
  assert 0 < np.sum(np.asarray(similar) & off) < np.sum(off)
  w = np.asarray(hashnet.pair_weights(similar, "balanced"))
  s = np.asarray(similar)
  np.testing.assert_allclose(w[s & off].sum(), 0.5, rtol=1e-5)
  np.testing.assert_allclose(w[~s & off].sum(), 0.5, rtol=1e-5)
  assert np.all(np.diag(w) == 0)
  uniform = np.asarray(hashnet.pair_weights(similar, "uniform"))
  np.testing.assert_allclose(uniform[off], 1.0 / off.sum(), rtol=1e-6)


@pytest.mark.parametrize(
  "labels",
  [np.ones((6, 3), np.int32), np.eye(6, dtype=np.int32)],
  ids=["all-similar", "all-dissimilar"],
)
@pytest.mark.parametrize("weighting", hashnet.WEIGHTINGS)
def test_batches_with_one_kind_of_pair_average_over_what_they_have(labels, weighting):
  z, _ = random_batch(1, 6, 8, 1)
  value, _ = hashnet.loss(
    {"z": z}, labels, jnp.int32(0), method_config(bits=8, weighting=weighting)
  )
  np.testing.assert_allclose(
    float(value), reference_loss(z, labels, 1.0, 10.0 / 8, "uniform"), rtol=2e-5
  )


@EXAMPLES
@given(seed=st.integers(0, 2**31), classes=st.sampled_from([1, 4, 81]))
def test_multi_label_similarity_means_sharing_a_class(seed, classes):
  _, labels = random_batch(seed, 10, 1, classes, density=0.1)
  expected = np.array([[bool(np.any(a & b)) for b in labels] for a in labels])
  np.testing.assert_array_equal(np.asarray(hashnet.similarity(labels)), expected)


@EXAMPLES
@given(count=st.integers(0, 10**6), step_size=st.integers(1, 1000))
def test_beta_matches_its_formula(count, step_size):
  schedule = continuation_schedule(2.0, 0.005, 0.5, step_size)
  t = step_size * (count // step_size)
  np.testing.assert_allclose(float(schedule(count)), 2.0 * (1 + 0.005 * t) ** 0.5, rtol=1e-5)


def test_beta_never_decreases_and_tanh_approaches_sign():
  steps = jnp.arange(0, 200_000, 37)
  beta = np.asarray(hashnet.beta_schedule(method_config())(steps))
  assert beta[0] == 1.0 and np.all(np.diff(beta) >= 0) and beta[-1] > 30
  z = np.array([-2.0, -0.3, -0.05, 0.05, 0.3, 2.0])
  gap = np.abs(np.tanh(np.outer(beta, z)) - np.sign(z))
  assert np.all(np.diff(gap, axis=0) <= 0) and gap[-1].max() < 0.2
  assert np.all(
    np.asarray(hashnet.beta_schedule(method_config(continuation=False, beta0=1.0))(steps)) == 1.0
  )


def test_codes_are_sign_with_zero_as_one():
  z = jnp.array([[-1.0, 0.0, 1e-8, -1e-8]])
  np.testing.assert_array_equal(
    np.asarray(hashnet.binarize({"z": z})), [[False, True, True, False]]
  )


@pytest.mark.parametrize(
  "key, value, message",
  [
    ("weighting", "pairs", "config.method.weighting"),
    ("alpha", -1.0, "config.method.alpha"),
    ("gamma", -0.1, "gamma"),
    ("step_size", 0, "step_size"),
  ],
)
def test_bad_method_config_is_refused_by_validation(key, value, message):
  with pytest.raises(ValueError, match=message):
    get_method("hashnet").validate(method_config(**{key: value}))


def test_two_training_steps_log_beta_and_loss(finished_hashnet_run):
  workdir, results = finished_hashnet_run  # train_and_evaluate(configs/test.py:hashnet), shared
  assert (
    results["method"] == "hashnet"
    and results["step"] == 2
    and 0 <= results["codes"]["map@all"] <= 1
  )
  log = [json.loads(line) for line in open(os.path.join(workdir, "metrics.jsonl"))]
  assert [r["step"] for r in log] == [1, 2]
  assert all(r["beta"] == 1.0 and np.isfinite(r["loss"]) for r in log)


@pytest.mark.parametrize(
  "name, arg",
  [
    ("hashnet_mnist", None),
    ("hashnet_mnist", "full,bits=64"),
    ("hashnet_cifar10", None),
    ("hashnet_cifar10", "cpu"),
    ("hashnet_imagenet100", None),
    ("hashnet_nuswide", "bits=32"),
    ("hashnet_coco", None),
  ],
)
def test_configs_are_valid(name, arg):
  config = load_config(name, arg)
  config_lib.validate(config)
  hashnet.validate(config.method)
  assert config.method.name == "hashnet" and config.name.startswith(name)
