"""List-file image sets, the format of the HashNet and DeepHash-pytorch releases.

Each non-blank line of a list file is ``relative/path.jpg 0 1 0 ...``: an image path (no spaces),
then one 0/1 per class (a multi-hot label vector). Paths are resolved against an image root.
:func:`load_list_files` turns a set of list files into one :class:`Dataset` whose groups are named
by the caller (``train``, ``test``, ``database``).

Decoding (Pillow, any format it reads; JPEG and PNG are tested) converts to RGB and, when
``resize`` is set, resizes with Pillow's bilinear filter (antialiased when shrinking, as
torchvision's ``Resize`` on PIL images) to a fixed ``resize x resize`` so that images stack:

- ``resize_mode="stretch"`` (default) maps the whole image onto the square, ignoring its aspect
  ratio. This is what HashNet's released code does (Caffe ``new_height = new_width = 256``; PyTorch
  ``ResizeImage(256)``), and it keeps every object in view, which matters for multi-label sets.
- ``resize_mode="shorter"`` scales the shorter side to ``resize`` keeping the aspect ratio
  (torchvision ``Resize(256)``, as DeepHash-pytorch does), then keeps the centre square. A centre
  224 crop of that equals DeepHash-pytorch's evaluation crop; random training crops are limited to
  the centre square instead of the full longer side.

The 224 crops and flips happen later, on the device. ``resize=None`` keeps the native size, which
must then be the same for every image (CIFAR-10's 32x32).
"""

from __future__ import annotations

import concurrent.futures
import dataclasses
import multiprocessing
import os
from typing import Mapping, Sequence

import numpy as np
from PIL import Image

from jaxhash.data.dataset import Dataset
from jaxhash.data.decode import open_image, read_rgb8
from jaxhash.environment import cpu_cores
from jaxhash.errors import UsageError
from jaxhash.progress import Stage

RESIZE_MODES = ("stretch", "shorter")
DEFAULT_MAX_IN_MEMORY_BYTES = 2 * 2**30
_CHUNKS_PER_WORKER = 8  # work units per process: enough to balance, few enough to stay cheap
_MIN_IMAGES_PER_PROCESS = 2000  # below this, starting a process (~0.2 s) costs more than it saves


# --------------------------------------------------------------------------------------- parsing


def parse_list_file(path: str | os.PathLike) -> tuple[list[str], np.ndarray]:
  """Reads one list file into (image paths as written, uint8 multi-hot labels (N, C))."""
  path = os.fspath(path)
  if not os.path.isfile(path):
    raise FileNotFoundError(
      f"list file {path!r} not found; pass the path of a file of lines 'image.jpg 0 1 0 ...' "
      "(write one from an image-folder tree with python -m jaxhash.data.image_folder)."
    )
  paths, label_text, num_classes, first_line = [], [], None, 0
  with open(path, "rb") as f:
    data = f.read()
  try:
    text = data.decode("utf-8")
  except UnicodeDecodeError as e:
    lineno = data.count(b"\n", 0, e.start) + 1
    raise UsageError(
      f"{path}:{lineno}: not UTF-8 text (byte 0x{data[e.start]:02x} at offset "
      f"{e.start}); a list file holds lines 'image.jpg 0 1 0 ...'."
    ) from None
  for lineno, line in enumerate(
    text.replace("\r\n", "\n").replace("\r", "\n").split("\n"), start=1
  ):
    if not line.strip():
      continue
    image, labels = _parse_line(line, f"{path}:{lineno}")
    if num_classes is None:
      num_classes, first_line = len(labels), lineno
    elif len(labels) != num_classes:
      raise UsageError(
        f"{path}:{lineno}: {len(labels)} labels, but line {first_line} has {num_classes}; "
        "every line needs one 0/1 per class."
      )
    paths.append(image)
    label_text.append("".join(labels))
  if not paths:
    raise UsageError(
      f"list file {path!r} has no entries; fill it with lines 'image.jpg 0 1 0 ...'."
    )
  digits = np.frombuffer("".join(label_text).encode("ascii"), dtype=np.uint8) - ord("0")
  return paths, digits.reshape(len(paths), num_classes)


def _parse_line(line: str, where: str) -> tuple[str, list[str]]:
  """Splits one line into its path and 0/1 label tokens, or raises naming what is wrong."""
  if line[0].isspace():
    raise UsageError(
      f"{where}: empty image path (the line starts with whitespace); "
      "each line is 'path 0 1 0 ...' with the path first."
    )
  if "\x00" in line:
    raise UsageError(
      f"{where}: a NUL byte; is this a binary file? A list file holds lines 'image.jpg 0 1 0 ...'."
    )
  image, *labels = line.split()
  if not labels:
    raise UsageError(f"{where}: no labels after {image!r}; append one 0/1 per class.")
  for position, token in enumerate(labels, start=1):
    if token not in ("0", "1"):
      raise UsageError(
        f"{where}: label {position} is {token!r}, not 0 or 1; labels are a "
        "multi-hot vector of 0/1 integers."
      )
  return image, labels


# -------------------------------------------------------------------------------------- decoding


@dataclasses.dataclass(frozen=True)
class _Decoder:
  """Path -> uint8 (H, W, 3); picklable so process workers can run it."""

  resize: int | None
  resize_mode: str
  image_shape: tuple[int, int, int]

  def __call__(self, path: str) -> np.ndarray:
    image = read_rgb8(path)
    if self.resize is not None:
      image = _resize(image, self.resize, self.resize_mode)
    array = np.asarray(image, dtype=np.uint8)
    if array.shape != self.image_shape:
      raise UsageError(
        f"image {path!r} is {array.shape[1]}x{array.shape[0]} but the first image is "
        f"{self.image_shape[1]}x{self.image_shape[0]}; pass resize=N to bring every image to NxN."
      )
    return array

  def block(self, paths: Sequence[str]) -> np.ndarray:
    out = np.empty((len(paths),) + self.image_shape, dtype=np.uint8)
    for i, path in enumerate(paths):
      out[i] = self(path)
    return out


def _resize(image: Image.Image, size: int, mode: str) -> Image.Image:
  """Square ``size x size`` image; see the module docstring for the two modes."""
  if mode == "stretch":
    return image.resize((size, size), Image.BILINEAR)
  width, height = image.size
  if width <= height:  # torchvision rounding: the longer side is truncated
    new_size = (size, int(size * height / width))
  else:
    new_size = (int(size * width / height), size)
  image = image.resize(new_size, Image.BILINEAR)
  left = int(round((new_size[0] - size) / 2.0))
  top = int(round((new_size[1] - size) / 2.0))
  return image.crop((left, top, left + size, top + size))


def _check_resize(resize, resize_mode: str) -> None:
  if resize is not None and (
    isinstance(resize, bool) or not isinstance(resize, (int, np.integer)) or resize <= 0
  ):
    raise UsageError(
      f"resize={resize!r}: use a positive int (e.g. 256), or None for the native size."
    )
  if resize_mode not in RESIZE_MODES:
    raise UsageError(f"resize_mode={resize_mode!r}: use one of {', '.join(RESIZE_MODES)}.")


def _native_shape(path: str) -> tuple[int, int, int]:
  """(H, W, 3) of the first image; decoding checks every image against it."""
  width, height = open_image(path).size
  return (height, width, 3)


class LazyImages:
  """uint8 (N, H, W, 3) images that are decoded when indexed, for sets too large to hold.

  Accepts an int, a slice, or an integer index array (any shape), like an ndarray's first axis.
  Several images are decoded in threads: Pillow releases the GIL while decoding and resizing.
  """

  dtype = np.dtype(np.uint8)
  ndim = 4

  def __init__(
    self,
    paths: Sequence[str],
    resize: int | None = None,
    resize_mode: str = "stretch",
    workers: int | None = None,
  ):
    _check_resize(resize, resize_mode)
    if not paths:
      raise UsageError("LazyImages needs at least one image path.")
    self.paths = tuple(os.fspath(p) for p in paths)
    image_shape = (resize, resize, 3) if resize else _native_shape(self.paths[0])
    self._decoder = _Decoder(resize, resize_mode, image_shape)
    self.workers = workers or cpu_cores()

  @property
  def shape(self) -> tuple[int, int, int, int]:
    return (len(self.paths),) + self._decoder.image_shape

  def __len__(self) -> int:
    return len(self.paths)

  def __getitem__(self, key) -> np.ndarray:
    if isinstance(key, (int, np.integer)) and not isinstance(key, bool):
      return self._decoder(self.paths[key])
    if isinstance(key, slice):
      return self._decode(np.arange(len(self))[key])
    index = np.asarray(key)
    if index.dtype.kind not in "iu":
      raise TypeError(
        f"LazyImages takes an int, a slice or an integer index array, not {key!r}; "
        "convert a boolean mask with np.flatnonzero."
      )
    n = len(self)
    if index.size and (index.min() < -n or index.max() >= n):
      raise IndexError(f"index out of range for {n} images.")
    return self._decode(index.ravel()).reshape(index.shape + self._decoder.image_shape)

  def _decode(self, index: np.ndarray) -> np.ndarray:
    paths = [self.paths[i] for i in index]
    if self.workers <= 1 or len(paths) <= 1:
      return self._decoder.block(paths)
    out = np.empty((len(paths),) + self._decoder.image_shape, dtype=np.uint8)
    with concurrent.futures.ThreadPoolExecutor(min(self.workers, len(paths))) as pool:
      for i, image in enumerate(pool.map(self._decoder, paths)):
        out[i] = image
    return out

  def decode_all(self) -> np.ndarray:
    """Every image in one ndarray; thousands of them are decoded in worker processes.

    Processes, not threads: small images (CIFAR's 32x32) cost mostly Python time under the GIL.
    They are started with ``spawn`` (safe after JAX has started threads), so a script that calls
    this at import time needs the usual ``if __name__ == "__main__":`` guard.
    """
    if self.workers <= 1 or len(self) < 2 * _MIN_IMAGES_PER_PROCESS:
      return self._decoder.block(self.paths)
    num_chunks = min(len(self), self.workers * _CHUNKS_PER_WORKER)
    bounds = np.linspace(0, len(self), num_chunks + 1).astype(int)
    chunks = [self.paths[a:b] for a, b in zip(bounds[:-1], bounds[1:])]
    out = np.empty(self.shape, dtype=np.uint8)
    context = multiprocessing.get_context("spawn")
    with (
      concurrent.futures.ProcessPoolExecutor(self.workers, mp_context=context) as pool,
      Stage("decoding", len(self)) as stage,
    ):
      for start, block in zip(bounds, pool.map(self._decoder.block, chunks)):
        out[start : start + len(block)] = block
        stage.advance(len(block))
    return out


# ------------------------------------------------------------------------------------- datasets


def load_list_files(
  root: str | os.PathLike,
  list_files: Mapping[str, str | os.PathLike],
  *,
  name: str | None = None,
  resize: int | None = None,
  resize_mode: str = "stretch",
  in_memory: bool | None = None,
  max_in_memory_bytes: int = DEFAULT_MAX_IN_MEMORY_BYTES,
  strip_prefix: str = "",
  workers: int | None = None,
) -> Dataset:
  """One Dataset from list files ``{group: path}``; image paths are resolved against ``root``.

  A list-file path is opened as given (absolute, or relative to the working directory); a relative
  one not found there is looked up under ``root``, where :mod:`jaxhash.data.image_folder` writes
  them. An image listed in several files (train inside database, as in NUS-WIDE) is stored once
  and shared by the groups. ``strip_prefix`` removes a leading prefix from every listed path, for
  released files that hold their authors' absolute paths (HashNet's ImageNet lists). Images are
  decoded into one ndarray when ``in_memory`` is True, or when it is None and they need at most
  ``max_in_memory_bytes``; otherwise ``images`` is a :class:`LazyImages`.
  """
  root = os.fspath(root)
  _check_resize(resize, resize_mode)
  if not os.path.isdir(root):
    raise FileNotFoundError(
      f"image root {root!r} does not exist; pass the directory that the list files' image paths "
      "are relative to."
    )
  if not list_files:
    raise UsageError("no list files given; pass e.g. {'train': 'train.txt', 'test': 'test.txt'}.")
  paths, labels, groups = _merge_groups(root, list_files, strip_prefix)
  return images_dataset(
    name or os.path.basename(os.path.abspath(root)),
    paths,
    labels,
    groups,
    resize=resize,
    resize_mode=resize_mode,
    in_memory=in_memory,
    max_in_memory_bytes=max_in_memory_bytes,
    workers=workers,
  )


def images_dataset(
  name: str,
  paths: Sequence[str],
  labels: np.ndarray,
  groups: Mapping[str, np.ndarray],
  *,
  resize: int | None = None,
  resize_mode: str = "stretch",
  in_memory: bool | None = None,
  max_in_memory_bytes: int = DEFAULT_MAX_IN_MEMORY_BYTES,
  workers: int | None = None,
) -> Dataset:
  """A Dataset of the images at ``paths`` (what every list or folder of image files becomes).

  The images are decoded into one ndarray when ``in_memory`` is True, or when it is None and they
  need at most ``max_in_memory_bytes``; otherwise ``images`` is a :class:`LazyImages`.
  """
  images = LazyImages(paths, resize, resize_mode, workers)
  if in_memory is None:
    in_memory = np.prod(images.shape, dtype=np.int64) <= max_in_memory_bytes
  if in_memory:
    images = images.decode_all()
  return Dataset(name, images, labels, groups)


def _merge_groups(root: str, list_files: Mapping[str, str | os.PathLike], strip_prefix: str):
  """Parses every list file; returns (unique image paths, their labels, group -> indices)."""
  row_of: dict[str, int] = {}
  labels: list[np.ndarray] = []
  owner: list[str] = []  # the list file that first named each image, for error messages
  listed: list[str] = []  # each image's path as that list file wrote it
  groups, num_classes, first_file = {}, None, None
  for group, list_path in list_files.items():
    list_path = _find_list_file(root, list_path, group)
    names, group_labels = parse_list_file(list_path)
    if num_classes is None:
      num_classes, first_file = group_labels.shape[1], list_path
    elif group_labels.shape[1] != num_classes:
      raise UsageError(
        f"{list_path!r} has {group_labels.shape[1]} labels per line but {first_file!r} has "
        f"{num_classes}; list files of one dataset must share the class vector."
      )
    index = np.empty(len(names), dtype=np.int64)
    for i, name in enumerate(names):
      path = _resolve_image(root, name, strip_prefix)
      row = row_of.setdefault(path, len(labels))
      if row == len(labels):
        labels.append(group_labels[i])
        owner.append(list_path)
        listed.append(name)
      elif not np.array_equal(labels[row], group_labels[i]):
        raise UsageError(
          f"{name!r} has different labels in {owner[row]!r} and {list_path!r}; "
          "fix one of the two lines."
        )
      index[i] = row
    groups[group] = index
  paths = list(row_of)
  _check_images_exist(paths, owner, listed, root, strip_prefix)
  return paths, np.stack(labels), groups


def _find_list_file(root: str, list_path: str | os.PathLike, group: str) -> str:
  list_path = os.fspath(list_path)
  if os.path.isfile(list_path) or os.path.isabs(list_path):
    return list_path
  under_root = os.path.join(root, list_path)
  if os.path.isfile(under_root):
    return under_root
  raise FileNotFoundError(
    f"list file {list_path!r} for group {group!r} is neither in the working directory nor under "
    f"the image root {root!r}; pass its full path."
  )


def _resolve_image(root: str, name: str, strip_prefix: str) -> str:
  if strip_prefix and name.startswith(strip_prefix):
    name = name[len(strip_prefix) :]
  return os.path.join(root, name)


def _check_images_exist(
  paths: list[str], owner: list[str], listed: list[str], root: str, strip_prefix: str
) -> None:
  """Fails before any decoding, naming the first missing image and how many are missing."""
  missing = [i for i, path in enumerate(paths) if not os.path.isfile(path)]
  if not missing:
    return
  first = missing[0]
  hint = "check that the image root is the directory the paths are relative to"
  if os.path.isabs(listed[first]) and not strip_prefix:
    prefix = _droppable_prefix(root, listed[first])
    hint = (
      f"the list files hold absolute paths: drop their leading {prefix!r} (e.g. sed -i "
      f"'s|^{prefix}||' on each list file)"
      if prefix
      else "the list files hold absolute paths: rewrite them relative to the image root"
    )
    hint += " or, from Python, pass strip_prefix to jaxhash.data.listfile.load_list_files"
  raise FileNotFoundError(
    f"{len(missing)} of {len(paths)} listed images are missing under the image root {root!r}, "
    f"first {paths[first]!r} (listed in {owner[first]!r}); {hint}."
  )


def _droppable_prefix(root: str, listed: str) -> str | None:
  """The leading directories of an absolute listed path whose rest exists under ``root``."""
  parts = listed.split("/")
  for i in range(1, len(parts)):
    if os.path.isfile(os.path.join(root, *parts[i:])):
      return "/".join(parts[:i]) + "/"
  return None
