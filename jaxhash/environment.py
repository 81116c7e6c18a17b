"""What produced a result (package versions and the devices, recorded in results.json), and the
CPU cores this process may use."""

from __future__ import annotations

import os
import platform
from importlib import metadata

import jax

import jaxhash

_PACKAGES = ("jax", "jaxlib", "flax", "optax", "orbax-checkpoint", "numpy")


def describe() -> dict:
  """``{"jaxhash": "0.2.0", "jax": ..., "backend": "cpu", "devices": ["cpu"], ...}``."""
  versions = {"jaxhash": jaxhash.__version__, "python": platform.python_version()}
  for name in _PACKAGES:
    try:
      versions[name] = metadata.version(name)
    except metadata.PackageNotFoundError:
      pass
  devices = jax.local_devices()
  return {
    **versions,
    "backend": jax.default_backend(),
    "device_count": len(devices),
    "devices": sorted({d.device_kind for d in devices}),
  }


def cpu_cores() -> int:
  """The cores this process may run on (its affinity mask; all CPUs where there is none), which
  is what XLA's CPU client uses: the thread counts of decoding, search chunks and LeNet's parts."""
  return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1
