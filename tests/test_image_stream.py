"""Streamed encoding of image files (jaxhash.image_stream) and the Hasher's memory-fitted batch."""

import threading

import numpy as np
import pytest
from PIL import Image

import jaxhash
from jaxhash import image_stream
from jaxhash.data import sources


@pytest.fixture(scope="module")
def hasher(finished_run):
  return jaxhash.load(finished_run)


@pytest.fixture(scope="module")
def files(tmp_path_factory):
  """45 MNIST digits as PNG files, with two unreadable files among them."""
  folder = tmp_path_factory.mktemp("digits")
  images = sources.embedded_mnist().images[:45, :, :, 0]
  paths = []
  for i, image in enumerate(images):
    paths.append(str(folder / f"{i:03d}.png"))
    Image.fromarray(image).save(paths[-1])
  (folder / "broken.png").write_bytes(b"\x89PNG not an image")
  paths.insert(9, str(folder / "broken.png"))
  paths.insert(30, str(folder / "missing.png"))
  return paths, images


def test_stream_gives_the_codes_of_encode_in_order_and_reports_unreadable_files(
  hasher, files, monkeypatch
):
  paths, images = files
  monkeypatch.setattr(hasher, "memory_budget", 0)  # the smallest batch (8): several batches
  batches = list(image_stream.encode_files(hasher, paths, features=True, workers=3))
  assert [len(b.paths) + len(b.errors) for b in batches] == [8] * 5 + [7]
  kept = [p for b in batches for p in b.paths]
  assert kept == [p for p in paths if "missing" not in p and "broken" not in p]
  errors = [(path, str(error)) for b in batches for path, error in b.errors]
  assert [path for path, _ in errors] == [paths[9], paths[30]]
  assert "cannot decode image" in errors[0][1] and "not found" in errors[1][1]
  codes, features = hasher.encode_with_features(images)
  np.testing.assert_array_equal(np.concatenate([b.codes for b in batches]), codes)
  np.testing.assert_allclose(
    np.concatenate([b.features for b in batches]), features, rtol=1e-5, atol=1e-6
  )


def test_stream_decodes_at_most_the_ring_ahead_of_the_network(hasher, files, monkeypatch):
  paths = [p for p in files[0] if "missing" not in p and "broken" not in p]
  lock, counts, most = threading.Lock(), {"read": 0, "encoded": 0}, []
  read, encode = hasher.read_image, hasher.encode_with_features

  def counting_read(path):
    with lock:
      counts["read"] += 1
      most.append(counts["read"] - counts["encoded"])
    return read(path)

  def counting_encode(images, features=True):
    result = encode(images, features)
    with lock:
      counts["encoded"] += len(images)
    return result

  monkeypatch.setattr(hasher, "read_image", counting_read)
  monkeypatch.setattr(hasher, "encode_with_features", counting_encode)
  monkeypatch.setattr(hasher, "memory_budget", 0)
  codes = [b.codes for b in image_stream.encode_files(hasher, paths)]
  assert sum(map(len, codes)) == len(paths) == counts["read"]
  assert max(most) <= (image_stream.AHEAD + 1) * 8


def test_an_error_of_the_consumer_stops_the_stream(hasher, files):
  stream = image_stream.encode_files(hasher, files[0])
  next(stream)
  stream.close()  # the decoding threads are shut down; nothing hangs
  assert list(image_stream.encode_files(hasher, [])) == []


def test_the_batch_fits_the_memory_budget_and_never_changes_the_codes(hasher, files, monkeypatch):
  images = np.concatenate([files[1]] * 4)
  full = hasher.batch_size
  assert full == hasher.config.eval.batch_size  # the tiny LeNet fits the default budget
  monkeypatch.setattr(hasher, "memory_budget", hasher._working_bytes(full) // 5)
  fitted = hasher.batch_size
  assert fitted & (fitted - 1) == 0 and 8 < fitted < full / 4
  assert hasher._working_bytes(fitted) <= hasher.memory_budget < hasher._working_bytes(2 * fitted)
  codes = hasher.encode(images)
  monkeypatch.setattr(hasher, "memory_budget", 1)
  assert hasher.batch_size == 8 and hasher.batch_size_for(3) == 8
  np.testing.assert_array_equal(hasher.encode(images), codes)
