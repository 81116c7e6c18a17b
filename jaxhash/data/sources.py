"""Data sources: each turns a data config into one :class:`Dataset` with named groups.

- ``embedded``: MNIST's 10,000 t10k images shipped inside the package (group ``test``).
- ``idx``: a directory of the four MNIST IDX files, gzip or raw (groups ``train``, ``test``).
- ``tfds``: a TFDS dataset through ``tfds.data_source`` (reads without TensorFlow; imported
  lazily), groups named after the TFDS splits.
- ``listfile``: list files ``path 0 1 0 ...`` under ``config.dir`` (HashNet / DeepHash layout),
  groups named after the list files (``train``, ``test``, ``database``).
- ``imagefolder``: an image folder ``root/<class>/*`` (group ``all``) or ``root/<split>/<class>/*``
  (a group per split), decoded as list-file images are.
"""

from __future__ import annotations

import dataclasses
import os

import numpy as np

from jaxhash.data import idx
from jaxhash.data.dataset import Dataset, concatenate, one_hot

MNIST_CLASSES = 10


def embedded_mnist() -> Dataset:
  """MNIST t10k shipped with the package (:func:`jaxhash.data.idx.read_embedded_mnist`)."""
  images, labels = idx.read_embedded_mnist()
  return concatenate("mnist10k", {"test": (images, one_hot(labels, MNIST_CLASSES))})


def idx_directory(directory: str, groups=("train", "test")) -> Dataset:
  """MNIST-format IDX files in ``directory``: ``train`` reads ``train-*``, ``test`` ``t10k-*``."""
  if not os.path.isdir(directory):
    raise FileNotFoundError(
      f"data directory {directory!r} does not exist; set config.data.dir to a directory holding "
      "the four MNIST IDX files (train-images-idx3-ubyte.gz, ...; see docs/data.md)."
    )
  prefixes = {"train": "train", "test": "t10k"}
  parts = {}
  for group in groups:
    images, labels = idx.read_mnist_split(directory, prefixes[group])
    parts[group] = (images, one_hot(labels, MNIST_CLASSES))
  return concatenate("mnist", parts)


def tfds_dataset(name: str, splits, data_dir: str | None = None) -> Dataset:
  """Reads whole TFDS splits into memory (small image sets: MNIST, CIFAR-10)."""
  try:
    import tensorflow_datasets as tfds  # heavy; only this source needs it
  except ImportError:
    raise ImportError(
      "the tfds source needs tensorflow-datasets: pip install 'jaxhash[tfds]', or set "
      "config.data.dir to read local files instead."
    ) from None
  parts = {}
  for split in splits:
    try:
      source = tfds.data_source(name, split=split, data_dir=data_dir, download=False)
    except Exception as e:  # TFDS raises assorted types for a missing or unprepared dataset
      raise FileNotFoundError(
        f"TFDS dataset {name!r} split {split!r} is not available offline ({type(e).__name__}: "
        f"{str(e).splitlines()[0] if str(e) else ''}); prepare it with tfds first or set "
        "config.data.dir to local files."
      ) from None
    records = [source[i] for i in range(len(source))]  # (the mock's __getitems__ is broken)
    images = np.stack([np.asarray(r["image"], dtype=np.uint8) for r in records])
    class_ids = np.array([int(r["label"]) for r in records], dtype=np.int64)
    label = source.dataset_info.features["label"]
    parts[split] = (images, one_hot(class_ids, label.num_classes))
  return concatenate(name, parts, tuple(label.names))


def list_files(directory: str, groups, image_root: str | None, image_size: int | None) -> Dataset:
  """List files ``{group}.txt`` in ``directory``; image paths relative to ``image_root``."""
  from jaxhash.data import listfile

  if not os.path.isdir(directory):
    raise FileNotFoundError(
      f"data directory {directory!r} does not exist; set config.data.dir to the directory that "
      "holds the list files (train.txt, test.txt, database.txt)."
    )
  files = {g: os.path.join(directory, f"{g}.txt") for g in groups}
  ds = listfile.load_list_files(image_root or directory, files, resize=image_size)
  return dataclasses.replace(ds, classes=_class_names(directory, ds.num_classes))


def _class_names(directory: str, num_classes: int) -> tuple[str, ...] | None:
  """The names in ``classes.txt`` (written beside list files by ``jaxhash.data.image_folder``),
  when it names one class per label column."""
  path = os.path.join(directory, "classes.txt")
  if not os.path.isfile(path):
    return None
  with open(path, encoding="utf-8", errors="replace") as f:
    names = tuple(line.strip() for line in f if line.strip())
  return names if len(names) == num_classes else None


def image_folder(directory: str, image_size: int | None) -> Dataset:
  """An image-folder tree (``jaxhash.data.image_folder``), decoded to RGB, resized when asked."""
  from jaxhash.data.image_folder import load_image_folder

  if not os.path.isdir(directory):
    raise FileNotFoundError(
      f"data directory {directory!r} does not exist; set config.data.dir to an image folder "
      "laid out as root/<class>/*.jpg or root/<split>/<class>/*.jpg."
    )
  return load_image_folder(directory, image_size)
