"""IDX reader: round trips (raw and gzip), and one clear error for each kind of bad file."""

import gzip
import os

import numpy as np
import pytest

from jaxhash.data import idx, sources


def write_mnist_dir(directory, n=12, seed=0, gz=True):
  rng = np.random.default_rng(seed)
  images = rng.integers(0, 256, (n, 28, 28), dtype=np.uint8)
  labels = (np.arange(n) % 10).astype(np.uint8)
  for prefix in ("train", "t10k"):
    for kind, dims, array in (("images", 3, images), ("labels", 1, labels)):
      path = os.path.join(directory, f"{prefix}-{kind}-idx{dims}-ubyte")
      idx.write_idx(path, array)
      if gz:
        with open(path, "rb") as f, gzip.open(path + ".gz", "wb") as g:
          g.write(f.read())
        os.remove(path)
  return images, labels


@pytest.mark.parametrize("gz", [True, False])
def test_round_trip(tmp_path, gz):
  images, labels = write_mnist_dir(tmp_path, gz=gz)
  ds = sources.idx_directory(str(tmp_path))
  assert ds.images.shape == (24, 28, 28, 1) and ds.images.dtype == np.uint8
  np.testing.assert_array_equal(ds.images[ds.groups["test"], ..., 0], images)
  np.testing.assert_array_equal(ds.labels[ds.groups["train"]].argmax(1), labels)


def test_truncated_file(tmp_path):
  path = tmp_path / "x-idx3-ubyte"
  idx.write_idx(str(path), np.zeros((5, 4, 4), np.uint8))
  path.write_bytes(path.read_bytes()[:-7])
  with pytest.raises(ValueError, match=r"truncated.*80 bytes of data, found 73"):
    idx.read_idx(str(path))


def test_truncated_gzip(tmp_path):
  write_mnist_dir(tmp_path)
  path = tmp_path / "train-images-idx3-ubyte.gz"
  path.write_bytes(path.read_bytes()[:200])
  with pytest.raises(ValueError, match="train-images-idx3-ubyte.gz"):
    sources.idx_directory(str(tmp_path))


def test_bad_magic(tmp_path):
  path = tmp_path / "bad"
  path.write_bytes(b"\x00\x00\x0d\x03" + b"\x00" * 20)
  with pytest.raises(ValueError, match="bad IDX magic number"):
    idx.read_idx(str(path))


def test_dimension_mismatch_between_files(tmp_path):
  write_mnist_dir(tmp_path, gz=False)
  idx.write_idx(str(tmp_path / "train-labels-idx1-ubyte"), np.zeros(5, np.uint8))
  with pytest.raises(ValueError, match="12 images but .* 5 labels"):
    sources.idx_directory(str(tmp_path))


def test_missing_directory_and_file(tmp_path):
  with pytest.raises(FileNotFoundError, match="does not exist"):
    sources.idx_directory(str(tmp_path / "nope"))
  with pytest.raises(FileNotFoundError, match="train-images-idx3-ubyte"):
    sources.idx_directory(str(tmp_path))


def test_embedded_mnist_is_t10k():
  ds = sources.embedded_mnist()
  assert ds.images.shape == (10000, 28, 28, 1)
  assert np.bincount(ds.labels.argmax(1)).tolist() == [
    980,
    1135,
    1032,
    1010,
    982,
    892,
    958,
    1028,
    974,
    1009,
  ]
