"""The frozen prefix's activations, computed once and kept on disk shard by shard.

When the first stages of a backbone are frozen (``model.trainable`` other than ``all``), their
output does not change during training, so it is computed once per (dataset, split, input size,
weights, prefix) and training and evaluation start from it. Rows are every image of the dataset
in order, then, when the run flips (``data.flip``), the horizontal flip of every training image
(random flips are the augmentation that survives caching; training samples one of the two per image
and step). Without flips nothing in the cache depends on the split, so runs of every protocol over
the same images share it.

Layout: ``DIR/<key>/shard-00000.npy`` ... (float16) and ``manifest.json`` with the key's fields,
the shapes and the sha256 of every finished shard, written after each shard. A killed run resumes
at the first missing shard; on reuse every shard is checked against its sha256 and a damaged one
is recomputed (said in one line). Shards are computed in fixed-size batches, so a resumed cache is
bit-identical to an uninterrupted one.
"""

from __future__ import annotations

import hashlib
import io
import json
import os
from typing import Callable

import jax
import numpy as np

from jaxhash import parallel
from jaxhash.arith import ceil_div
from jaxhash.data.batches import ShuffledPositions
from jaxhash.io_utils import atomic_write_bytes, atomic_write_text

MANIFEST = "manifest.json"
DTYPE = np.float16


def cache_key(fields: dict) -> str:
  """A short directory name for the identity ``fields`` (JSON-able)."""
  text = json.dumps(fields, sort_keys=True)
  return hashlib.sha256(text.encode()).hexdigest()[:16]


def _sha256(data: bytes) -> str:
  return hashlib.sha256(data).hexdigest()


def _shard_path(directory: str, i: int) -> str:
  return os.path.join(directory, f"shard-{i:05d}.npy")


def _row_shape(path: str) -> tuple | None:
  """The row shape a shard file holds, or None when it cannot be read (it is then recomputed)."""
  try:
    return np.load(path, mmap_mode="r").shape[1:]
  except (OSError, ValueError):
    return None


class FeatureCache:
  """The cache of one key: ``build`` fills it, ``load`` returns (unflipped, flipped) rows.

  ``prefix(uint8 images, flip: bool) -> activations`` is the jitted frozen prefix; ``flipped``
  holds the dataset indices whose flips are cached (the training images, or none); ``rows`` are
  (dataset index, flipped) pairs in cache order.
  """

  def __init__(
    self,
    directory: str,
    fields: dict,
    num_images: int,
    flipped: np.ndarray,
    shard_size: int = 2048,
    batch_size: int = 256,
  ):
    self.fields = dict(fields)
    self.directory = os.path.join(directory, cache_key(self.fields))
    self.num_images, self.flipped = num_images, np.asarray(flipped, dtype=np.int64)
    self.shard_size, self.batch_size = shard_size, batch_size
    rows = len(self.flipped) + num_images
    self.num_shards = ceil_div(rows, shard_size)

  def _rows(self, i: int) -> tuple[np.ndarray, np.ndarray]:
    """(dataset indices, flipped) of shard ``i``."""
    index = np.arange(
      i * self.shard_size, min((i + 1) * self.shard_size, self.num_images + len(self.flipped))
    )
    flipped = index >= self.num_images
    index[flipped] = self.flipped[index[flipped] - self.num_images]
    return index, flipped

  def _read_manifest(self, stream=None) -> dict:
    """The manifest, or {} when there is none or it does not describe this cache: unreadable, of
    another shape, or contradicted by its first shard (said on ``stream``: the cache is rebuilt)."""
    path = os.path.join(self.directory, MANIFEST)
    if not os.path.isfile(path):
      return {}
    try:
      with open(path, "rb") as f:
        return self._checked(json.loads(f.read().decode("utf-8")))
    except (ValueError, RecursionError) as error:  # JSON and UTF-8 errors are ValueErrors
      if stream is not None:
        stream.write(f"feature cache: {path} is damaged or stale ({error}); rebuilding the cache\n")
      return {}

  def _checked(self, manifest) -> dict:
    """``manifest`` if it describes this cache, else a ValueError saying how it does not."""
    if not isinstance(manifest, dict):
      raise ValueError("not a JSON object")
    if manifest.get("fields") != self.fields or manifest.get("num_shards") != self.num_shards:
      raise ValueError("not a manifest of this cache's key and size")
    shards, shape = manifest.get("shards"), manifest.get("row_shape")
    if (
      not isinstance(shards, dict)
      or not set(shards) <= {str(i) for i in range(self.num_shards)}
      or not all(isinstance(v, str) for v in shards.values())
    ):
      raise ValueError("malformed shard list")
    if not shards:
      return manifest
    if not isinstance(shape, list) or not all(type(d) is int and d >= 0 for d in shape):
      raise ValueError("malformed row shape")
    first = _shard_path(self.directory, min(map(int, shards)))
    if _row_shape(first) not in (None, tuple(shape)):
      raise ValueError(f"row shape {shape} is not that of {first}")
    return manifest

  def _write_manifest(self, shards: dict, shape) -> None:
    atomic_write_text(
      os.path.join(self.directory, MANIFEST),
      json.dumps(
        {
          "fields": self.fields,
          "num_shards": self.num_shards,
          "shard_size": self.shard_size,
          "row_shape": list(shape) if shape is not None else None,
          "shards": {str(k): v for k, v in sorted(shards.items())},
        },
        indent=1,
        sort_keys=True,
      ),
    )

  def _compute(self, prefix, images, i: int) -> np.ndarray:
    index, flipped = self._rows(i)
    out = []
    for start in range(0, len(index), self.batch_size):
      rows, flips = index[start : start + self.batch_size], flipped[start : start + self.batch_size]
      valid = len(rows)
      pad = self.batch_size - valid
      batch = images[np.concatenate([rows, np.full(pad, rows[0])]) if pad else rows]
      flip = np.concatenate([flips, np.zeros(pad, bool)]) if pad else flips
      out.append(np.asarray(prefix(batch, flip), DTYPE)[:valid])
    return np.concatenate(out)

  def build(self, prefix: Callable, images, stream, on_shard: Callable[[int], None] = None) -> None:
    """Computes the missing or damaged shards (``on_shard(i)`` after each: tests kill there)."""
    os.makedirs(self.directory, exist_ok=True)
    manifest = self._read_manifest(stream)
    shards = {int(k): v for k, v in manifest.get("shards", {}).items()}
    shape = manifest.get("row_shape")
    todo = []
    for i in range(self.num_shards):
      path = _shard_path(self.directory, i)
      if i not in shards:
        todo.append(i)
      elif not os.path.isfile(path) or _sha256(open(path, "rb").read()) != shards[i]:
        stream.write(
          f"feature cache: shard {i} of {self.directory} is damaged or missing; recomputing it\n"
        )
        del shards[i]
        todo.append(i)
    if todo:
      done = self.num_shards - len(todo)
      stream.write(
        f"feature cache: computing {len(todo)} of {self.num_shards} shards into "
        f"{self.directory}{f' (resuming; {done} kept)' if done else ''}\n"
      )
    for i in todo:
      block = self._compute(prefix, images, i)
      buffer = io.BytesIO()
      np.save(buffer, block)
      data = buffer.getvalue()
      atomic_write_bytes(_shard_path(self.directory, i), data)
      shards[i], shape = _sha256(data), block.shape[1:]
      self._write_manifest(shards, shape)
      if on_shard is not None:
        on_shard(i)

  def load(self) -> tuple[np.ndarray, np.ndarray]:
    """(activations of every image (N, ...), of the flipped images (len(flipped), ...))."""
    manifest = self._read_manifest()
    if len(manifest.get("shards", {})) != self.num_shards:
      raise FileNotFoundError(f"feature cache {self.directory} is incomplete; build it first.")
    shape = tuple(manifest["row_shape"])
    rows = np.empty((self.num_images + len(self.flipped), *shape), DTYPE)
    for i in range(self.num_shards):
      start = i * self.shard_size
      block = np.load(_shard_path(self.directory, i))
      rows[start : start + len(block)] = block
    return rows[: self.num_images], rows[self.num_images :]


class CachedBatches:
  """Training batches of cached activations: a pure function of (seed, step), like
  ``jaxhash.data.batches.TrainBatches`` (the same ``get`` / ``take``), with each image's
  orientation drawn per step when ``flipped`` holds the training images' flips (else it is empty
  and every image is taken as it is)."""

  on_device = True

  def __init__(
    self,
    plain: np.ndarray,
    flipped: np.ndarray,
    train: np.ndarray,
    labels: np.ndarray,
    batch_size: int,
    seed: int,
    mesh,
  ):
    parallel.check_batch_size(batch_size, mesh, "train.batch_size")
    self._positions = ShuffledPositions(len(train), batch_size, seed)
    self.batch_size, self.seed = batch_size, seed
    self.steps_per_epoch = self._positions.steps_per_epoch
    self._everywhere, self._sharding = parallel.replicated(mesh), parallel.batch_sharded(mesh)
    self._orientations = 2 if len(flipped) else 1
    views = [plain[train], flipped] if len(flipped) else [plain[train]]
    self._acts = jax.device_put(np.stack(views), self._everywhere)
    self._labels = jax.device_put(labels[train], self._everywhere)

  def get(self, first: int, count: int = 1) -> tuple[tuple, tuple]:
    """``take``'s arguments for steps ``first .. first + count - 1``: activations and labels on the
    device; per step, the batch's positions in them and each image's orientation (1: flipped)."""
    steps = range(first, first + count)
    positions = np.stack([self._positions(step) for step in steps])
    flips = np.stack(
      [
        np.random.default_rng([self.seed, step, 1]).integers(0, self._orientations, self.batch_size)
        for step in steps
      ]
    ).astype(np.int32)
    return (self._acts, self._labels), jax.device_put((positions, flips), self._everywhere)

  def take(self, shared: tuple, step: tuple) -> tuple[jax.Array, jax.Array]:
    """(activations, multi-hot labels) of one step's batch from ``get``'s arguments; traced."""
    (acts, labels), (positions, flips) = shared, step
    batch = acts[flips, positions], labels[positions]
    return jax.lax.with_sharding_constraint(batch, (self._sharding, self._sharding))
