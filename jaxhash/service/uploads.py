"""Untrusted image bytes from a request, decoded exactly as ``jaxhash.search`` decodes the file.

Pillow raises many exception types on hostile bytes (OSError, SyntaxError, struct.error, ...):
every one becomes a 400 naming the image, never a 500.
"""

from __future__ import annotations

import io

import numpy as np
from PIL import Image, UnidentifiedImageError

from jaxhash.service.errors import RequestError

MAX_PIXELS = 50_000_000  # a decoded image is width x height x 3 bytes; larger ones are refused


def decode(hasher, data: bytes, name: str = "the image") -> np.ndarray:
  """uint8 ``(H, W, C)`` in the run's input shape, or a RequestError(400) saying what is wrong."""
  if not data:
    raise RequestError(400, f"{name} is empty: send the bytes of an image file (PNG, JPEG, ...).")
  try:
    return hasher.decode_image(data, MAX_PIXELS)
  except UnidentifiedImageError:
    problem = "is not an image in a format Pillow reads (PNG, JPEG, GIF, BMP, TIFF, WebP, ...)"
  except Exception as error:  # noqa: BLE001 - see the module docstring
    text = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
    problem = ("is truncated" if "truncated" in text else "cannot be decoded") + f" ({text})"
  raise RequestError(400, f"{name} {problem}; send a complete image file.")


def extension(data: bytes) -> str:
  """The file extension of an image's own format (``.png``, ``.jpg``, ...), to store it as is."""
  with Image.open(io.BytesIO(data)) as image:
    return {"JPEG": ".jpg", "TIFF": ".tif"}.get(image.format, "." + image.format.lower())
