"""Retrieval protocols: which images train the model, which are queries, which form the database.

Every split is drawn from ``config.seed`` and written into the workdir as index files
(``splits/{train,query,database}.txt``, one dataset index per line), so a result can be audited and
rerun. Indices refer to the :class:`Dataset` the protocol's source produced.

``custom`` is for a user's own images: given the groups ``train`` and ``test`` (or ``query``), and
optionally ``database`` (default: the training set), it uses them as they are; given one image set
(an image folder ``root/<class>/*``, or one list file), it draws ``data.query_fraction`` of it as
queries and makes the rest the database, of which ``data.train_fraction`` trains the model. A flat
folder of images (no class folders) is such a set, without labels: only methods that need none
fit on it, and its queries serve no evaluation.

``cifar10-unseen`` and ``mnist-unseen`` measure retrieval among classes the network never saw, after
A. Sablayrolles, M. Douze, N. Usunier, H. Jégou, "How should we evaluate supervised hashing?"
(ICASSP 2017), who found that on the standard protocols a classifier's predicted class, used as a
code, beats most supervised hashing methods, and proposed training on 75% of the classes and
searching the others. The first three quarters of the classes (rounded down) are seen; of ten:
the training set is the train group's images of classes 0–6, the queries are the test group's
images of classes 7–9 and the database the train group's images of classes 7–9. Labels stay as
they are: DLBHC's classifier keeps the dataset's ten outputs, of which 7–9 are never a training
target, so a class index means one thing everywhere (labels, ``model.json``, relevance by the true
labels of the unseen classes, the classifier baseline) and no remapped second numbering exists.
"""

from __future__ import annotations

import dataclasses
import os
from typing import Any, Callable

import numpy as np

from jaxhash import digests
from jaxhash.data.dataset import Dataset
from jaxhash.errors import UsageError
from jaxhash.io_utils import atomic_write_text

SPLIT_NAMES = ("train", "query", "database")


@dataclasses.dataclass(frozen=True)
class Split:
  train: np.ndarray
  query: np.ndarray
  database: np.ndarray


@dataclasses.dataclass(frozen=True)
class Protocol:
  name: str
  groups: tuple[str, ...]  # source groups the protocol reads
  tfds_name: str | None  # TFDS dataset used when config.data.dir is unset (None: a dir is required)
  map_at: tuple  # default R values of mAP@R ("all" or ints)
  make_split: Callable[[Dataset, np.random.Generator, Any], Split]  # (dataset, rng, config.data)
  # config.data -> None, raising ValueError naming a bad ``config.data`` key.
  validate: Callable[[Any], None] = lambda data_config: None


def _per_class_sample(ds: Dataset, pool: np.ndarray, per_class: int, rng) -> np.ndarray:
  """``per_class`` random items of each class from ``pool`` (single-label data), sorted."""
  classes = ds.labels[pool].argmax(axis=1)
  chosen = []
  for c in range(ds.num_classes):
    members = pool[classes == c]
    if len(members) < per_class:
      raise UsageError(
        f"{ds.name}: class {c} has {len(members)} items, fewer than the {per_class} the "
        "protocol needs."
      )
    chosen.append(rng.choice(members, per_class, replace=False))
  return np.sort(np.concatenate(chosen))


def _held_out_queries(ds: Dataset, rng, data_config) -> Split:
  """mnist10k: 100 queries per class; the remaining images are training set and database."""
  del data_config
  everything = np.arange(len(ds.labels))
  query = _per_class_sample(ds, everything, 100, rng)
  rest = np.setdiff1d(everything, query)
  return Split(train=rest, query=query, database=rest)


def _test_queries_train_database(ds: Dataset, rng, data_config) -> Split:
  """Queries = the test group; training set = database = the train group (DLBHC's MNIST)."""
  del rng, data_config
  return Split(train=ds.groups["train"], query=ds.groups["test"], database=ds.groups["train"])


def _cifar10_sampled(ds: Dataset, rng, data_config) -> Split:
  """1,000 test queries, 5,000 train images (100 / 500 per class); database: the other 54,000."""
  del data_config
  query = _per_class_sample(ds, ds.groups["test"], 100, rng)
  train = _per_class_sample(ds, ds.groups["train"], 500, rng)
  database = np.setdiff1d(np.arange(len(ds.labels)), np.concatenate([query, train]))
  return Split(train=train, query=query, database=database)


def _unseen_classes(ds: Dataset, rng, data_config) -> Split:
  """Training on the seen classes' train images; queries (test) and database (train) from the
  others (module docstring)."""
  del rng, data_config
  if not (ds.labels.sum(axis=1) == 1).all():
    raise UsageError(
      f"{ds.name}: the unseen-class protocols need single-label data (one class per "
      "image); use another protocol for multi-label data."
    )
  num_seen = seen_classes(ds.num_classes)
  seen = ds.labels.argmax(axis=1) < num_seen
  train, test = ds.groups["train"], ds.groups["test"]
  split = Split(train=train[seen[train]], query=test[~seen[test]], database=train[~seen[train]])
  empty = [name for name in SPLIT_NAMES if not len(getattr(split, name))]
  if empty:
    raise UsageError(
      f"{ds.name}: the unseen-class split (classes 0-{num_seen - 1} of "
      f"{ds.num_classes} seen) leaves the {' and '.join(empty)} set empty; the data "
      "needs images of both the seen and the unseen classes (check config.data.limit)."
    )
  return split


def seen_classes(num_classes: int) -> int:
  """How many leading classes the unseen-class protocols train on: three quarters, rounded down."""
  return num_classes * 3 // 4


def _released_lists(ds: Dataset, rng, data_config) -> Split:
  """train.txt / test.txt / database.txt of the HashNet and DeepHash releases, used as given."""
  del rng, data_config
  return Split(train=ds.groups["train"], query=ds.groups["test"], database=ds.groups["database"])


CUSTOM_GROUPS = ("train", "test", "query", "database")  # the groups ``custom`` can use as given


def _custom(ds: Dataset, rng, data_config) -> Split:
  """The user's own groups as given, or one image set split by fractions (module docstring)."""
  query_group = "query" if "query" in ds.groups else "test"
  if "train" in ds.groups and query_group in ds.groups:
    train = ds.groups["train"]
    return Split(
      train=train, query=ds.groups[query_group], database=ds.groups.get("database", train)
    )
  if len(ds.groups) != 1:
    raise UsageError(
      f"protocol custom needs one image set (split by config.data.query_fraction) or the groups "
      f"train and test (or query), optionally database; data source {ds.name!r} has "
      f"{sorted(ds.groups)}."
    )
  (everything,) = ds.groups.values()
  if len(everything) < 2:
    raise UsageError(
      f"{ds.name}: {len(everything)} image(s) cannot be split into queries and a "
      "database; add images."
    )
  shuffled = rng.permutation(everything)
  num_queries = min(max(1, round(data_config.query_fraction * len(shuffled))), len(shuffled) - 1)
  database = np.sort(shuffled[num_queries:])
  num_train = max(1, round(data_config.train_fraction * len(database)))
  train = np.sort(rng.permutation(database)[:num_train])
  return Split(train=train, query=np.sort(shuffled[:num_queries]), database=database)


def _check_fractions(data_config) -> None:
  if not 0 < data_config.query_fraction < 1:
    raise UsageError(
      f"config.data.query_fraction={data_config.query_fraction!r} must be between 0 "
      "and 1 (the share of images drawn as queries)."
    )
  if not 0 < data_config.train_fraction <= 1:
    raise UsageError(
      f"config.data.train_fraction={data_config.train_fraction!r} must be in (0, 1] "
      "(the share of the database that trains the model)."
    )


PROTOCOLS = {
  p.name: p
  for p in (
    Protocol("mnist10k", ("test",), None, ("all", 1000), _held_out_queries),
    Protocol("mnist", ("train", "test"), "mnist", ("all", 1000), _test_queries_train_database),
    Protocol("cifar10", ("train", "test"), "cifar10", ("all", 1000), _cifar10_sampled),
    Protocol(
      "cifar10-2", ("train", "test"), "cifar10", ("all", 1000), _test_queries_train_database
    ),
    Protocol("mnist-unseen", ("train", "test"), "mnist", ("all", 1000), _unseen_classes),
    Protocol("cifar10-unseen", ("train", "test"), "cifar10", ("all", 1000), _unseen_classes),
    Protocol("imagenet100", ("train", "test", "database"), None, (1000,), _released_lists),
    Protocol("nuswide", ("train", "test", "database"), None, (5000,), _released_lists),
    Protocol("coco", ("train", "test", "database"), None, (5000,), _released_lists),
    Protocol("custom", (), None, ("all", 1000), _custom, _check_fractions),
  )
}


def get_protocol(name: str) -> Protocol:
  if name not in PROTOCOLS:
    raise UsageError(
      f"unknown protocol {name!r} (config.data.protocol); choose one of {sorted(PROTOCOLS)}."
    )
  return PROTOCOLS[name]


def make_split(protocol: Protocol, ds: Dataset, seed: int, data_config=None) -> Split:
  """The protocol's split of ``ds`` drawn from ``seed``; ``data_config`` is ``config.data``."""
  missing = [g for g in protocol.groups if g not in ds.groups]
  if missing:
    raise UsageError(
      f"protocol {protocol.name!r} needs the {missing} split(s), which data source {ds.name!r} "
      f"does not have (it has {sorted(ds.groups)}); check config.data.source and config.data.dir."
    )
  split = protocol.make_split(ds, np.random.default_rng(seed), data_config)
  return Split(*(np.asarray(getattr(split, n), dtype=np.int64) for n in SPLIT_NAMES))


def fingerprint(split: Split, labels: np.ndarray) -> str:
  """SHA-256 (16 hex digits) of the split's indices and the labels of its images.

  Independent of where the data lives, so a moved data folder gives the same fingerprint and
  other data (another folder, another class order) a different one.
  """
  chunks = []
  for name in SPLIT_NAMES:
    indices = np.asarray(getattr(split, name), dtype=np.int64)
    chunks += [name.encode(), indices.tobytes(), np.ascontiguousarray(labels[indices]).tobytes()]
  return digests.hex_id(*chunks)


def save_or_check_split(split: Split, directory: str, header: str) -> None:
  """Writes the split files, or checks that existing ones hold the same split.

  A workdir made with another protocol, seed or dataset is refused instead of silently mixed.
  ``header`` (the first line) holds what identifies the split, e.g. its :func:`fingerprint`.
  """
  os.makedirs(directory, exist_ok=True)
  for name in SPLIT_NAMES:
    path = os.path.join(directory, f"{name}.txt")
    indices = getattr(split, name)
    text = f"# {header}\n" + "".join(f"{i}\n" for i in indices)
    if os.path.exists(path):
      with open(path) as f:
        stored = f.read()
      if stored != text:
        recorded, _, body = stored.partition("\n")
        same = "the same image indices" if body == text.partition("\n")[2] else "other images"
        raise UsageError(
          f"{path} holds a different {name} split, recorded as {recorded.lstrip('# ')!r} "
          f"({same}), not {header!r}; this workdir was made with another protocol, seed or "
          "dataset, or by an earlier jaxhash (data that moved must be the same images): use a "
          "new --workdir."
        )
    else:
      atomic_write_text(path, text)


def load_split(directory: str) -> Split:
  """Reads split files written by :func:`save_or_check_split`."""
  arrays = []
  for name in SPLIT_NAMES:
    path = os.path.join(directory, f"{name}.txt")
    if not os.path.isfile(path):
      raise FileNotFoundError(
        f"split file {path} is missing; was this workdir trained with jaxhash.train?"
      )
    arrays.append(np.loadtxt(path, dtype=np.int64, comments="#", ndmin=1))
  return Split(*arrays)
