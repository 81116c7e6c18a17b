"""SHA-256, the one hash jaxhash records: of bytes (a file's checksum, an id, a fingerprint) and of
a pytree's arrays (a checkpoint's state, a trained model, what a feature cache was computed from).

Each caller keeps its own layout of what it hashes (which header precedes a leaf's bytes): the
digests are on disk, in checkpoint records, feature-cache keys, split files and index files, and
a new layout would make every one of them a mismatch.
"""

from __future__ import annotations

import hashlib
from typing import Callable, Iterable

import jax
import numpy as np

ID_DIGITS = 16  # hex digits of an id or fingerprint: 64 bits, no collision among a run's items


def _sha256(chunks: Iterable) -> hashlib._Hash:
  digest = hashlib.sha256()
  for chunk in chunks:
    digest.update(chunk)
  return digest


def sha256(*chunks) -> bytes:
  """The 32-byte SHA-256 of ``chunks`` (bytes-like) one after another."""
  return _sha256(chunks).digest()


def hex_id(*chunks) -> str:
  """The first ``ID_DIGITS`` hex digits of the SHA-256 of ``chunks``: a short name for them."""
  return _sha256(chunks).hexdigest()[:ID_DIGITS]


def tree_sha256(tree, header: Callable[[str, np.ndarray], str] | None = None) -> str:
  """The hex SHA-256 of ``tree``'s leaves in order: for each, ``header(path, array)`` (its key path
  as ``jax.tree_util.keystr`` writes it, and the leaf as a NumPy array), then its bytes in C order.

  Leaves are fetched and hashed one at a time, so a large state is never copied whole.
  """

  def chunks():
    for path, leaf in jax.tree_util.tree_flatten_with_path(tree)[0]:
      array = np.asarray(leaf)
      if header is not None:
        yield header(jax.tree_util.keystr(path), array).encode()
      yield np.ascontiguousarray(array).tobytes()

  return _sha256(chunks()).hexdigest()
