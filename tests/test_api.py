"""jaxhash.load and Hasher: a trained run restored without its data, encoding any uint8 images
with the run's own preprocessing, and the same codes as the evaluation computed."""

import json
import os
import shutil

import numpy as np
import pytest
from PIL import Image

import jaxhash
from conftest import load_config
from jaxhash.data import sources
from jaxhash.encode import encode_indices, make_encoder
from jaxhash.errors import UsageError
from jaxhash.run import experiment, run_files


@pytest.fixture(scope="module")
def run(finished_run):
  """A finished run of the tiny config (2 steps, 16-bit DLBHC on the embedded MNIST)."""
  return finished_run


@pytest.fixture(scope="module")
def hasher(run):
  return jaxhash.load(run)


@pytest.fixture(scope="module")
def mnist():
  return sources.embedded_mnist()


def test_load_reads_no_data_and_reports_the_run(run, monkeypatch):
  from jaxhash.data import loader

  def no_data(*args, **kwargs):
    raise AssertionError("jaxhash.load read the training data")

  monkeypatch.setattr(loader, "load_dataset", no_data)
  hasher = jaxhash.load(run)
  assert (hasher.bits, hasher.method, hasher.step, hasher.image_shape) == (
    16,
    "dlbhc",
    2,
    (28, 28, 1),
  )
  assert hasher.config.method.bits == 16 and hasher.config.is_locked
  assert json.load(open(os.path.join(run, "model.json"))) == {
    "num_classes": 10,
    "image_shape": [28, 28, 1],
  }


def test_codes_equal_the_evaluation_codes(run, hasher, mnist):
  exp = experiment.build_experiment(load_config("test"))
  state = experiment.restore_trained(exp, run)
  query = exp.split.query[:37]
  words, features = encode_indices(
    make_encoder(exp.model, exp.method, exp.config.data),
    state.variables,
    exp.dataset.images,
    query,
    250,
    with_features=True,
  )
  codes, feats = hasher.encode_with_features(mnist.images[query])
  np.testing.assert_array_equal(codes, words)
  np.testing.assert_allclose(feats, features, rtol=1e-5, atol=1e-5)
  np.testing.assert_array_equal(hasher.encode(mnist.images[query]), words)
  np.testing.assert_allclose(hasher.features(mnist.images[query]), features, rtol=1e-5, atol=1e-5)
  assert codes.dtype == np.uint32 and codes.shape == (37, 1)


@pytest.mark.parametrize("sizes", [[1], [3, 17], [64, 1, 5]])
def test_batches_of_any_size_give_the_same_codes(hasher, mnist, sizes):
  images = mnist.images[: sum(sizes)]
  whole = hasher.encode(images)
  parts, start = [], 0
  for size in sizes:
    parts.append(hasher.encode(images[start : start + size]))
    start += size
  np.testing.assert_array_equal(np.concatenate(parts), whole)


def test_gray_rgb_paths_and_16_bit_files_give_the_same_codes(hasher, mnist, tmp_path):
  images = mnist.images[:6]
  expected = hasher.encode(images)
  np.testing.assert_array_equal(hasher.encode(images[..., 0]), expected)  # (N, H, W)
  np.testing.assert_array_equal(hasher.encode(np.repeat(images, 3, axis=-1)), expected)  # RGB
  np.testing.assert_array_equal(hasher.encode(list(images[..., 0])), expected)  # list of arrays
  paths = []
  for i, image in enumerate(images[..., 0]):
    paths.append(str(tmp_path / f"{i}.png"))
    if i % 2:  # 16-bit grayscale PNG: scaled to 8 bits, not clipped to white
      Image.fromarray(image.astype(np.uint16) * 257).save(paths[-1])
      assert Image.open(paths[-1]).mode.startswith("I")
    else:
      Image.fromarray(image).convert("RGB").save(paths[-1])
  np.testing.assert_array_equal(hasher.encode(paths), expected)
  np.testing.assert_array_equal(hasher.encode([Image.open(p) for p in paths[::2]]), expected[::2])


def test_other_sizes_are_resized_as_list_files_are(hasher, mnist):
  big = np.kron(mnist.images[:4, :, :, 0], np.ones((2, 2), np.uint8))  # 56 x 56
  resized = np.stack([np.asarray(Image.fromarray(b).resize((28, 28), Image.BILINEAR)) for b in big])
  np.testing.assert_array_equal(hasher.prepare(big), resized[..., None])
  np.testing.assert_array_equal(hasher.encode(big), hasher.encode(resized))


@pytest.mark.parametrize(
  "images, message",
  [
    (np.zeros((2, 28, 28), np.float32), "uint8"),
    (np.zeros((28,), np.uint8), "shape"),
    ("digit.png", "list of image paths"),
    ([np.zeros((28, 28, 2), np.uint8)], "an image must be"),
  ],
)
def test_bad_images_are_clear_errors(hasher, images, message):
  with pytest.raises(ValueError, match=message):
    hasher.encode(images)


def test_unreadable_and_missing_files_name_the_path(hasher, tmp_path):
  bad = tmp_path / "bad.png"
  bad.write_bytes(b"not an image")
  with pytest.raises(ValueError, match="bad.png"):
    hasher.encode([str(bad)])
  with pytest.raises(FileNotFoundError, match="gone.png"):
    hasher.encode([str(tmp_path / "gone.png")])


def test_empty_input_gives_empty_codes(hasher):
  assert hasher.encode([]).shape == (0, 1)


def test_a_run_without_model_json_is_refused_naming_the_fix(run, tmp_path):
  old = str(tmp_path / "old")
  shutil.copytree(run, old)
  os.remove(os.path.join(old, run_files.MODEL_FILE))
  with pytest.raises(UsageError, match=f"{old} has no model.json; run python -m jaxhash.evaluate"):
    jaxhash.load(old)


def test_fingerprint_tells_models_apart(run, hasher, tmp_path):
  assert hasher.fingerprint == jaxhash.load(run).fingerprint and len(hasher.fingerprint) == 16
  other = str(tmp_path / "other")  # the same run after one step: its newest checkpoint is step 1
  shutil.copytree(run, other)
  shutil.rmtree(os.path.join(other, "checkpoints", "2"))
  loaded = jaxhash.load(other)
  assert loaded.step == 1
  assert loaded.fingerprint != hasher.fingerprint


@pytest.mark.parametrize(
  "setup, error, message",
  [
    (lambda d: None, FileNotFoundError, "config.json"),
    (lambda d: open(os.path.join(d, "config.json"), "w").write("{"), ValueError, "not valid JSON"),
  ],
)
def test_load_errors_name_the_file(tmp_path, setup, error, message):
  workdir = str(tmp_path / "run")
  os.makedirs(workdir)
  setup(workdir)
  with pytest.raises(error, match=message):
    jaxhash.load(workdir)
