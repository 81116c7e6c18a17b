"""Hashing methods, by config name: ``METHODS[config.method.name]``."""

from jaxhash.methods import dlbhc, hashnet
from jaxhash.methods.base import HashModel, Method

METHODS = {m.name: m for m in (dlbhc.METHOD, hashnet.METHOD)}


def get_method(name: str) -> Method:
  if name not in METHODS:
    raise ValueError(f"unknown method {name!r} (config.method.name); choose one of {sorted(METHODS)}.")
  return METHODS[name]
