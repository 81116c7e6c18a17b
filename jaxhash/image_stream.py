"""Image files to codes as a stream: decoding overlaps the network, and memory stays bounded.

``encode_files(hasher, paths)`` yields the codes of the files batch after batch. Worker threads
decode and resize the files of the next batches (``AHEAD``) into a ring of preallocated uint8
batch arrays while the network encodes the current one: Pillow lets go of the GIL while it
decodes and resizes, and XLA while it computes. What is held is that ring and the network's
working memory for one batch, whose size ``Hasher.batch_size`` fits to ``Hasher.memory_budget``;
neither grows with the number of files or with the input size. Every batch goes through the
network at that one size (the last one too, with stale rows whose codes are dropped), so one
executable is compiled.

Measured (``benchmarks/index_throughput.py``, EfficientNet-Lite0, CIFAR-10 JPEGs, 2 cores):
``jaxhash.index`` before it decoded each chunk of 1,024 files, then encoded it in batches of the
run's ``eval.batch_size`` (500): 5.6 GB peak resident memory at 224² px.
"""

from __future__ import annotations

import collections
import concurrent.futures
import itertools
from collections.abc import Callable, Iterator, Sequence
from typing import NamedTuple

import numpy as np

from jaxhash.environment import cpu_cores
from jaxhash.errors import UsageError

AHEAD = 2  # batches decoded ahead of the one being encoded


class Encoded(NamedTuple):
  """One batch of files: the paths of those read and their codes (and features), and the
  ``(path, error)`` of those that could not be read, in the files' order."""

  paths: list[str]
  codes: np.ndarray
  features: np.ndarray | None
  errors: list[tuple[str, Exception]]


def encode_files(
  hasher, paths: Sequence[str], *, features: bool = False, workers: int | None = None
) -> Iterator[Encoded]:
  """Codes of the image files ``paths``, read with ``hasher.read_image``, one batch at a time.

  A file that ``read_image`` cannot read (UsageError, FileNotFoundError) is reported in its
  batch's ``errors``; other errors propagate. ``workers``: decoding threads (default: the cores).
  """
  if not len(paths):
    return
  batch = hasher.batch_size_for(len(paths))
  ring = [np.empty((batch, *hasher.image_shape), np.uint8) for _ in range(AHEAD + 1)]
  starts = iter(range(0, len(paths), batch))
  pending = collections.deque()
  pool = concurrent.futures.ThreadPoolExecutor(workers or cpu_cores(), "decode")

  def submit(start: int) -> None:
    chunk, images = list(paths[start : start + batch]), ring[start // batch % len(ring)]
    pending.append(
      (
        chunk,
        images,
        [
          pool.submit(_decode_into, hasher.read_image, path, images, row)
          for row, path in enumerate(chunk)
        ],
      )
    )

  try:
    for start in itertools.islice(starts, len(ring)):
      submit(start)
    while pending:
      chunk, images, decoded = pending.popleft()
      errors = [future.result() for future in decoded]
      codes, feats = hasher.encode_with_features(images, features=features)
      kept = np.flatnonzero([error is None for error in errors])
      yield Encoded(
        [chunk[i] for i in kept],
        codes[kept],
        None if feats is None else feats[kept],
        [(path, error) for path, error in zip(chunk, errors) if error is not None],
      )
      start = next(starts, None)  # the consumer is done with this batch's array: reuse it
      if start is not None:
        submit(start)
  finally:
    pool.shutdown(wait=True, cancel_futures=True)


def _decode_into(
  read: Callable[[str], np.ndarray], path: str, images: np.ndarray, row: int
) -> Exception | None:
  try:
    images[row] = read(path)
  except (UsageError, FileNotFoundError) as error:
    return error
  return None
