"""What produced a result: package versions and the devices, recorded in results.json."""

from __future__ import annotations

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
  return {**versions, "backend": jax.default_backend(), "device_count": len(devices),
          "devices": sorted({d.device_kind for d in devices})}
