"""The served index: item ids and their image paths, and in ``--writable`` mode its changes, saved.

An item's id is how the API names it, stable across restarts, deletions and re-indexing:

- an image added through ``POST /items`` is stored in the items folder as ``<id><ext>`` (the id is
  the client's, or the first 16 hex digits of the image's SHA-256), so its id is its file's stem;
- any other indexed path (what ``jaxhash.index`` wrote) has the first 16 hex digits of the SHA-256
  of the path.

The index file keeps the paths as its ids, as ``jaxhash.index`` writes them, so ``jaxhash.search``
reads a served index as it is. No path from a request reaches the filesystem: an id is looked up
among the items, and only a path the index holds is opened. Each save rewrites the index file
atomically (``HammingIndex.save``): a killed server leaves the last saved index, never a torn one.
"""

from __future__ import annotations

import fcntl
import os
import re

import numpy as np

from jaxhash.digests import hex_id
from jaxhash.errors import UsageError
from jaxhash.io_utils import atomic_write_bytes
from jaxhash.retrieval import HammingIndex
from jaxhash.service.errors import RequestError

ID_PATTERN = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,127}")


class Catalog:
  """The index with its ids. Changed only by the engine's worker thread; read from any thread."""

  def __init__(self, path: str, folder: str | None = None, writable: bool = False):
    self.path, self.writable = path, writable
    self.folder = os.path.abspath(folder or os.path.splitext(path)[0] + ".items")
    self._lock = self._lock_folder() if writable else None
    self.reload()

  def reload(self) -> None:
    """(Re)reads the index file: at start, and after a save failed, to drop unsaved changes."""
    index = HammingIndex.load(self.path)
    if index.ntotal and not isinstance(index.ids[0], str):
      raise UsageError(
        f"{self.path} holds integer ids, not image paths; serve an index built by "
        "python -m jaxhash.index."
      )
    self.index = index
    self._index_ids()

  def _index_ids(self) -> None:
    paths = self.index.ids.tolist()
    self._paths = {self.item_id(p): p for p in paths}  # replaced whole: readers see old or new
    self._positions = {self.item_id(p): i for i, p in reversed(list(enumerate(paths)))}

  def __len__(self) -> int:
    return self.index.ntotal

  def item_id(self, path: str) -> str:
    if os.path.dirname(path) == self.folder:
      return os.path.splitext(os.path.basename(path))[0]
    return hex_id(path.encode("utf-8"))

  def path_of(self, item_id: str) -> str:
    try:
      return self._paths[item_id]
    except KeyError:
      raise RequestError(
        404, f"no item has id {item_id!r}; ids are those search results report."
      ) from None

  def position(self, item_id: str) -> int:
    self.path_of(item_id)
    return self._positions[item_id]

  def add(self, files: list[tuple[str, str, bytes]], codes: np.ndarray, features) -> list[str]:
    """Stores each ``(id, extension, bytes)`` as ``<folder>/<id><ext>`` and appends its code;
    returns the paths. An id already held, or given twice, is refused before anything is written."""
    ids = [item_id for item_id, _, _ in files]
    for item_id in ids:
      if item_id in self._paths or ids.count(item_id) > 1:
        raise RequestError(
          409, f"id {item_id!r} is already taken; choose another id or delete that item first."
        )
    paths = [os.path.join(self.folder, item_id + extension) for item_id, extension, _ in files]
    for path, (_, _, data) in zip(paths, files):
      atomic_write_bytes(path, data)
    self.index.add(codes, ids=paths, features=features)
    self._index_ids()
    return paths

  def delete(self, item_id: str) -> str:
    """Removes the item from the index (its stored upload is unlinked after the save)."""
    path = self.path_of(item_id)
    keep = np.array([p != path for p in self.index.ids.tolist()], bool)
    index = HammingIndex(self.index.nbits, run=self.index.run)
    features = self.index.features
    if keep.any():  # an emptied index holds no ids, so that string ids can be added to it again
      index.add(
        self.index.codes[keep],
        ids=self.index.ids[keep].tolist(),
        features=None if features is None else features[keep],
      )
    self.index = index
    self._index_ids()
    return path

  def save(self) -> None:
    self.index.save(self.path)

  def discard_upload(self, path: str) -> None:
    """Unlinks a deleted item's file when the service stored it; the user's own files stay."""
    if os.path.dirname(path) == self.folder:
      try:
        os.unlink(path)
      except FileNotFoundError:
        pass

  def _lock_folder(self):
    """One writer per index: a second ``--writable`` server would overwrite the first's changes."""
    os.makedirs(self.folder, exist_ok=True)
    lock = open(os.path.join(self.folder, ".lock"), "w")
    try:
      fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
      lock.close()
      raise UsageError(
        f"another --writable server is serving {self.path}; stop it, or serve "
        "read-only (without --writable)."
      ) from None
    return lock
