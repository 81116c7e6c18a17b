"""List files and image-folder trees: parsing, errors, decoding, resizing, lazy vs in-memory."""

import os
import tarfile
import tempfile

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from PIL import Image

from jaxhash.data import image_folder, listfile
from jaxhash.data.listfile import LazyImages, load_list_files, parse_list_file

CLASSES = ("cat", "dog", "frog")  # written in this order on purpose: labels follow sorted names


def _save(path, array):
  os.makedirs(os.path.dirname(path), exist_ok=True)
  Image.fromarray(array).save(path)


def _random_image(rng, height=8, width=8):
  return rng.integers(0, 256, (height, width, 3), dtype=np.uint8)


@pytest.fixture
def tree(tmp_path):
  """root/{train,test}/<class>/: PNG (lossless, so pixels are known) plus a few JPEGs."""
  rng = np.random.default_rng(0)
  root = tmp_path / "tree"
  pixels = {}
  for split, per_class in (("train", 4), ("test", 2)):
    for cls in CLASSES:
      for i in range(per_class):
        ext = "jpg" if i == 0 else "png"
        rel = f"{split}/{cls}/{i:04d}.{ext}"
        pixels[rel] = _random_image(rng)
        _save(str(root / rel), pixels[rel])
  return root, pixels


def _write(path, text):
  path.write_text(text)
  return path


# ---------------------------------------------------------------------------------------- parsing


def test_parse_multi_hot_and_blank_lines(tmp_path):
  path = _write(tmp_path / "l.txt", "a.jpg 0 1 1\n\n  \nsub/b.png 1 0 0\r\nc.jpg 0 0 0")
  paths, labels = parse_list_file(path)
  assert paths == ["a.jpg", "sub/b.png", "c.jpg"]
  assert labels.dtype == np.uint8
  np.testing.assert_array_equal(labels, [[0, 1, 1], [1, 0, 0], [0, 0, 0]])


@pytest.mark.parametrize(
  "bad_line, problem",
  [
    ("c.jpg", "no labels"),
    ("c.jpg 0 2 0", "not 0 or 1"),
    ("c.jpg 0 1.0 0", "not 0 or 1"),
    ("c.jpg 0 1", "2 labels, but line 1 has 3"),
    ("c.jpg 0 1 0 0", "4 labels, but line 1 has 3"),
    (" 0 1 0", "empty image path"),
  ],
)
def test_malformed_line_names_file_and_line(tmp_path, bad_line, problem):
  path = _write(tmp_path / "bad.txt", f"a.jpg 0 1 0\n\nb.jpg 1 0 0\n{bad_line}\n")
  with pytest.raises(ValueError, match=problem) as info:
    parse_list_file(path)
  assert "bad.txt:4:" in str(info.value)


def test_missing_or_empty_list_file(tmp_path):
  with pytest.raises(FileNotFoundError, match="nope.txt"):
    parse_list_file(tmp_path / "nope.txt")
  with pytest.raises(ValueError, match="no entries"):
    parse_list_file(_write(tmp_path / "empty.txt", "\n\n"))


CORRUPTIONS = {
  "no labels": lambda labels: "x.jpg",
  "not 0 or 1": lambda labels: "x.jpg " + " ".join(labels[:-1] + ["7"]),
  "labels, but line": lambda labels: "x.jpg " + " ".join(labels + ["0"]),
  "empty image path": lambda labels: "\t" + " ".join(labels),
}


@settings(max_examples=40, deadline=None)
@given(
  labels=st.integers(2, 6).flatmap(
    lambda c: st.lists(st.lists(st.integers(0, 1), min_size=c, max_size=c), min_size=2, max_size=12)
  ),
  blanks=st.lists(st.booleans(), min_size=12, max_size=12),
  data=st.data(),
)
def test_property_round_trip_and_line_numbers(labels, blanks, data):
  lines = []
  for row, blank in zip(labels, blanks):
    if blank:
      lines.append("")
    lines.append(f"img{len(lines)}.jpg " + " ".join(map(str, row)))
  with tempfile.TemporaryDirectory() as tmp:
    path = os.path.join(tmp, "l.txt")
    with open(path, "w") as f:
      f.write("\n".join(lines) + "\n")
    _, parsed = parse_list_file(path)
    np.testing.assert_array_equal(parsed, labels)

    entries = [i for i, line in enumerate(lines) if line]
    target = data.draw(st.sampled_from(entries[1:]))  # the first entry sets the class count
    problem = data.draw(st.sampled_from(sorted(CORRUPTIONS)))
    lines[target] = CORRUPTIONS[problem](lines[target].split()[1:])
    with open(path, "w") as f:
      f.write("\n".join(lines) + "\n")
    with pytest.raises(ValueError, match=problem) as info:
      parse_list_file(path)
    assert f"l.txt:{target + 1}:" in str(info.value)


# ------------------------------------------------------------------------ image folder round trip


def test_image_folder_to_dataset_round_trip(tree):
  root, pixels = tree
  written = image_folder.write_list_files(root)
  assert sorted(written) == ["test", "train"]
  assert (root / "classes.txt").read_text().split() == sorted(CLASSES)
  ds = load_list_files(root, {"train": "train.txt", "test": written["test"]}, workers=1)
  assert ds.name == "tree"
  assert ds.images.shape == (18, 8, 8, 3) and isinstance(ds.images, np.ndarray)
  assert {g: len(i) for g, i in ds.groups.items()} == {"train": 12, "test": 6}
  assert all(i.dtype == np.int64 for i in ds.groups.values())
  names, _ = parse_list_file(written["train"])
  names += parse_list_file(written["test"])[0]
  for row, name in enumerate(names):
    cls = name.split("/")[1]
    np.testing.assert_array_equal(ds.labels[row], [c == cls for c in sorted(CLASSES)])
    if name.endswith(".png"):
      np.testing.assert_array_equal(ds.images[row], pixels[name])
    else:  # lossy: compare against Pillow's own decoding
      np.testing.assert_array_equal(
        ds.images[row], np.asarray(Image.open(root / name).convert("RGB"))
      )


def test_list_files_can_live_apart_from_the_images(tree, tmp_path):
  root, _ = tree
  written = image_folder.write_list_files(root, tmp_path / "lists", splits=["test"])
  ds = load_list_files(root, written)
  assert list(ds.groups) == ["test"] and len(ds.labels) == 6
  assert not (root / "test.txt").exists()


def test_lazy_and_in_memory_are_identical(tree, monkeypatch):
  root, _ = tree
  files = image_folder.write_list_files(root)
  monkeypatch.setattr(listfile, "_MIN_IMAGES_PER_PROCESS", 4)  # use the process pool here
  eager = load_list_files(root, files, in_memory=True, workers=2)
  lazy = load_list_files(root, files, in_memory=False, workers=2)
  assert isinstance(lazy.images, LazyImages)
  assert lazy.images.shape == eager.images.shape and lazy.images.dtype == np.uint8
  np.testing.assert_array_equal(lazy.images[:], eager.images)
  np.testing.assert_array_equal(lazy.images[3], eager.images[3])
  np.testing.assert_array_equal(lazy.images[-1], eager.images[-1])
  np.testing.assert_array_equal(lazy.images[2:11:3], eager.images[2:11:3])
  index = np.array([[5, 0], [17, 5]])
  np.testing.assert_array_equal(lazy.images[index], eager.images[index])
  np.testing.assert_array_equal(
    lazy.images[lazy.groups["test"]], eager.images[eager.groups["test"]]
  )
  np.testing.assert_array_equal(lazy.labels, eager.labels)


def test_in_memory_auto_follows_the_size_limit(tree):
  root, _ = tree
  files = image_folder.write_list_files(root)
  assert isinstance(load_list_files(root, files, workers=1).images, np.ndarray)
  small_limit = load_list_files(root, files, max_in_memory_bytes=18 * 8 * 8 * 3 - 1)
  assert isinstance(small_limit.images, LazyImages)


def test_lazy_index_errors(tree):
  root, _ = tree
  images = load_list_files(root, image_folder.write_list_files(root), in_memory=False).images
  with pytest.raises(IndexError):
    images[np.array([0, 18])]
  with pytest.raises(TypeError, match="flatnonzero"):
    images[np.ones(18, dtype=bool)]


# -------------------------------------------------------------------------------------- decoding


def _banded(width, height):
  """Red left quarter, blue middle, green right quarter."""
  image = np.zeros((height, width, 3), dtype=np.uint8)
  image[:, : width // 4, 0] = 255
  image[:, width // 4 : width - width // 4, 2] = 255
  image[:, width - width // 4 :, 1] = 255
  return image


def test_resize_modes(tmp_path):
  _save(str(tmp_path / "wide.png"), _banded(64, 32))
  _save(str(tmp_path / "tall.png"), np.transpose(_banded(64, 32), (1, 0, 2)))
  _write(tmp_path / "l.txt", "wide.png 1 0\ntall.png 0 1\n")
  stretch = load_list_files(tmp_path, {"all": "l.txt"}, resize=16).images
  shorter = load_list_files(tmp_path, {"all": "l.txt"}, resize=16, resize_mode="shorter").images
  assert stretch.shape == shorter.shape == (2, 16, 16, 3)
  # Stretch keeps the whole wide image: red on the left, green on the right.
  assert stretch[0, 8, 0, 0] == 255 and stretch[0, 8, 15, 1] == 255
  # Shorter side to 16 gives 32x16; the centre 16x16 is the blue middle only.
  inner = shorter[0, :, 1:-1]  # the outer columns blend with the neighbouring bands
  np.testing.assert_array_equal(inner, np.broadcast_to([0, 0, 255], inner.shape))
  assert shorter[1, 1, 8, 2] == 255 and shorter[1, 14, 8, 2] == 255  # tall: rows cut, not columns


def test_grey_and_rgba_become_rgb(tmp_path):
  Image.fromarray(np.full((4, 4), 100, np.uint8)).save(tmp_path / "grey.png")
  Image.fromarray(np.full((4, 4, 4), 200, np.uint8)).save(tmp_path / "rgba.png")
  _write(tmp_path / "l.txt", "grey.png 1\nrgba.png 1\n")
  images = load_list_files(tmp_path, {"all": "l.txt"}).images
  np.testing.assert_array_equal(images[:, 0, 0], [[100] * 3, [200] * 3])


def test_native_sizes_must_agree(tmp_path):
  rng = np.random.default_rng(1)
  _save(str(tmp_path / "a.png"), _random_image(rng, 8, 8))
  _save(str(tmp_path / "b.png"), _random_image(rng, 8, 9))
  _write(tmp_path / "l.txt", "a.png 1\nb.png 1\n")
  with pytest.raises(ValueError, match=r"b.png.*9x8.*resize=N"):
    load_list_files(tmp_path, {"all": "l.txt"}, workers=1)
  assert load_list_files(tmp_path, {"all": "l.txt"}, resize=6).images.shape == (2, 6, 6, 3)


def test_bad_resize_arguments(tree):
  root, _ = tree
  files = image_folder.write_list_files(root)
  with pytest.raises(ValueError, match="positive int"):
    load_list_files(root, files, resize=0)
  with pytest.raises(ValueError, match="stretch, shorter"):
    load_list_files(root, files, resize=8, resize_mode="crop")


def test_corrupt_image_is_named(tmp_path):
  (tmp_path / "broken.jpg").write_bytes(b"not a jpeg")
  _write(tmp_path / "l.txt", "broken.jpg 1\n")
  with pytest.raises(ValueError, match="broken.jpg"):
    load_list_files(tmp_path, {"all": "l.txt"}, resize=4)


# ------------------------------------------------------------------------------ dataset assembly


def test_missing_root_list_file_and_image(tree, tmp_path):
  root, _ = tree
  files = image_folder.write_list_files(root)
  with pytest.raises(FileNotFoundError, match="image root"):
    load_list_files(tmp_path / "nowhere", files)
  with pytest.raises(FileNotFoundError, match=r"'database.txt' for group 'database'"):
    load_list_files(root, {"database": "database.txt"})
  os.remove(root / "test" / "dog" / "0001.png")
  with pytest.raises(FileNotFoundError, match=r"1 of 18 .*test/dog/0001.png.*test.txt"):
    load_list_files(root, files)


def test_shared_images_are_stored_once(tree):
  root, _ = tree
  image_folder.write_list_files(root)
  train = (root / "train.txt").read_text()
  _write(root / "database.txt", train + (root / "test.txt").read_text())
  ds = load_list_files(root, {"train": "train.txt", "database": "database.txt"})
  assert len(ds.labels) == 18
  np.testing.assert_array_equal(ds.groups["database"][:12], ds.groups["train"])
  _write(root / "clash.txt", train.replace(" 1 0 0\n", " 0 1 1\n", 1))
  with pytest.raises(ValueError, match="different labels"):
    load_list_files(root, {"train": "train.txt", "clash": "clash.txt"})


def test_class_vectors_must_agree_across_files(tree):
  root, _ = tree
  image_folder.write_list_files(root)
  _write(root / "other.txt", "train/cat/0001.png 1 0\n")
  with pytest.raises(ValueError, match="share the class vector"):
    load_list_files(root, {"train": "train.txt", "other": "other.txt"})


def test_strip_prefix_for_released_absolute_paths(tree):
  root, _ = tree
  image_folder.write_list_files(root)
  lines = (root / "test.txt").read_text().splitlines()
  _write(root / "abs.txt", "".join(f"/home/author/data/{line}\n" for line in lines))
  with pytest.raises(FileNotFoundError, match="strip_prefix"):
    load_list_files(root, {"test": "abs.txt"})
  ds = load_list_files(root, {"test": "abs.txt"}, strip_prefix="/home/author/data/")
  np.testing.assert_array_equal(ds.images, load_list_files(root, {"test": "test.txt"}).images)


# ---------------------------------------------------------------------------- image-folder helper


def test_image_folder_layout_errors(tmp_path):
  _save(str(tmp_path / "flat" / "cat" / "a.png"), np.zeros((2, 2, 3), np.uint8))
  with pytest.raises(ValueError, match=r"holds images directly.*splits=\['cat'\]"):
    image_folder.write_list_files(tmp_path / "flat")
  assert image_folder.write_list_files(tmp_path, splits=["flat"])["flat"].endswith("flat.txt")
  _save(str(tmp_path / "spaced" / "s" / "my cat" / "a.png"), np.zeros((2, 2, 3), np.uint8))
  with pytest.raises(ValueError, match="whitespace"):
    image_folder.write_list_files(tmp_path / "spaced")
  with pytest.raises(FileNotFoundError, match="missing"):
    image_folder.write_list_files(tmp_path / "missing")


def test_image_folder_cli(tree, tmp_path, capsys):
  root, _ = tree
  assert image_folder.main([str(root), "--out", str(tmp_path / "out")]) == 0
  assert "train:" in capsys.readouterr().out
  assert len((tmp_path / "out" / "train.txt").read_text().splitlines()) == 12
  assert image_folder.main([str(tmp_path / "absent")]) == 1
  err = capsys.readouterr().err
  assert err.startswith("error: ") and err.count("\n") == 1


def test_prepare_cifar10_is_atomic_and_idempotent(tree, tmp_path, monkeypatch):
  root, _ = tree
  tarball = tmp_path / "tiny.tar.gz"
  with tarfile.open(tarball, "w:gz") as archive:
    for split in ("train", "test"):
      archive.add(root / split, arcname=split)
  dest = tmp_path / "data" / "cifar10"
  with pytest.raises(ValueError, match="holds 18 CIFAR-10 images, not 60000"):
    image_folder.prepare_cifar10(tarball, dest)
  assert not (dest / "train.txt").exists()  # an unverified tree never gets list files

  monkeypatch.setattr(image_folder, "CIFAR10_IMAGES", 18)
  assert image_folder.prepare_cifar10(tarball, dest) == str(dest)
  assert sorted(os.listdir(dest.parent)) == ["cifar10"]  # no temp directory left behind
  assert image_folder.prepare_cifar10(tmp_path / "gone.tar.gz", dest) == str(dest)  # no re-extract
  ds = load_list_files(dest, {"train": "train.txt", "test": "test.txt"})
  assert ds.labels.sum(axis=0).tolist() == [6, 6, 6]
  with pytest.raises(FileNotFoundError, match="gone.tar.gz"):
    image_folder.prepare_cifar10(tmp_path / "gone.tar.gz", tmp_path / "elsewhere")
