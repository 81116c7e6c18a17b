"""Fixed-size batches: shuffled training batches by step, padded evaluation batches.

Training batches are a pure function of (seed, step): epoch e uses permutation ``e`` of the training
set drawn from ``seed``, so a resumed run sees exactly the batches an uninterrupted one would.
In-memory image sets are put on the device once as uint8 and batches are gathered there, inside
the jitted training step.
Evaluation batches keep a static shape: the tail is padded and its count returned for masking.
With several processes (``jaxhash.distributed``) each reads only its own rows of every batch.

A training batch source has ``get(first, count)``, the arguments of ``count`` consecutive steps:
``(shared, per_step)``, where ``shared`` is what every step reads (the images on the device) and
``per_step`` holds arrays with a leading axis of ``count`` (the batches' positions). ``take(shared,
one_step)`` is a pure function that the jitted training steps call to turn one step's slice into
``(inputs, labels)``: the gather then costs no executable launch of its own
(``benchmarks/train_throughput.py``'s LeNet step about 2% faster on a 2-core Xeon), and several
steps can run in one call (``config.train.steps_per_call``).
"""

from __future__ import annotations

from typing import Iterator

import jax
import jax.numpy as jnp
import numpy as np

from jaxhash import parallel
from jaxhash.data.dataset import Dataset
from jaxhash.errors import UsageError


class ShuffledPositions:
  """The batch positions of a step: epoch ``e`` is permutation ``e`` of the training set drawn from
  ``seed``; the remainder of an epoch is dropped (static shapes)."""

  def __init__(self, num: int, batch_size: int, seed: int):
    if num < batch_size:
      raise UsageError(
        f"the training set has {num} images, fewer than config.train.batch_size="
        f"{batch_size}; lower the batch size."
      )
    self.num, self.batch_size, self.seed = num, batch_size, seed
    self.steps_per_epoch = num // batch_size
    self._epoch, self._permutation = -1, None

  def __call__(self, step: int) -> np.ndarray:
    epoch, within = divmod(step, self.steps_per_epoch)
    if epoch != self._epoch:
      self._epoch = epoch
      self._permutation = np.random.default_rng([self.seed, epoch]).permutation(self.num)
    return self._permutation[within * self.batch_size : (within + 1) * self.batch_size].astype(
      np.int32
    )


class TrainBatches:
  """Batches laid out over ``mesh``: each device gets its slice of every batch.

  ``on_device``: the images are held on the device (an in-memory image set), so a call of many
  steps needs only their positions; images read from disk come a batch per step.
  """

  def __init__(self, ds: Dataset, indices: np.ndarray, batch_size: int, seed: int, mesh):
    parallel.check_batch_size(batch_size, mesh, "train.batch_size")
    self._indices = np.asarray(indices)
    self._positions = ShuffledPositions(len(self._indices), batch_size, seed)
    self.batch_size, self.steps_per_epoch = batch_size, self._positions.steps_per_epoch
    self._sharding = parallel.batch_sharded(mesh)
    self._stacked_sharding = parallel.batch_sharded(mesh, axis=1)
    self._everywhere = parallel.replicated(mesh)
    self.on_device = isinstance(ds.images, np.ndarray)
    if self.on_device:
      self._images = jax.device_put(ds.images[self._indices], self._everywhere)
      self._labels = jax.device_put(ds.labels[self._indices], self._everywhere)
    else:
      self._images, self._labels = ds.images, ds.labels

  def get(self, first: int, count: int = 1) -> tuple[tuple, tuple]:
    """``take``'s arguments for steps ``first .. first + count - 1``: the images and labels on the
    device and the batches' positions in them, or, for images read from disk, the batches (this
    process's rows of them read, the others' by the other processes)."""
    positions = np.stack([self._positions(step) for step in range(first, first + count)])
    if self.on_device:
      return (self._images, self._labels), (jax.device_put(positions, self._everywhere),)
    mine = parallel.local_rows(self._stacked_sharding, positions.shape, axis=1)
    rows = self._indices[positions[:, mine]]
    local = (np.stack([self._images[r] for r in rows]), self._labels[rows])
    return (), tuple(
      parallel.global_batch(part, self._stacked_sharding, self.batch_size, axis=1) for part in local
    )

  def take(self, shared: tuple, step: tuple) -> tuple[jax.Array, jax.Array]:
    """(uint8 images, multi-hot labels) of one step's batch from ``get``'s arguments; traced."""
    if self.on_device:
      (images, labels), (positions,) = shared, step
      # In bounds by construction: "clip" spares jnp.take's per-element bounds select.
      step = (
        jnp.take(images, positions, axis=0, mode="clip"),
        jnp.take(labels, positions, axis=0, mode="clip"),
      )
    return jax.lax.with_sharding_constraint(step, (self._sharding, self._sharding))


def eval_rows(indices: np.ndarray, batch_size: int) -> Iterator[tuple[np.ndarray, int]]:
  """Yields (exactly ``batch_size`` image indices, the tail padded; number of real ones in it)."""
  for start in range(0, len(indices), batch_size):
    rows = indices[start : start + batch_size]
    valid = len(rows)
    if valid < batch_size:
      rows = np.concatenate([rows, np.full(batch_size - valid, rows[0])])
    yield rows, valid
