"""Image-folder trees: datasets read straight from folders, and list files written for them.

Three layouts, told apart by where the images are:

- ``root/*.jpg``: one image set without labels (group ``all``, no classes), e.g. a folder of
  photos: the methods that need no labels fit on it, and nothing is evaluated;
- ``root/<class>/*.jpg``: one image set (group ``all``), e.g. a user's photos sorted by subject;
- ``root/<split>/<class>/*.jpg``: one group per split directory (``train/airplane/0001.jpg``).

Classes are the class directory names of all splits together, sorted, each a one-hot vector;
images are listed by group, class and file name, so a tree read directly and the list files
written for it give the same dataset. Images are any format Pillow reads (``IMAGE_EXTENSIONS``).
``find_images`` lists the images of a tree of any depth, for indexing.

    python -m jaxhash.data.image_folder ROOT [--out DIR] [--splits train,test]   # list files
    python -m jaxhash.data.image_folder ROOT --mnist-digits        # a demo folder of digits
    python -m jaxhash.data.image_folder ROOT --cifar10-python cifar-10-python.tar.gz
"""

from __future__ import annotations

import dataclasses
import os
import shutil
import sys
import tarfile
import tempfile
from typing import Sequence

import numpy as np

from jaxhash.data import idx
from jaxhash.errors import UsageError
from jaxhash.io_utils import atomic_write_text

IMAGE_EXTENSIONS = (
  ".jpg",
  ".jpeg",
  ".png",
  ".bmp",
  ".gif",
  ".tif",
  ".tiff",
  ".webp",
  ".ppm",
  ".pgm",
  ".pbm",
)
SINGLE_GROUP = "all"  # the group of a root/<class>/* tree
CIFAR10_SPLITS = ("train", "test")
CIFAR10_IMAGES = 60_000


def write_list_files(
  root: str | os.PathLike,
  out_dir: str | os.PathLike | None = None,
  splits: Sequence[str] | None = None,
) -> dict[str, str]:
  """Writes ``<split>.txt`` per split and ``classes.txt`` into ``out_dir`` (default ``root``).

  ``splits`` defaults to every subdirectory of ``root``. Returns ``{split: list-file path}``.
  """
  classes, lines = scan(root, splits)
  return _write(os.fspath(out_dir if out_dir is not None else root), classes, lines)


def scan(root: str | os.PathLike, splits: Sequence[str] | None = None):
  """(sorted class names, {split: list-file lines}) of a root/<split>/<class>/ tree; no writes."""
  root = os.fspath(root)
  _check_root(root)
  splits = list(splits) if splits is not None else _subdirs(root)
  if not splits:
    raise UsageError(
      f"{root!r} has no split directories; lay it out as root/<split>/<class>/*.jpg."
    )
  class_dirs = {split: _class_dirs(root, split) for split in splits}
  classes = sorted(set().union(*class_dirs.values()))
  lines = {split: _split_lines(root, split, classes) for split in splits}
  return classes, lines


def scan_tree(root: str | os.PathLike) -> tuple[list[str], dict[str, tuple[list[str], list[int]]]]:
  """(sorted class names, {group: (paths relative to root, class ids)}) of any layout; a flat
  folder has no classes and no ids."""
  root = os.fspath(root)
  _check_root(root)
  flat = _images_in(root)
  if flat:
    if len(find_images(root)) > len(flat):
      raise UsageError(
        f"{root!r} holds images both directly and in subfolders; put them all in "
        "class folders (labelled) or all directly in it (no labels)."
      )
    return [], {SINGLE_GROUP: (flat, [])}
  subdirs = _subdirs(root)
  if any(_images_in(os.path.join(root, d)) for d in subdirs):
    classes = [d for d in subdirs if _images_in(os.path.join(root, d))]
    groups = {SINGLE_GROUP: ""}
  else:
    groups = {split: split for split in subdirs if _subdirs(os.path.join(root, split))}
    if not groups:
      raise UsageError(
        f"{root!r} holds no images in root/<class>/ or root/<split>/<class>/; put "
        f"each class's images ({', '.join(IMAGE_EXTENSIONS)}) in its own folder."
      )
    classes = sorted(set().union(*(_class_dirs(root, split) for split in groups.values())))
  entries = {}
  for group, prefix in groups.items():
    paths, ids = [], []
    for k, cls in enumerate(classes):
      names = _images_in(os.path.join(root, prefix, cls))
      paths += [os.path.join(prefix, cls, name) for name in names]
      ids += [k] * len(names)
    if not paths:
      raise UsageError(f"{os.path.join(root, prefix)!r} holds no images in its class folders.")
    entries[group] = (paths, ids)
  return classes, entries


def load_image_folder(root: str | os.PathLike, resize: int | None = None):
  """A Dataset of a tree in any layout (see the module docstring); groups as in ``scan_tree``."""
  from jaxhash.data.dataset import one_hot
  from jaxhash.data.listfile import images_dataset

  root = os.fspath(root)
  classes, entries = scan_tree(root)
  paths, ids, groups = [], [], {}
  for group, (group_paths, group_ids) in entries.items():
    groups[group] = np.arange(len(paths), len(paths) + len(group_paths), dtype=np.int64)
    paths += [os.path.join(root, p) for p in group_paths]
    ids += group_ids
  labels = one_hot(ids, len(classes)) if classes else np.zeros((len(paths), 0), np.uint8)
  ds = images_dataset(os.path.basename(os.path.abspath(root)), paths, labels, groups, resize=resize)
  return dataclasses.replace(ds, classes=tuple(classes))


def find_images(root: str | os.PathLike) -> list[str]:
  """Every image file under ``root``, at any depth, sorted (hidden files and folders skipped)."""
  root = os.fspath(root)
  _check_root(root)
  found = []
  for directory, dirs, files in os.walk(root):
    dirs[:] = sorted(d for d in dirs if not d.startswith("."))
    found += [os.path.join(directory, name) for name in sorted(filter(_is_image, files))]
  return found


def _check_root(root: str) -> None:
  if not os.path.isdir(root):
    raise FileNotFoundError(
      f"image folder {root!r} does not exist; pass a directory of images "
      "(root/<class>/*.jpg or root/<split>/<class>/*.jpg)."
    )


def _subdirs(directory: str) -> list[str]:
  return sorted(e.name for e in os.scandir(directory) if e.is_dir() and not e.name.startswith("."))


def _is_image(name: str) -> bool:
  return not name.startswith(".") and name.lower().endswith(IMAGE_EXTENSIONS)


def _images_in(directory: str) -> list[str]:
  """Sorted names of the image files directly in ``directory`` (none if it is not a folder)."""
  if not os.path.isdir(directory):
    return []
  return sorted(e.name for e in os.scandir(directory) if e.is_file() and _is_image(e.name))


def _class_dirs(root: str, split: str) -> list[str]:
  split_dir = os.path.join(root, split)
  if not os.path.isdir(split_dir):
    raise FileNotFoundError(
      f"split directory {split_dir!r} does not exist; pass splits that are "
      f"subdirectories of {root!r}."
    )
  if _images_in(split_dir):
    raise UsageError(
      f"{split_dir!r} holds images directly, but images go in root/<split>/<class>/; for a tree "
      f"root/<class>/*.jpg pass its parent as root and splits=[{split!r}]."
    )
  classes = _subdirs(split_dir)
  if not classes:
    raise UsageError(f"{split_dir!r} has no class directories; put images in {split_dir}/<class>/.")
  return classes


def _split_lines(root: str, split: str, classes: list[str]) -> list[str]:
  """One line 'split/class/file 0 .. 1 .. 0' per image, classes in order, files sorted by name."""
  lines = []
  for k, cls in enumerate(classes):
    one_hot = " ".join("1" if j == k else "0" for j in range(len(classes)))
    for name in _images_in(os.path.join(root, split, cls)):
      path = f"{split}/{cls}/{name}"
      if any(c.isspace() for c in path):
        raise UsageError(
          f"{os.path.join(root, path)!r} has whitespace in its path, which list "
          "files cannot hold; rename it, or train on the folder directly "
          "(config.data.dir=ROOT reads image folders)."
        )
      lines.append(f"{path} {one_hot}\n")
  if not lines:
    raise UsageError(
      f"{os.path.join(root, split)!r} holds no images ({', '.join(IMAGE_EXTENSIONS)})."
    )
  return lines


def _write(out_dir: str, classes: list[str], lines: dict[str, list[str]]) -> dict[str, str]:
  os.makedirs(out_dir, exist_ok=True)
  atomic_write_text(os.path.join(out_dir, "classes.txt"), "".join(f"{c}\n" for c in classes))
  written = {}
  for split, split_lines in lines.items():
    written[split] = os.path.join(out_dir, f"{split}.txt")
    atomic_write_text(written[split], "".join(split_lines))
  return written


def prepare_cifar10(tarball: str | os.PathLike, dest: str | os.PathLike) -> str:
  """Extracts the CIFAR-10 JPEG tarball to ``dest`` (once) and writes its list files there.

  Returns ``dest``, which then holds ``train/``, ``test/``, ``train.txt``, ``test.txt`` and
  ``classes.txt``. Extraction goes to a temp directory renamed into place, and the list files are
  written only after all 60,000 images are found, so an interrupted run is redone, never used.
  """
  dest = os.fspath(dest)
  if all(os.path.isfile(os.path.join(dest, f"{s}.txt")) for s in CIFAR10_SPLITS):
    return dest
  if not os.path.isdir(os.path.join(dest, CIFAR10_SPLITS[0])):
    _extract_into_place(os.fspath(tarball), dest)
  classes, lines = scan(dest, CIFAR10_SPLITS)
  found = sum(len(split_lines) for split_lines in lines.values())
  if found != CIFAR10_IMAGES:
    raise UsageError(
      f"{dest!r} holds {found} CIFAR-10 images, not {CIFAR10_IMAGES}; delete it and "
      "run again to re-extract."
    )
  _write(dest, classes, lines)
  return dest


def _extract_into_place(tarball: str, dest: str) -> None:
  if not os.path.isfile(tarball):
    raise FileNotFoundError(
      f"CIFAR-10 tarball {tarball!r} not found; pass the path of a tarball "
      "of train/<class>/*.jpg and test/<class>/*.jpg (see docs/data.md)."
    )
  parent = os.path.dirname(os.path.abspath(dest))
  os.makedirs(parent, exist_ok=True)
  tmp = tempfile.mkdtemp(dir=parent, prefix=f".{os.path.basename(dest)}.extract-")
  try:
    with tarfile.open(tarball) as archive:
      archive.extractall(tmp, **({"filter": "data"} if hasattr(tarfile, "data_filter") else {}))
    os.chmod(tmp, 0o755)  # mkdtemp makes it private; dest should read like any extracted tree
    try:
      os.rename(tmp, dest)  # also replaces an empty dest
    except OSError:
      if not os.path.isdir(os.path.join(dest, CIFAR10_SPLITS[0])):  # else a concurrent run won
        raise UsageError(
          f"{dest!r} exists and is not a CIFAR-10 tree; remove it or choose an empty directory."
        ) from None
  finally:
    shutil.rmtree(tmp, ignore_errors=True)


def cifar10_from_python(tarball: str | os.PathLike, dest: str | os.PathLike) -> str:
  """Writes the official CIFAR-10 python version (``cifar-10-python.tar.gz``) as an image folder.

  ``dest`` then holds ``train/<class>/NNNN.png`` (5,000 per class, from data_batch_1..5) and
  ``test/<class>/NNNN.png`` (1,000 per class, from test_batch), numbered per class in the batches'
  order, lossless. It is written into a temp directory renamed into place, so it is complete or
  absent. Returns ``dest``. (The pickles are unpickled: use the official file only.)
  """
  import io
  import pickle

  from PIL import Image

  dest, tarball = os.fspath(dest), os.fspath(tarball)
  if os.path.isdir(os.path.join(dest, "train")):
    return dest
  if not os.path.isfile(tarball):
    raise FileNotFoundError(
      f"{tarball!r} not found; download cifar-10-python.tar.gz from "
      "https://www.cs.toronto.edu/~kriz/cifar.html."
    )
  parent = os.path.dirname(os.path.abspath(dest))
  os.makedirs(parent, exist_ok=True)
  tmp = tempfile.mkdtemp(dir=parent, prefix=f".{os.path.basename(dest)}.convert-")
  try:
    with tarfile.open(tarball) as archive:

      def batch(name):
        member = next((m for m in archive.getmembers() if m.name.endswith("/" + name)), None)
        if member is None:
          raise UsageError(f"{tarball!r} has no {name}; is it the CIFAR-10 python version?")
        return pickle.load(io.BytesIO(archive.extractfile(member).read()), encoding="bytes")

      classes = [c.decode() for c in batch("batches.meta")[b"label_names"]]
      parts = {"train": [f"data_batch_{i}" for i in range(1, 6)], "test": ["test_batch"]}
      for split, names in parts.items():
        counts = [0] * len(classes)
        for name in names:
          content = batch(name)
          images = (
            np.asarray(content[b"data"], np.uint8).reshape(-1, 3, 32, 32).transpose(0, 2, 3, 1)
          )
          for image, label in zip(images, content[b"labels"]):
            folder = os.path.join(tmp, split, classes[label])
            os.makedirs(folder, exist_ok=True)
            Image.fromarray(image).save(os.path.join(folder, f"{counts[label]:04d}.png"))
            counts[label] += 1
    os.chmod(tmp, 0o755)
    os.rename(tmp, dest)
  finally:
    shutil.rmtree(tmp, ignore_errors=True)
  return dest


def write_mnist_digits(dest: str | os.PathLike, count: int | None = None) -> int:
  """Writes the package's MNIST t10k images as ``dest/<digit>/NNNNN.png`` (NNNNN: the image's
  t10k index), the first ``count`` of them (default all 10,000): a folder to index and search
  with the main job's run. Returns how many were written."""
  from PIL import Image

  images, labels = idx.read_embedded_mnist()
  count = len(labels) if count is None else min(count, len(labels))
  for i in range(count):
    folder = os.path.join(os.fspath(dest), str(int(labels[i])))
    os.makedirs(folder, exist_ok=True)
    Image.fromarray(images[i, :, :, 0]).save(os.path.join(folder, f"{i:05d}.png"))
  return count


def define_flags(argv: list[str]):
  from absl import flags

  from jaxhash import cli

  values = cli.new_flags()
  flags.DEFINE_bool(
    "mnist-digits",
    False,
    "Instead write the package's 10,000 MNIST t10k images as ROOT/<digit>/NNNNN.png: a demo "
    "folder to index and search.",
    flag_values=values,
  )
  flags.DEFINE_string(
    "cifar10-python",
    None,
    "TARBALL: first write the official cifar-10-python.tar.gz into ROOT as train/<class>/*.png, "
    "test/<class>/*.png.",
    flag_values=values,
  )
  flags.DEFINE_string(
    "out", None, "Where to write <split>.txt and classes.txt (default: ROOT).", flag_values=values
  )
  flags.DEFINE_list(
    "splits",
    None,
    "Split directories, comma-separated (default: all of ROOT's).",
    flag_values=values,
  )
  return values


def run(values, positional: list[str]) -> None:
  if len(positional) != 1:
    raise UsageError("pass one ROOT: the directory holding <split>/<class>/*.jpg|png.")
  root = positional[0]
  if values["mnist-digits"].value:
    print(f"{write_mnist_digits(root)} images written to {root}/<digit>/")
    return
  if values["cifar10-python"].value:
    cifar10_from_python(values["cifar10-python"].value, root)
  for split, path in write_list_files(root, values.out, values.splits).items():
    print(f"{split}: {path}")


def main(argv: Sequence[str] | None = None) -> int:
  from jaxhash import cli  # here: the data modules do not import absl

  return cli.main(argv, __doc__, define_flags, run, args=True)


if __name__ == "__main__":
  sys.exit(main())
