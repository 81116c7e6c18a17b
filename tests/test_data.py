"""Protocols, split files, the TFDS source (tfds.testing.mock_data) and on-device augmentation."""

import jax
import ml_collections
import numpy as np
import pytest

from jaxhash.data import augment, protocols, sources
from jaxhash.data.dataset import Dataset, one_hot


def synthetic(groups: dict, classes=10, seed=0) -> Dataset:
  rng = np.random.default_rng(seed)
  n = sum(groups.values())
  ids = np.concatenate([np.arange(k) % classes for k in groups.values()])
  start, index = 0, {}
  for name, k in groups.items():
    index[name] = np.arange(start, start + k)
    start += k
  return Dataset(
    "synthetic", rng.integers(0, 256, (n, 4, 4, 1), dtype=np.uint8), one_hot(ids, classes), index
  )


def test_mnist10k_split_sizes_classes_and_determinism():
  ds = sources.embedded_mnist()
  proto = protocols.get_protocol("mnist10k")
  split = protocols.make_split(proto, ds, seed=0)
  assert len(split.query) == 1000 and len(split.train) == 9000
  np.testing.assert_array_equal(split.train, split.database)
  assert np.bincount(ds.labels[split.query].argmax(1)).tolist() == [100] * 10
  assert not set(split.query) & set(split.train)
  np.testing.assert_array_equal(protocols.make_split(proto, ds, seed=0).query, split.query)
  assert not np.array_equal(protocols.make_split(proto, ds, seed=1).query, split.query)


def test_cifar10_protocol_counts():
  ds = synthetic({"train": 6000, "test": 1500})
  split = protocols.make_split(protocols.get_protocol("cifar10"), ds, seed=3)
  assert len(split.query) == 100 * 10 and len(split.train) == 500 * 10
  assert set(split.query) <= set(ds.groups["test"]) and set(split.train) <= set(ds.groups["train"])
  assert len(split.database) == 7500 - 1000 - 5000
  assert not (set(split.database) & (set(split.query) | set(split.train)))


def test_released_lists_protocol_uses_groups_as_given():
  ds = synthetic({"train": 30, "test": 10, "database": 50})
  split = protocols.make_split(protocols.get_protocol("nuswide"), ds, seed=0)
  np.testing.assert_array_equal(split.database, ds.groups["database"])
  assert protocols.get_protocol("nuswide").map_at == (5000,)


def test_limit_keeps_the_first_images_of_each_group_and_is_validated():
  from jaxhash import config as config_lib
  from jaxhash.data.dataset import first_of_each_group

  ds = synthetic({"train": 30, "test": 10})
  train, test = ds.groups["train"], ds.groups["test"]
  cut = first_of_each_group(ds, 4)
  assert {name: len(idx) for name, idx in cut.groups.items()} == {"train": 4, "test": 4}
  for name, original in (("train", train[:4]), ("test", test[:4])):
    np.testing.assert_array_equal(cut.images[cut.groups[name]], ds.images[original])
    np.testing.assert_array_equal(cut.labels[cut.groups[name]], ds.labels[original])
  assert len(cut.labels) == 8
  config = config_lib.base_config("dlbhc").unlock()
  config.data.limit = -1
  with pytest.raises(ValueError, match="config.data.limit"):
    config_lib.validate(config)


def test_missing_group_and_unknown_protocol_are_clear():
  with pytest.raises(ValueError, match="needs the \\['train'\\] split"):
    protocols.make_split(protocols.get_protocol("mnist"), synthetic({"test": 20}), seed=0)
  with pytest.raises(ValueError, match="unknown protocol 'mnist10'"):
    protocols.get_protocol("mnist10")


def test_split_files_round_trip_and_refuse_another_split(tmp_path):
  ds = synthetic({"test": 2000})
  proto = protocols.get_protocol("mnist10k")
  split = protocols.make_split(proto, ds, seed=0)
  protocols.save_or_check_split(split, str(tmp_path), "header")
  again = protocols.load_split(str(tmp_path))
  for name in protocols.SPLIT_NAMES:
    np.testing.assert_array_equal(getattr(again, name), getattr(split, name))
  protocols.save_or_check_split(split, str(tmp_path), "header")  # same split: accepted
  with pytest.raises(ValueError, match="different train split"):
    protocols.save_or_check_split(protocols.make_split(proto, ds, seed=1), str(tmp_path), "header")
  # The same indices under another record (another dataset, or an earlier jaxhash's header):
  # the message shows what the file records.
  with pytest.raises(
    ValueError, match="recorded as 'header' \\(the same image indices\\), not 'v2'"
  ):
    protocols.save_or_check_split(split, str(tmp_path), "v2")


def test_tfds_source_under_mock_data():
  tfds = pytest.importorskip("tensorflow_datasets")
  with tfds.testing.mock_data(num_examples=30):
    ds = sources.tfds_dataset("mnist", ("train", "test"))
  assert ds.images.shape == (60, 28, 28, 1) and ds.num_classes == 10
  assert sorted(ds.groups) == ["test", "train"]


def test_one_training_step_on_tfds_mnist_under_mock_data(tmp_path):
  tfds = pytest.importorskip("tensorflow_datasets")
  from conftest import load_config
  from jaxhash.run import trainer

  config = load_config("test", "steps=1").unlock()
  config.data.protocol = "mnist"  # no data.dir: read through tfds.data_source
  with tfds.testing.mock_data(num_examples=64):
    results = trainer.train_and_evaluate(config.lock(), str(tmp_path / "run"))
  assert results["step"] == 1 and results["num_queries"] == 64 and results["num_database"] == 64
  assert 0.0 <= results["codes"]["map@all"] <= 1.0


def data_config(**kw):
  base = dict(crop=0, pad=0, flip=False, mean=(0.0,), std=(1.0,))
  return ml_collections.ConfigDict({**base, **kw})


def test_augment_shapes_and_eval_centre_crop():
  images = np.arange(2 * 6 * 6 * 3, dtype=np.uint8).reshape(2, 6, 6, 3)
  key = jax.random.key(0)
  train = augment.preprocess(images, key, data_config(crop=4, flip=True), train=True)
  assert train.shape == (2, 4, 4, 3) and train.dtype == np.float32
  evald = augment.preprocess(images, None, data_config(crop=4), train=False)
  np.testing.assert_allclose(evald, images[:, 1:5, 1:5].astype(np.float32) / 255.0)


def test_random_crops_are_windows_of_the_padded_image():
  images = np.random.default_rng(0).integers(0, 256, (8, 5, 5, 1), dtype=np.uint8)
  out = np.asarray(
    augment.preprocess(images, jax.random.key(1), data_config(crop=5, pad=1, flip=True), True)
  )
  padded = np.pad(images.astype(np.float32) / 255.0, ((0, 0), (1, 1), (1, 1), (0, 0)))
  for i in range(8):
    windows = [padded[i, y : y + 5, x : x + 5] for y in range(3) for x in range(3)]
    windows += [w[:, ::-1] for w in windows]
    assert any(np.allclose(out[i], w) for w in windows)


def write_image_tree(root, classes=3, per_split=(("train", 8), ("test", 4)), size=10, seed=0):
  from PIL import Image

  rng = np.random.default_rng(seed)
  for split, count in per_split:
    for c in range(classes):
      directory = root / split / f"class{c}"
      directory.mkdir(parents=True)
      for i in range(count):
        pixels = rng.integers(0, 256, (size, size, 3), dtype=np.uint8)
        Image.fromarray(pixels).save(directory / f"{i}.png")


def test_lazy_and_in_memory_images_give_the_same_batches(tmp_path):
  from jaxhash.data.batches import TrainBatches
  from jaxhash.data.image_folder import write_list_files
  from jaxhash.data.listfile import load_list_files
  from jaxhash.parallel import data_mesh

  write_image_tree(tmp_path)
  files = write_list_files(tmp_path)
  eager = load_list_files(tmp_path, files, in_memory=True)
  lazy = load_list_files(tmp_path, files, in_memory=False)
  assert not isinstance(lazy.images, np.ndarray)
  train = eager.groups["train"]
  mesh = data_mesh()
  on_device, from_disk = (
    TrainBatches(eager, train, 5, 0, mesh),
    TrainBatches(lazy, train, 5, 0, mesh),
  )
  take_on_device, take_from_disk = jax.jit(on_device.take), jax.jit(from_disk.take)
  for first in (0, 3):  # steps 3..5 cross an epoch boundary (4 batches per epoch)
    (shared, per_step), (disk_shared, disk_per_step) = (
      on_device.get(first, 3),
      from_disk.get(first, 3),
    )
    for i in range(3):  # each step of a three-step call is the batch a one-step call gets
      step = jax.tree.map(lambda x, i=i: x[i], per_step)
      alone = jax.tree.map(lambda x: x[0], on_device.get(first + i)[1])
      jax.tree.map(np.testing.assert_array_equal, step, alone)
      for a, b in zip(
        take_on_device(shared, step),
        take_from_disk(disk_shared, jax.tree.map(lambda x, i=i: x[i], disk_per_step)),
      ):
        np.testing.assert_array_equal(a, b)


def test_training_end_to_end_through_list_files(tmp_path):
  from conftest import load_config
  from jaxhash.data.image_folder import write_list_files
  from jaxhash.run import trainer

  write_image_tree(tmp_path / "images")
  write_list_files(tmp_path / "images")
  config = load_config("test", "hashnet,steps=1").unlock()
  config.data.protocol = "cifar10-2"  # queries = test, training set = database = train
  config.data.dir = str(tmp_path / "images")
  config.data.image_size, config.data.crop, config.data.flip = 32, 28, True
  config.data.mean, config.data.std = (0.5, 0.5, 0.5), (0.25, 0.25, 0.25)
  config.train.batch_size = 6
  results = trainer.train_and_evaluate(config.lock(), str(tmp_path / "run"))
  assert results["num_queries"] == 12 and results["num_database"] == 24 and results["step"] == 1
  assert 0.0 <= results["codes"]["map@all"] <= 1.0


@pytest.mark.parametrize("name", ["mnist-unseen", "cifar10-unseen"])
def test_unseen_protocols_share_no_class_between_training_and_retrieval(name):
  ds = synthetic({"train": 600, "test": 200})
  split = protocols.make_split(protocols.get_protocol(name), ds, seed=0)
  classes = lambda indices: set(ds.labels[indices].argmax(axis=1).tolist())
  assert classes(split.train) == set(range(7))
  assert classes(split.query) == classes(split.database) == {7, 8, 9}
  assert not classes(split.train) & (classes(split.query) | classes(split.database))
  # Every train image is in the training set or the database, every test image of 7-9 a query.
  assert sorted(np.concatenate([split.train, split.database])) == list(ds.groups["train"])
  assert set(split.query) == {i for i in ds.groups["test"] if ds.labels[i].argmax() >= 7}


def test_unseen_protocol_needs_single_labels_and_both_kinds_of_class():
  proto = protocols.get_protocol("cifar10-unseen")
  ds = synthetic({"train": 30, "test": 10})
  with_labels = lambda labels: Dataset(ds.name, ds.images, labels, ds.groups)
  also_class_0 = np.maximum(ds.labels, one_hot(np.zeros(40, int), 10))
  with pytest.raises(ValueError, match="need single-label data"):
    protocols.make_split(proto, with_labels(also_class_0), seed=0)
  classes_0_to_6 = one_hot(np.arange(40) % 7, 10)
  with pytest.raises(ValueError, match="leaves the query and database set empty"):
    protocols.make_split(proto, with_labels(classes_0_to_6), seed=0)


def write_mnist_idx(directory, train: int, test: int):
  """The embedded t10k's first ``train`` images written as MNIST's train files, the next ``test``
  as its t10k files; returns both parts' classes."""
  from jaxhash.data import idx

  ds = sources.embedded_mnist()
  images, classes = ds.images[..., 0], ds.labels.argmax(axis=1).astype(np.uint8)
  for prefix, part in (("train", slice(0, train)), ("t10k", slice(train, train + test))):
    idx.write_idx(str(directory / f"{prefix}-images-idx3-ubyte"), images[part])
    idx.write_idx(str(directory / f"{prefix}-labels-idx1-ubyte"), classes[part])
  return ds.labels[:train].argmax(axis=1), ds.labels[train : train + test].argmax(axis=1)


def test_training_end_to_end_on_mnist_unseen(tmp_path):
  import json

  from conftest import load_config
  from jaxhash.run import trainer

  (tmp_path / "mnist").mkdir()
  train_classes, test_classes = write_mnist_idx(tmp_path / "mnist", 1200, 400)
  config = load_config("test", "steps=2").unlock()
  config.data.protocol, config.data.dir = "mnist-unseen", str(tmp_path / "mnist")  # IDX files
  config.eval.classifier_baseline = True  # a ten-way classifier that never saw classes 7-9
  workdir = tmp_path / "run"
  results = trainer.train_and_evaluate(config.lock(), str(workdir))
  split = protocols.load_split(str(workdir / "splits"))  # indices: train group, then test group
  assert set(train_classes[split.train]) == set(range(7))
  assert set(train_classes[split.database]) == set(test_classes[split.query - 1200]) == {7, 8, 9}
  assert results["num_queries"] == (test_classes >= 7).sum() == len(split.query)
  assert results["num_database"] == (train_classes >= 7).sum() == len(split.database)
  assert json.loads((workdir / "model.json").read_text())["num_classes"] == 10
  assert results["protocol"] == "mnist-unseen" and results["step"] == 2
  assert 0.0 < results["codes"]["map@all"] <= 1.0
  assert results["classifier"]["bits"] == 10 and 0.0 < results["classifier"]["map@all"] <= 1.0
