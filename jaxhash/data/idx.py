"""Reader for the IDX format of the MNIST files (gzip-compressed or raw).

The header is a big-endian magic number 0x000008TD (T = 0x08 for uint8 data, D = number of
dimensions) followed by one big-endian uint32 per dimension; the payload is the raw uint8 data.
Everything is checked before it is used, so a truncated or foreign file fails with its name.
"""

from __future__ import annotations

import gzip
import importlib.resources
import math
import os
import struct
import zlib

import numpy as np

from jaxhash.errors import UsageError

_UINT8_TYPE = 0x08
_GZIP_MAGIC = b"\x1f\x8b"


def _read_bytes(path: str) -> bytes:
  if not os.path.isfile(path):
    raise FileNotFoundError(f"IDX file not found: {path}")
  with open(path, "rb") as f:
    head = f.read(2)
  opener = gzip.open if head == _GZIP_MAGIC else open
  try:
    with opener(path, "rb") as f:
      return f.read()
  except (EOFError, OSError, zlib.error) as e:
    raise UsageError(
      f"{path}: the gzip stream is damaged or truncated ({e}); re-copy the file."
    ) from None


def parse_idx(data: bytes, path: str = "<bytes>") -> np.ndarray:
  """Parses IDX bytes into a uint8 array, checking the magic number, dimensions and length."""
  if len(data) < 4:
    raise UsageError(f"{path}: too short to be an IDX file ({len(data)} bytes).")
  zero, dtype, ndim = struct.unpack(">HBB", data[:4])
  if zero != 0 or dtype != _UINT8_TYPE or not 1 <= ndim <= 4:
    raise UsageError(
      f"{path}: bad IDX magic number 0x{data[:4].hex()} (expected 0x0000080D with D = 1..4 "
      "dimensions of uint8 data); is this an MNIST-format file?"
    )
  header_len = 4 + 4 * ndim
  if len(data) < header_len:
    raise UsageError(f"{path}: truncated IDX header ({len(data)} of {header_len} bytes).")
  shape = struct.unpack(f">{ndim}I", data[4:header_len])
  expected = math.prod(shape)  # Python ints: four large dimensions must not wrap around
  payload = len(data) - header_len
  if payload != expected:
    what = "truncated" if payload < expected else "longer than its header says"
    raise UsageError(
      f"{path}: IDX file is {what}: dimensions {shape} need {expected} bytes of data, "
      f"found {payload}; re-copy the file."
    )
  return np.frombuffer(data, dtype=np.uint8, offset=header_len).reshape(shape).copy()


def read_idx(path: str) -> np.ndarray:
  """Reads one IDX file (``.gz`` or raw, detected from its first bytes)."""
  return parse_idx(_read_bytes(path), path)


def write_idx(path: str, array: np.ndarray) -> None:
  """Writes a uint8 array as a raw IDX file (for tests and for exporting subsets)."""
  array = np.ascontiguousarray(array, dtype=np.uint8)
  header = struct.pack(">HBB", 0, _UINT8_TYPE, array.ndim) + struct.pack(
    f">{array.ndim}I", *array.shape
  )
  with open(path, "wb") as f:
    f.write(header + array.tobytes())


def read_mnist_split(directory: str, prefix: str) -> tuple[np.ndarray, np.ndarray]:
  """Reads ``{prefix}-images-idx3-ubyte[.gz]`` and ``{prefix}-labels-idx1-ubyte[.gz]`` from a dir.

  Returns images uint8 ``(N, 28, 28, 1)`` and class ids uint8 ``(N,)``.
  """
  paths = []
  for kind, dims in (("images", 3), ("labels", 1)):
    base = os.path.join(directory, f"{prefix}-{kind}-idx{dims}-ubyte")
    found = [p for p in (base + ".gz", base) if os.path.isfile(p)]
    if not found:
      raise FileNotFoundError(
        f"MNIST file {base}[.gz] not found in {directory}; point config.data.dir at a directory "
        "holding the four MNIST IDX files."
      )
    paths.append(found[0])
  images, labels = read_idx(paths[0]), read_idx(paths[1])
  if images.ndim != 3:
    raise UsageError(
      f"{paths[0]}: expected 3 dimensions (N, rows, cols), got shape {images.shape}."
    )
  if labels.ndim != 1:
    raise UsageError(f"{paths[1]}: expected 1 dimension (N,), got shape {labels.shape}.")
  if len(images) != len(labels):
    raise UsageError(
      f"{paths[0]} has {len(images)} images but {paths[1]} has {len(labels)} labels."
    )
  if labels.max(initial=0) > 9:
    raise UsageError(f"{paths[1]}: label {labels.max()} is out of range 0..9.")
  return images[..., None], labels


def read_embedded_mnist() -> tuple[np.ndarray, np.ndarray]:
  """MNIST t10k (Y. LeCun, C. Cortes, C. J. C. Burges; CC BY-SA 3.0), shipped with the package in
  ``jaxhash/data/embedded``: images and class ids as :func:`read_mnist_split` returns them."""
  return read_mnist_split(str(importlib.resources.files("jaxhash.data") / "embedded"), "t10k")
