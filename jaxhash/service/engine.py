"""The worker thread that owns the hasher and the index, so that concurrent requests share work.

Image searches that arrive within ``window`` seconds of the first (at most ``max_batch``) are
encoded together and searched together: one jitted encode and one index search for the batch, so
throughput grows with load instead of queuing one image at a time. Each query's results are those
``jaxhash.search`` gives it alone (``search.search_images`` does both): the batch searches the
largest k rounded up to a power of two (few compiled shapes) and each query keeps its first k,
which is its own top k since results are ordered by (distance, position); re-ranked queries are
grouped by their candidate pool, ``max(k, eval.rerank_pool)``, which decides their order.

Changes (adds, deletes) run in arrival order between batches; changes queued together are saved
with one write of the index file, and each is acknowledged only after that write.
"""

from __future__ import annotations

import concurrent.futures
import dataclasses
import logging
import queue
import threading
import time

import numpy as np

from jaxhash.errors import UsageError
from jaxhash.search import search_images
from jaxhash.service.errors import RequestError
from jaxhash.service.stats import Stats

log = logging.getLogger("jaxhash.serve")


@dataclasses.dataclass
class _Job:
  run: object  # () -> result, on the worker thread
  change: bool = False
  saved: object = None  # (result) -> None, after the save that made a change durable
  future: concurrent.futures.Future = dataclasses.field(default_factory=concurrent.futures.Future)


@dataclasses.dataclass
class _ImageQuery:
  image: np.ndarray
  k: int
  radius: int | None
  rerank: bool
  future: concurrent.futures.Future = dataclasses.field(default_factory=concurrent.futures.Future)


class Engine:
  def __init__(self, hasher, catalog, *, max_batch: int = 64, window: float = 0.002):
    self.hasher, self.catalog, self.stats = hasher, catalog, Stats()
    self._max_batch, self._window = max_batch, window
    self._queue: queue.Queue = queue.Queue()
    self._thread = threading.Thread(target=self._loop, name="jaxhash-engine", daemon=True)

  def start(self) -> None:
    self._thread.start()

  def stop(self) -> None:
    self._queue.put(None)
    self._thread.join()

  def warm_up(self) -> None:
    """Compiles the encode and search shapes batches use, before the first request waits on it."""
    if len(self.catalog):
      size = 1
      while size <= self._max_batch:
        search_images(
          self.catalog.index,
          self.hasher,
          np.zeros((size, *self.hasher.image_shape), np.uint8),
          _rounded(10),
        )
        size *= 2

  def search_image(self, image: np.ndarray, k: int, radius: int | None, rerank: bool):
    """A future of one query's results, ``[{"rank", "id", "path", "distance"}, ...]``."""
    self._check_searchable(rerank)
    query = _ImageQuery(image, k, radius, rerank)
    self._queue.put(query)
    return query.future

  def search_stored(self, k: int, radius: int | None, rerank: bool, codes=None, item_ids=None):
    """A future of one result list per code (uint32 words or bits), or per stored item's id."""
    return self._submit(_Job(lambda: self._search_stored(k, radius, rerank, codes, item_ids)))

  def add(self, files: list[tuple[str, str, bytes]], images: np.ndarray):
    """A future of the stored paths, set once the index holding them is saved."""
    return self._submit(_Job(lambda: self._add(files, images), change=True))

  def delete(self, item_id: str):
    """A future of the deleted item's path, set once the index without it is saved."""
    return self._submit(
      _Job(lambda: self.catalog.delete(item_id), change=True, saved=self.catalog.discard_upload)
    )

  def _submit(self, job: _Job):
    self._queue.put(job)
    return job.future

  def _loop(self) -> None:
    held = None
    while True:
      first = held if held is not None else self._queue.get()
      held = None
      if first is None:
        return
      wait = self._window if isinstance(first, _ImageQuery) else 0.0
      group, deadline = [first], time.monotonic() + wait
      while len(group) < self._max_batch:
        try:
          item = self._queue.get(timeout=max(0.0, deadline - time.monotonic()))
        except queue.Empty:
          break
        if (
          item is None
          or type(item) is not type(first)
          or (isinstance(item, _Job) and item.change != first.change)
        ):
          held = item
          break
        group.append(item)
      try:
        if isinstance(first, _ImageQuery):
          self._run_images(group)
        elif first.change:
          self._run_changes(group)
        else:
          for job in group:
            _settle(job.future, job.run)
      except Exception as error:  # a bug must fail its requests, never the worker
        log.exception("search worker")
        for job in group:
          if not job.future.done():
            job.future.set_exception(error)

  def _run_images(self, queries: list[_ImageQuery]) -> None:
    self.stats.record_batch(len(queries))
    pool = self.hasher.config.eval.rerank_pool
    groups: dict = {}
    for query in queries:
      groups.setdefault(max(query.k, pool) if query.rerank else 0, []).append(query)
    for key, group in groups.items():
      rerank, k = key > 0, max(query.k for query in group)
      try:
        self._check_searchable(rerank)
        images = np.stack([q.image for q in group])
        padding = np.zeros((_rounded(len(group)) - len(group), *images.shape[1:]), np.uint8)
        found = search_images(
          self.catalog.index,
          self.hasher,
          np.concatenate([images, padding]),
          k if rerank else _rounded(k),
          None,
          rerank,
        )
      except Exception as error:
        for query in group:
          query.future.set_exception(error)
        continue
      for query, rows in zip(group, found):
        query.future.set_result(
          self._rows([(r["distance"], r["path"]) for r in rows], query.k, query.radius)
        )

  def _run_changes(self, jobs: list[_Job]) -> None:
    results = {}
    for job in jobs:
      try:
        results[id(job)] = job.run()
      except OSError as error:  # a full disk, permissions: the index itself is unchanged
        job.future.set_exception(RequestError(503, f"the change could not be written ({error})."))
      except Exception as error:
        job.future.set_exception(error)
    if results:
      try:
        self.catalog.save()
      except OSError as error:
        self.catalog.reload()  # the file holds the last saved index: serve that
        failure = RequestError(503, f"the change was not saved ({error}); it was undone.")
        for job in jobs:
          if not job.future.done():
            job.future.set_exception(failure)
        return
    for job in jobs:
      if id(job) in results:
        if job.saved:
          job.saved(results[id(job)])
        job.future.set_result(results[id(job)])

  def _add(self, files, images: np.ndarray) -> list[str]:
    codes, features = self.hasher.encode_with_features(
      images, features=self.catalog.index.features is not None
    )
    return self.catalog.add(files, codes, features)

  def _search_stored(self, k, radius, rerank, codes, item_ids) -> list[list[dict]]:
    self._check_searchable(rerank)
    index, features = self.catalog.index, None
    if item_ids is not None:
      positions = [self.catalog.position(item_id) for item_id in item_ids]
      codes = index.codes[positions]
      if rerank:
        features = index.features[positions]
    elif rerank:
      raise RequestError(
        400, "rerank needs the query's features: search with an image or with ids, not with codes."
      )
    try:
      distances, ids = index.search(
        codes,
        min(k if rerank else _rounded(k), len(index)),
        features=features,
        pool=max(k, self.hasher.config.eval.rerank_pool),
      )
    except UsageError as error:
      raise RequestError(400, str(error)) from None
    return [
      self._rows(list(zip(d.tolist(), i.tolist())), k, radius) for d, i in zip(distances, ids)
    ]

  def _check_searchable(self, rerank: bool) -> None:
    if not len(self.catalog):
      raise RequestError(409, "the index is empty; add images with POST /items first.")
    if rerank and self.catalog.index.features is None:
      raise RequestError(
        400, "rerank needs features in the index; build it with python -m jaxhash.index --features."
      )

  def _rows(self, found: list[tuple[int, str]], k: int, radius: int | None) -> list[dict]:
    """The first k of ``(distance, path)`` nearest first, within ``radius``, as result rows."""
    kept = [(d, p) for d, p in found[:k] if radius is None or d <= radius]
    return [
      {"rank": r + 1, "id": self.catalog.item_id(p), "path": p, "distance": int(d)}
      for r, (d, p) in enumerate(kept)
    ]


def _rounded(k: int) -> int:
  """k rounded up to a power of two: the search compiles one program per k and per few-query
  batch size, so batches are padded with blank images to a power of two too."""
  return 1 << (k - 1).bit_length()


def _settle(future, run) -> None:
  try:
    future.set_result(run())
  except Exception as error:
    future.set_exception(error)
