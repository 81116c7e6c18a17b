"""One image decoder for every command that reads image files: training (list files and image
folders), ``jaxhash.load``'s Hasher, index and search, so an image gets the same pixels, and so
the same code, whichever of them reads it.

A file is opened only when it is a regular file (a named pipe among the images is refused by name
instead of hanging the command). Pixels become 8-bit RGB: 16-bit grayscale keeps its top 8 bits
(Pillow's own convert would clip it to white, and Pillow already reduces 16-bit RGB this way);
32-bit integer and float images have no standard 8-bit scale and are refused.
"""

from __future__ import annotations

import os

import numpy as np
from PIL import Image

from jaxhash.errors import UsageError
from jaxhash.io_utils import open_regular

_SIXTEEN_BIT_MODES = ("I;16", "I;16L", "I;16B", "I;16N")


def open_image(path: str | os.PathLike) -> Image.Image:
  """The image at ``path`` with its pixels loaded, in its own mode; a ValueError names a file that
  is not an image Pillow reads, a FileNotFoundError one that is missing."""
  path = os.fspath(path)
  try:
    f = open_regular(path, "image")
  except FileNotFoundError:
    raise FileNotFoundError(f"image {path!r} not found.") from None
  except OSError as e:  # permissions, a symlink loop
    raise UsageError(f"cannot read image {path!r} ({e.strerror or e}).") from None
  with f:
    try:
      with Image.open(f) as image:
        image.load()
    except (OSError, ValueError, Image.DecompressionBombError) as e:
      raise UsageError(
        f"cannot decode image {path!r} ({e}); re-encode it as JPEG or PNG."
      ) from None
  return image


def read_rgb8(path: str | os.PathLike) -> Image.Image:
  """The image file at ``path`` as 8-bit RGB (see the module docstring)."""
  return to_rgb8(open_image(path), f"image {os.fspath(path)!r}")


def to_rgb8(image: Image.Image, what: str = "a PIL image") -> Image.Image:
  """``image`` as 8-bit RGB; ``what`` names it in the error for 32-bit pixels."""
  if image.mode in _SIXTEEN_BIT_MODES or (image.mode == "I" and image.format == "PNG"):
    # PNG stores at most 16 bits per sample (older Pillow opens 16-bit grayscale PNG as mode "I")
    gray = (np.asarray(image).astype(np.uint32) >> 8).astype(np.uint8)
    return Image.fromarray(gray, "L").convert("RGB")
  if image.mode in ("I", "F"):
    raise UsageError(
      f"{what} has 32-bit {'float' if image.mode == 'F' else 'integer'} pixels, "
      "which have no standard 8-bit scale; convert it to an 8- or 16-bit PNG or a "
      "JPEG."
    )
  return image.convert("RGB")
