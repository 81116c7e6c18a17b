"""Data parallelism over the local devices: batches split along their first axis, state replicated.

The train and encode steps are the same jitted functions on one device or many: ``jax.jit``
follows the input shardings and inserts the collectives (the gradient all-reduce, and the
all-gather that HashNet's whole-batch similarity matrix needs), so the result is the global-batch
computation whatever the device count.
"""

from __future__ import annotations

import jax
import numpy as np
from jax.sharding import Mesh, NamedSharding, PartitionSpec

BATCH_AXIS = "data"


def data_mesh(devices=None) -> Mesh:
  """A 1-D mesh over ``devices`` (default: every local device)."""
  return Mesh(np.array(devices if devices is not None else jax.local_devices()), (BATCH_AXIS,))


def replicated(mesh: Mesh) -> NamedSharding:
  return NamedSharding(mesh, PartitionSpec())


def batch_sharded(mesh: Mesh, axis: int = 0) -> NamedSharding:
  """Split along ``axis``, the batch axis (1 for a stack of batches, one per step)."""
  return NamedSharding(mesh, PartitionSpec(*[None] * axis, BATCH_AXIS))


def check_batch_size(batch_size: int, mesh: Mesh, key: str) -> None:
  """Raises a ValueError naming the config key when a batch does not split evenly over devices."""
  devices = mesh.devices.size
  if batch_size % devices:
    raise ValueError(
        f"config.{key}={batch_size} does not split over {devices} devices; use a multiple of {devices}.")


def round_up_to_devices(batch_size: int, mesh: Mesh) -> int:
  """Evaluation batches are padded anyway, so they grow to split evenly instead of failing."""
  devices = mesh.devices.size
  return -(-batch_size // devices) * devices
