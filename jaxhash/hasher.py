"""A trained run as an object: ``hasher = jaxhash.load(workdir)``; ``hasher.encode(images)``.

``load`` rebuilds the network from the run's ``config.json`` and ``model.json`` and restores the
latest checkpoint; it never reads the training data. ``encode`` applies the run's own
preprocessing to any uint8 images, so codes of new images are comparable with the run's:

- images are made to look like the run's training images: decoded from files as its data source
  decoded them (RGB, or grayscale for a grayscale run), with channels converted (gray <-> RGB) and
  resized to the run's input size (Pillow bilinear, the whole image stretched, as list files are
  resized) when they differ;
- then the run's evaluation preprocessing (centre crop, normalisation) runs on the device with the
  network, in fixed-size batches (padded, so few shapes are compiled) of at most the run's
  ``eval.batch_size`` images, fewer when the network's working memory for them would exceed
  ``Hasher.memory_budget`` (large inputs: at 224² px, Lite0 needs about 10 MB per image).

    hasher = jaxhash.load("runs/dlbhc_mnist_48")
    codes = hasher.encode(images)            # uint8 (N, H, W[, C]) or image paths -> uint32 (N, W)
    index = jaxhash.HammingIndex(hasher.bits); index.add(codes)
"""

from __future__ import annotations

import concurrent.futures
import functools
import io
import os

import jax
import ml_collections
import numpy as np
from PIL import Image

from jaxhash import digests, parallel
from jaxhash.data.decode import read_rgb8, to_rgb8
from jaxhash.encode import encode_indices, make_encoder
from jaxhash.errors import UsageError
from jaxhash.methods import get_method
from jaxhash.progress import SILENT
from jaxhash.retrieval.codes import num_words
from jaxhash.run import model_state, run_files, rundir

_MIN_BATCH = 8  # smaller requests are padded up to this; larger ones to a power of two


class Hasher:
  """Encodes images with a trained run's network. Build one with :func:`load`."""

  def __init__(
    self,
    workdir: str,
    config: ml_collections.ConfigDict,
    info: run_files.ModelInfo,
    model,
    variables,
    step: int,
    mesh,
  ):
    self.workdir, self.config, self.step = workdir, config, step
    self.image_shape = info.image_shape
    self._method = get_method(config.method.name)
    self._variables, self._mesh = variables, mesh
    self._encoder = make_encoder(model, self._method, config.data)
    self.memory_budget = default_memory_budget()  # bytes; see batch_size_for
    self._fitted: dict[tuple[int, int], int] = {}  # (batch wanted, budget) -> batch that fits

  @property
  def bits(self) -> int:
    """Code length in bits; codes are packed into ``ceil(bits / 32)`` uint32 words."""
    return int(self.config.method.bits)

  @property
  def method(self) -> str:
    """The hashing method's name (``"dlbhc"``, ``"hashnet"``, ``"itq"``, ...)."""
    return self._method.name

  @functools.cached_property
  def fingerprint(self) -> str:
    """SHA-256 (first 16 hex digits) of the parameters and batch-norm statistics: equal only for
    the same trained model."""
    return digests.tree_sha256(self._variables)[: digests.ID_DIGITS]

  @functools.cached_property
  def _feature_shape(self) -> tuple[int, ...]:
    """The shape of one image's features, traced without running the network (for empty input)."""
    one = jax.ShapeDtypeStruct((1, *self.image_shape), np.uint8)
    return tuple(jax.eval_shape(self._encoder, self._variables, one)[1].shape[1:])

  def __repr__(self) -> str:
    return (
      f"Hasher({self.workdir!r}: {self.method}, {self.bits} bits, step {self.step}, "
      f"input {'x'.join(map(str, self.image_shape))})"
    )

  def encode(self, images, progress: bool = False) -> np.ndarray:
    """Packed codes, uint32 ``(N, ceil(bits / 32))``, of ``images`` (see :meth:`prepare`).

    ``progress=True`` shows a progress line on stderr when encoding takes more than a few seconds.
    """
    return self.encode_with_features(images, features=False, progress=progress)[0]

  def features(self, images, progress: bool = False) -> np.ndarray:
    """float32 ``(N, D)`` fc7 features of ``images``, which DLBHC re-ranks a candidate pool with."""
    return self.encode_with_features(images, progress=progress)[1]

  def encode_with_features(self, images, features: bool = True, progress: bool = False):
    """``(codes, features)`` of ``images`` in one pass; features are None when not asked for."""
    images = _as_batch(images)
    n = len(images)
    if n == 0:
      return (
        np.zeros((0, num_words(self.bits)), np.uint32),
        np.zeros((0, *self._feature_shape), np.float32) if features else None,
      )
    return encode_indices(
      self._encoder,
      self._variables,
      _Prepared(self, images),
      np.arange(n),
      self.batch_size_for(n),
      features,
      sharding=parallel.batch_sharded(self._mesh),
      stream=None if progress else SILENT,
    )

  def prepare(self, images) -> np.ndarray:
    """uint8 ``(N, H, W, C)`` in the run's input shape from any of:

    - a uint8 array ``(N, H, W, C)`` (C = 1, 3 or 4) or ``(N, H, W)`` (grayscale; refused when
      W is 1, 3 or 4: that reads as one ``(H, W, C)`` image, which ``images[None]`` makes a batch);
    - a sequence of image file paths, PIL images, or uint8 arrays ``(H, W[, C])`` of any sizes.
    """
    images = _as_batch(images)
    if isinstance(images, np.ndarray):
      if images.shape[1:] == self.image_shape:
        return images
      if images.shape[1:] + (1,) == self.image_shape:
        return images[..., None]
      return np.stack([self._conform(image) for image in images])
    items = images
    paths = [i for i, item in enumerate(items) if isinstance(item, (str, os.PathLike))]
    out = np.empty((len(items), *self.image_shape), np.uint8)
    with concurrent.futures.ThreadPoolExecutor(min(8, max(1, len(paths)))) as pool:
      for i, image in zip(paths, pool.map(lambda i: self.read_image(items[i]), paths)):
        out[i] = image
    for i, item in enumerate(items):
      if not isinstance(item, (str, os.PathLike)):
        out[i] = self._conform(item)
    return out

  def read_image(self, path: str | os.PathLike) -> np.ndarray:
    """One image file as uint8 ``(H, W, C)`` in the run's input shape, decoded as training decodes
    it (:mod:`jaxhash.data.decode`); a ValueError names a file that cannot be read."""
    return self._conform(read_rgb8(path))

  def decode_image(self, data: bytes, max_pixels: int | None = None) -> np.ndarray:
    """The bytes of an image file (PNG, JPEG, ...) with the pixels :meth:`read_image` gives the
    file, so a served upload gets the code its file would get. Pillow's errors pass through as
    they are; more than ``max_pixels`` pixels is a DecompressionBombError."""
    with Image.open(io.BytesIO(data)) as image:
      if max_pixels and image.width * image.height > max_pixels:
        raise Image.DecompressionBombError(
          f"{image.width}x{image.height} pixels, more than the {max_pixels:,} allowed"
        )
      image.load()
      return self._conform(to_rgb8(image, "the image"))

  def _conform(self, image) -> np.ndarray:
    """Converts one image (PIL or uint8 array) to the run's channels, then its size."""
    if isinstance(image, Image.Image):
      image = to_rgb8(image)
    else:
      array = np.asarray(image)
      if (
        array.dtype != np.uint8
        or array.ndim not in (2, 3)
        or (array.ndim == 3 and array.shape[2] not in (1, 3, 4))
        or 0 in array.shape
      ):
        raise UsageError(
          f"an image must be uint8 (H, W), (H, W, 1), (H, W, 3) or (H, W, 4) with "
          f"H, W >= 1; got {array.dtype} {array.shape}."
        )
      image = Image.fromarray(array[..., 0] if array.ndim == 3 and array.shape[2] == 1 else array)
    height, width, channels = self.image_shape
    image = image.convert("L" if channels == 1 else "RGB")
    if image.size != (width, height):
      image = image.resize((width, height), Image.BILINEAR)
    array = np.asarray(image, dtype=np.uint8)
    return array[..., None] if channels == 1 else array

  @property
  def batch_size(self) -> int:
    """Most images encoded at once: the run's ``eval.batch_size``, fewer for ``memory_budget``."""
    return self.batch_size_for(self.config.eval.batch_size)

  def batch_size_for(self, n: int) -> int:
    """The batch ``n`` images are encoded in: the next power of two >= n (at least 8; few
    compiles), at most ``eval.batch_size``, or the largest power of two that fits the budget."""
    small = max(_MIN_BATCH, 1 << max(n - 1, 0).bit_length())
    wanted = parallel.round_up_to_devices(min(self.config.eval.batch_size, small), self._mesh)
    key = (wanted, self.memory_budget)
    if key not in self._fitted:
      self._fitted[key] = self._fit(wanted)
    return self._fitted[key]

  def _fit(self, batch: int) -> int:
    """``batch``, or the largest power of two (at least 8) whose working memory fits the budget.

    The working memory is XLA's own account of the compiled encoder (temporaries, input and
    output, not the weights); it grows in proportion to the batch, so one smaller compile usually
    fits. The encoder compiled here is the one later calls run.
    """
    while batch > _MIN_BATCH:
      used = self._working_bytes(batch)
      if used is None or used <= self.memory_budget:
        break
      fitting = max(_MIN_BATCH, min(batch - 1, batch * self.memory_budget // used))
      batch = parallel.round_up_to_devices(1 << (fitting.bit_length() - 1), self._mesh)
    return batch

  def _working_bytes(self, batch: int) -> int | None:
    spec = jax.ShapeDtypeStruct(
      (batch, *self.image_shape), np.uint8, sharding=parallel.batch_sharded(self._mesh)
    )
    analysis = self._encoder.lower(self._variables, spec).compile().memory_analysis()
    if analysis is None:  # a backend without memory accounting
      return None
    return (
      analysis.temp_size_in_bytes
      + analysis.output_size_in_bytes
      + batch * int(np.prod(self.image_shape))
    )


class _Prepared:
  """The images made the run's input on indexing, one batch at a time (bounded memory)."""

  def __init__(self, hasher: Hasher, images):
    self._hasher, self._images = hasher, images

  def __getitem__(self, rows: np.ndarray) -> np.ndarray:
    if isinstance(self._images, np.ndarray):
      return self._hasher.prepare(self._images[rows])
    return self._hasher.prepare([self._images[i] for i in rows])


def default_memory_budget() -> int:
  """Bytes of working memory one batch of the network may take: 64 MiB on CPU, 1 GiB elsewhere.

  On CPU the fastest batches are those whose activations stay near the caches' size: Lite0 at
  96² px on 2 EPYC cores (under load) encoded ~120 images/s in batches of 16, ~95 in 32, ~74
  in 64 and ~62 in 256; at 224² px, batches of 8 to 64 ran alike (~10 MB per image).
  """
  return 64 << 20 if jax.default_backend() == "cpu" else 1 << 30


def _as_batch(images):
  """A checked uint8 array batch, or a list of single images / paths."""
  if isinstance(images, (str, os.PathLike, Image.Image)):
    raise UsageError("pass a list of image paths (or of images), not a single one: encode([path]).")
  if not isinstance(images, np.ndarray):
    return list(images)
  if images.dtype != np.uint8:
    raise UsageError(
      f"images must be uint8 (0..255); got {images.dtype}. Convert [0, 1] floats "
      "with np.clip(x * 255, 0, 255).astype(np.uint8)."
    )
  if (
    images.ndim not in (3, 4)
    or 0 in images.shape[1:]
    or (images.ndim == 4 and images.shape[3] not in (1, 3, 4))
  ):
    raise UsageError(
      f"images must be (N, H, W, C) with C = 1, 3 or 4, or (N, H, W), and H, W >= 1; "
      f"got shape {images.shape}."
    )
  if images.ndim == 3 and images.shape[2] in (1, 3, 4):
    raise UsageError(
      f"images of shape {images.shape} look like one (H, W, C) image rather than "
      f"{images.shape[0]} grayscale images of width {images.shape[2]}; pass a "
      "batch: images[None], or a list of images."
    )
  return images


def load(workdir: str | os.PathLike) -> Hasher:
  """The latest checkpoint of a run written by ``python -m jaxhash.train``, ready to encode.

  Reads ``config.json``, ``model.json`` and the latest checkpoint; never the training data. A
  Hasher encodes on this process's own devices, also in a run of several processes (each encodes
  the images it is given).
  """
  workdir = os.fspath(workdir)
  config = rundir.load_config(workdir)
  info = run_files.read_model_info(workdir)
  model = model_state.build_model(config, info.num_classes)
  mesh = parallel.data_mesh(jax.local_devices())
  state = model_state.restore_state(
    workdir, model_state.abstract_state(config, model, info.image_shape, mesh)
  )
  return Hasher(workdir, config.lock(), info, model, state.variables, int(state.step), mesh)
