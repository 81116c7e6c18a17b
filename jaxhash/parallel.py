"""Data parallelism over the devices of every process: batches split along their first axis, state
replicated.

The train and encode steps are the same jitted functions on one device or many, in one process or
several (``jaxhash.distributed``): ``jax.jit`` follows the input shardings and inserts the
collectives (the gradient all-reduce, and the all-gather that HashNet's whole-batch similarity
matrix needs), so the result is the global-batch computation whatever the device count. Each
process reads and preprocesses only its own rows of a batch (``local_rows``, ``global_batch``).
"""

from __future__ import annotations

import jax
import numpy as np
from jax.sharding import Mesh, NamedSharding, PartitionSpec

from jaxhash.arith import round_up
from jaxhash.errors import UsageError

BATCH_AXIS = "data"


def data_mesh(devices=None) -> Mesh:
  """A 1-D mesh over ``devices`` (default: every device of every process, process by process, so
  each process's rows of a batch are one contiguous block)."""
  if devices is None:
    devices = sorted(jax.devices(), key=lambda d: (d.process_index, d.id))
  return Mesh(np.array(devices), (BATCH_AXIS,))


def replicated(mesh: Mesh) -> NamedSharding:
  return NamedSharding(mesh, PartitionSpec())


def batch_sharded(mesh: Mesh, axis: int = 0) -> NamedSharding:
  """Split along ``axis``, the batch axis (1 for a stack of batches, one per step)."""
  return NamedSharding(mesh, PartitionSpec(*[None] * axis, BATCH_AXIS))


def check_batch_size(batch_size: int, mesh: Mesh, key: str) -> None:
  """Raises a ValueError naming the config key when a batch does not split evenly over devices."""
  devices = mesh.devices.size
  if batch_size % devices:
    raise UsageError(
      f"config.{key}={batch_size} does not split over {devices} devices; use a multiple of "
      f"{devices}."
    )


def round_up_to_devices(batch_size: int, mesh: Mesh) -> int:
  """Evaluation batches are padded anyway, so they grow to split evenly instead of failing."""
  devices = mesh.devices.size
  return round_up(batch_size, devices)


def put_replicated(tree, mesh: Mesh):
  """``tree`` on every device of ``mesh``, from host copies (the same values in every process).

  Through the host because ``jax.device_put`` of an array already on one device onto a mesh of
  several processes makes an array whose shards cannot be read (JAX 0.10).
  """
  return jax.device_put(jax.device_get(tree), replicated(mesh))


def local_rows(sharding: NamedSharding, shape: tuple, axis: int = 0) -> slice:
  """The rows along ``axis`` of a global array of ``shape`` that this process's devices hold."""
  spans = {
    index[axis].indices(shape[axis])[:2]
    for index in sharding.addressable_devices_indices_map(shape).values()
  }
  start, stop = min(a for a, _ in spans), max(b for _, b in spans)
  if sum(b - a for a, b in spans) != stop - start:
    raise ValueError(
      "this process's devices hold rows that are not one block; build the mesh "
      "with jaxhash.parallel.data_mesh."
    )
  return slice(start, stop)


def global_batch(local: np.ndarray, sharding: NamedSharding, rows: int, axis: int = 0):
  """The global array of ``rows`` rows along ``axis`` whose rows ``local_rows`` are ``local``."""
  shape = (*local.shape[:axis], rows, *local.shape[axis + 1 :])
  return jax.make_array_from_process_local_data(sharding, local, shape)


def to_host(array) -> np.ndarray:
  """The whole of a (possibly sharded) array as numpy, gathered from every process if need be."""
  if getattr(array, "is_fully_addressable", True) or array.is_fully_replicated:
    return np.asarray(array)
  from jax.experimental import multihost_utils

  return np.asarray(multihost_utils.process_allgather(array, tiled=True))
