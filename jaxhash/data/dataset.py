"""The one in-memory form every data source produces.

A source returns a :class:`Dataset`: images as uint8 ``(N, H, W, C)`` (an ndarray, or an array-like
that decodes on indexing for image sets too large to hold), multi-hot labels ``(N, num_classes)``,
and ``groups``: the source's own splits ("train", "test", "database", ...) as index arrays.
Protocols (``protocols.py``) turn groups + labels + seed into train / query / database indices.
"""

from __future__ import annotations

import dataclasses
from typing import Mapping

import numpy as np

from jaxhash.errors import UsageError


@dataclasses.dataclass(frozen=True)
class Dataset:
  name: str
  images: np.ndarray  # uint8 (N, H, W, C); or an array-like with .shape, .dtype and __getitem__
  labels: np.ndarray  # uint8 multi-hot (N, num_classes)
  groups: Mapping[str, np.ndarray]  # source split name -> int64 indices into images/labels
  classes: tuple[str, ...] | None = None  # class names by label column, where the source has them

  def __post_init__(self):
    n = len(self.labels)
    if self.images.shape[0] != n:
      raise UsageError(f"{self.name}: {self.images.shape[0]} images but {n} labels.")
    if len(self.images.shape) != 4:
      raise UsageError(f"{self.name}: images must be (N, H, W, C); got shape {self.images.shape}.")
    if self.labels.ndim != 2:
      raise UsageError(
        f"{self.name}: labels must be multi-hot (N, classes); got {self.labels.shape}."
      )
    if self.classes is not None and len(self.classes) != self.labels.shape[1]:
      raise UsageError(
        f"{self.name}: {len(self.classes)} class names for {self.labels.shape[1]} label columns."
      )
    for group, idx in self.groups.items():
      if len(idx) and (idx.min() < 0 or idx.max() >= n):
        raise UsageError(f"{self.name}: group {group!r} has indices outside [0, {n}).")

  @property
  def num_classes(self) -> int:
    return self.labels.shape[1]

  @property
  def image_shape(self) -> tuple[int, int, int]:
    return tuple(self.images.shape[1:])


def first_of_each_group(ds: Dataset, limit: int) -> Dataset:
  """``ds`` cut to the first ``limit`` images of each group, as TFDS's ``split[:limit]`` slices.

  For smoke tests and quick runs (``config.data.limit``): the protocol then splits what is left,
  so a protocol that draws a fixed number per class needs enough images of each class. Indices
  (the run's ``splits/*.txt`` among them) count within the cut dataset, in the source's order.
  """
  firsts = {name: np.asarray(idx)[:limit] for name, idx in ds.groups.items()}
  keep = (
    np.unique(np.concatenate(list(firsts.values())))
    if firsts
    else np.arange(min(limit, len(ds.labels)))
  )
  groups = {name: np.searchsorted(keep, idx).astype(np.int64) for name, idx in firsts.items()}
  return Dataset(ds.name, ds.images[keep], ds.labels[keep], groups, ds.classes)


def one_hot(class_ids, num_classes: int) -> np.ndarray:
  """Single-label class ids -> uint8 multi-hot rows (relevance is 'shares a label' everywhere)."""
  class_ids = np.asarray(class_ids, dtype=np.int64)
  out = np.zeros((len(class_ids), num_classes), dtype=np.uint8)
  out[np.arange(len(class_ids)), class_ids] = 1
  return out


def concatenate(
  name: str,
  parts: Mapping[str, tuple[np.ndarray, np.ndarray]],
  classes: tuple[str, ...] | None = None,
) -> Dataset:
  """Joins in-memory splits ``{group: (images, labels)}`` into one Dataset with those groups."""
  images, labels, groups, start = [], [], {}, 0
  for group, (imgs, labs) in parts.items():
    images.append(imgs)
    labels.append(labs)
    groups[group] = np.arange(start, start + len(labs), dtype=np.int64)
    start += len(labs)
  return Dataset(name, np.concatenate(images), np.concatenate(labels), groups, classes)
