"""The shallow methods' fits as pure functions: ITQ's rotation and loss, balanced codes, seeds,
SH's modes and ITQ-CCA's directions against plain numpy, SDH on separable data."""

import chex
import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from jaxhash.methods import METHODS, itq, itq_cca, sh

SHALLOW = ("lsh", "sh", "itq", "itq_cca", "sdh")
FEW = settings(max_examples=8, deadline=None)  # every example has the same shapes: one compile
seeds = st.integers(0, 2**31 - 1)


def method_config(name: str, bits: int, **values) -> ml_collections.ConfigDict:
  return ml_collections.ConfigDict({**METHODS[name].defaults(), "bits": bits, **values})


def codes(name: str, config, features, labels=None, seed=0) -> np.ndarray:
  """bool (N, bits) codes of ``features`` from ``name`` fitted on them."""
  method = METHODS[name]
  params, _ = method.fit(jnp.asarray(features), labels, config, jax.random.key(seed))
  return np.asarray(
    method.binarize(method.make_head(config, 0).apply({"params": params}, jnp.asarray(features)))
  )


def clustered(seed: int, n: int = 240, dim: int = 12, classes: int = 4):
  """Features of ``classes`` well separated clusters and their one-hot labels."""
  rng = np.random.default_rng(seed)
  ids = np.arange(n) % classes
  centres = rng.normal(size=(classes, dim)) * 4
  features = (centres[ids] + rng.normal(size=(n, dim)) + 5).astype(np.float32)
  return features, np.eye(classes, dtype=np.uint8)[ids]


@FEW
@given(seeds, seeds)
def test_itq_rotation_stays_orthogonal_and_its_loss_never_increases(data_seed, seed):
  rng = np.random.default_rng(data_seed)
  v = jnp.asarray(rng.normal(size=(300, 8)) * rng.uniform(0.2, 3.0, 8), jnp.float32)
  r, losses = itq.rotation(v, jax.random.key(seed), 20)
  chex.assert_shape((r, losses), ((8, 8), (21,)))
  chex.assert_trees_all_close(r @ r.T, jnp.eye(8), atol=1e-5)
  steps = np.diff(np.asarray(losses, np.float64))
  assert steps.max() <= 1e-5 * float(losses[0]), steps  # float32 rounding only
  assert losses[-1] < losses[0]


@FEW
@given(seeds, seeds)
def test_itq_codes_are_balanced_on_centred_data(data_seed, seed):
  """Data closed under x -> -x about its mean: each bit splits it exactly in half."""
  rng = np.random.default_rng(data_seed)
  half = rng.normal(size=(150, 10)) * rng.uniform(0.5, 2.0, 10)
  features = np.concatenate([half, -half]).astype(np.float32) + 3.0
  bits = codes("itq", method_config("itq", 6, iterations=10), features, seed=seed)
  np.testing.assert_array_equal(bits.mean(axis=0), 0.5)


@FEW
@given(seeds)
def test_sh_codes_are_balanced_on_centred_uniform_data(data_seed):
  """SH's eigenfunctions assume uniform data: on a rotated box every mode splits it evenly."""
  rng = np.random.default_rng(data_seed)
  widths = np.array([8.0, 4.7, 2.9, 1.6, 1.0]) * rng.uniform(0.9, 1.1, 5)  # PCA finds the axes
  box = rng.uniform(-0.5, 0.5, size=(4000, 5)) * widths
  rotation, _ = np.linalg.qr(rng.normal(size=(5, 5)))
  bits = codes("sh", method_config("sh", 12), (box @ rotation).astype(np.float32))
  assert np.abs(bits.mean(axis=0) - 0.5).max() < 0.05, bits.mean(axis=0)


@pytest.mark.parametrize("name", SHALLOW)
def test_every_method_is_deterministic_under_its_seed(name):
  features, labels = clustered(0)
  config = method_config(name, 12, **({"anchors": 60} if name == "sdh" else {}))
  fit = lambda seed: METHODS[name].fit(
    jnp.asarray(features), jnp.asarray(labels), config, jax.random.key(seed)
  )[0]
  chex.assert_trees_all_equal(fit(3), fit(3))
  if name != "sh":  # SH draws nothing
    assert not np.array_equal(fit(3)["projection"], fit(4)["projection"])


def test_sh_modes_are_the_papers_smallest_eigenvalues():
  """The released code's enumeration: per direction, modes 1 .. ceil((bits + 1) R / max R) - 1,
  sorted stably by (k / R)²; against the jitted selection."""
  low, high, bits = np.array([0.0, -1.0, 2.0]), np.array([6.0, 2.0, 3.5]), 7
  ranges = high - low
  top = np.ceil((bits + 1) * ranges / ranges.max()).astype(int)
  modes = [(d, k) for d in range(3) for k in range(1, top[d])]
  expected = sorted(modes, key=lambda m: (m[1] / ranges[m[0]]) ** 2)[:bits]
  which, omega = sh.modes(jnp.asarray(low), jnp.asarray(high), bits)
  which = np.asarray(which)
  k = (np.asarray(omega) * ranges[which] / np.pi).round().astype(int)
  assert list(zip(which.tolist(), k.tolist())) == expected


def test_itq_cca_directions_solve_the_canonical_correlation_problem():
  features, labels = clustered(1)
  x = features - features.mean(axis=0)
  y = labels - labels.mean(axis=0)
  w, r = itq_cca.canonical_directions(jnp.asarray(x), jnp.asarray(y, jnp.float32), 3, 1e-4)
  w, r = np.asarray(w, np.float64), np.asarray(r, np.float64)
  ridge = lambda c: c + 1e-4 * np.trace(c) / len(c) * np.eye(len(c))
  cxx, cyy, cxy = ridge(x.T @ x / len(x)), ridge(y.T @ y / len(y)), x.T @ y / len(x)
  lhs = np.linalg.solve(cxx, cxy @ np.linalg.solve(cyy, cxy.T)) @ w
  np.testing.assert_allclose(lhs, w * r**2, atol=2e-3)
  np.testing.assert_allclose(np.linalg.norm(w, axis=0), 1.0, rtol=1e-5)
  assert 1.0 > r[0] >= r[1] >= r[2] > 0.9  # separable clusters: three strong correlations


@pytest.mark.parametrize("name", ["itq_cca", "sdh"])
def test_supervised_methods_give_each_class_its_own_code(name):
  features, labels = clustered(2)
  config = method_config(name, 12, **({"anchors": 60} if name == "sdh" else {}))
  bits = codes(name, config, features, jnp.asarray(labels))
  classes = labels.argmax(axis=1)
  distances = (bits[:, None] != bits[None]).sum(axis=2)
  same = classes[:, None] == classes[None]
  assert distances[same].mean() < 0.25 * distances[~same].mean()


@pytest.mark.parametrize(
  "name, message",
  [
    ("itq", "onto 16 directions, more than they have"),
    ("itq_cca", "more than they have"),
    ("sdh", "anchors=1000 exceeds the 240 training images"),
  ],
)
def test_impossible_fits_are_one_line_errors(name, message):
  features, labels = clustered(0, dim=12)
  with pytest.raises(ValueError, match=message):
    METHODS[name].fit(
      jnp.asarray(features),
      jnp.asarray(labels),
      method_config(name, 16 if name != "sdh" else 8),
      jax.random.key(0),
    )
