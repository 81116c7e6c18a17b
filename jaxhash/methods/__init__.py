"""Hashing methods, by config name: ``METHODS[config.method.name]``.

Deep (trained by gradient steps): DLBHC, HashNet. Shallow (fitted on a frozen backbone's
features, ``jaxhash.methods.shallow``): LSH, SH, ITQ; with labels, ITQ-CCA and SDH.
"""

from jaxhash.errors import UsageError
from jaxhash.methods import dlbhc, hashnet, itq, itq_cca, lsh, sdh, sh
from jaxhash.methods.base import HashModel, Method

__all__ = ["HashModel", "METHODS", "Method", "get_method"]

METHODS = {
  m.name: m
  for m in (
    dlbhc.METHOD,
    hashnet.METHOD,
    lsh.METHOD,
    sh.METHOD,
    itq.METHOD,
    itq_cca.METHOD,
    sdh.METHOD,
  )
}


def get_method(name: str) -> Method:
  if name not in METHODS:
    raise UsageError(
      f"unknown method {name!r} (config.method.name); choose one of {sorted(METHODS)}."
    )
  return METHODS[name]
