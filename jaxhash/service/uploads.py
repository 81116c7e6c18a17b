"""Images out of a request: the image files (and ids) of a multipart form or a raw body, and
untrusted image bytes decoded exactly as ``jaxhash.search`` decodes the same file.

The body is already in memory (``limits.BodyLimit`` read it, within the limit), so the form is
parsed from it directly: no spooled temporary files, no thread hops. Pillow raises many exception
types on hostile bytes (OSError, SyntaxError, struct.error, ...): every one becomes a 400 naming
the image, never a 500.
"""

from __future__ import annotations

import io

import numpy as np
from PIL import Image, UnidentifiedImageError
from python_multipart.multipart import MultipartParser, parse_options_header
from starlette.concurrency import run_in_threadpool

from jaxhash.service.catalog import ID_PATTERN
from jaxhash.service.errors import RequestError

MAX_PIXELS = 50_000_000  # a decoded image is width x height x 3 bytes; larger ones are refused
# Smaller bodies are decoded on the event loop, where a thread hop would cost more than decoding
# them; even as a deflate bomb (~1,000:1) 4 KiB holds at most ~4 million pixels, a few ms of work.
INLINE_BYTES = 4096


def images(content_type: str, body: bytes, many: bool, raw_id: str | None = None):
  """``[(id or None, bytes), ...]``: the multipart ``image`` files (one unless ``many``) with
  their ``id`` fields, or the raw body as one image with ``raw_id``."""
  if not content_type.startswith("multipart/form-data"):
    if not body:
      raise RequestError(
        400, "the request body is empty; send an image (multipart field 'image', or the raw bytes)."
      )
    return [(_checked_id(raw_id), body)]
  parts = form_parts(body, content_type)
  files = [data for name, filename, data in parts if name == "image"]
  ids = [_checked_id(data.decode("utf-8", "replace")) for name, _, data in parts if name == "id"]
  if not files:
    raise RequestError(
      400, "no multipart field 'image'; send the image as a file field named 'image'."
    )
  if len(files) > 1 and not many:
    raise RequestError(400, f"{len(files)} images in one search; send one image per request.")
  if ids and len(ids) != len(files):
    raise RequestError(
      400, f"{len(ids)} 'id' fields for {len(files)} images; send one id per image, or none."
    )
  return [(ids[i] if ids else None, data) for i, data in enumerate(files)]


def _checked_id(item_id: str | None) -> str | None:
  if item_id is not None and not ID_PATTERN.fullmatch(item_id):
    raise RequestError(
      400,
      f"id {item_id[:40]!r} is not allowed; use 1 to 128 letters, digits, "
      "'.', '_' or '-', starting with a letter or digit.",
    )
  return item_id


def form_parts(body: bytes, content_type: str) -> list[tuple[str, str | None, bytes]]:
  """``(field name, file name or None, bytes)`` of each part of a multipart/form-data body."""
  _, options = parse_options_header(content_type)
  if not options.get(b"boundary"):
    raise RequestError(
      400,
      "the multipart body declares no boundary; send a multipart/form-data "
      "request as an HTTP client builds it.",
    )
  parts, headers, chunks, field = [], {}, [], [b""]

  def on_header_field(data, start, end):
    field[0] = data[start:end].lower()

  def on_header_value(data, start, end):
    headers[field[0]] = data[start:end]

  def on_part_end():
    _, disposition = parse_options_header(headers.get(b"content-disposition", b""))
    filename = disposition.get(b"filename")
    name = disposition.get(b"name", b"").decode("utf-8", "replace")
    filename = None if filename is None else filename.decode("utf-8", "replace")
    parts.append((name, filename, b"".join(chunks)))
    headers.clear()
    chunks.clear()

  parser = MultipartParser(
    options[b"boundary"],
    {
      "on_header_field": on_header_field,
      "on_header_value": on_header_value,
      "on_part_data": lambda data, start, end: chunks.append(data[start:end]),
      "on_part_end": on_part_end,
    },
  )
  try:
    parser.write(body)
    parser.finalize()
  except ValueError as error:  # python-multipart's parse errors
    raise RequestError(
      400,
      f"the multipart body is malformed ({error}); send a "
      "multipart/form-data request as an HTTP client builds it.",
    ) from None
  return parts


async def decode(hasher, data: bytes, name: str = "the uploaded file") -> np.ndarray:
  """uint8 ``(H, W, C)`` in the run's input shape, or a RequestError(400) saying what is wrong.
  Bodies over INLINE_BYTES are decoded on a worker thread, not to stall other requests."""
  if not data:
    raise RequestError(400, f"{name} is empty: send the bytes of an image file (PNG, JPEG, ...).")
  if len(data) > INLINE_BYTES:
    return await run_in_threadpool(_decode, hasher, data, name)
  return _decode(hasher, data, name)


def _decode(hasher, data: bytes, name: str) -> np.ndarray:
  try:
    return hasher.decode_image(data, MAX_PIXELS)
  except Image.DecompressionBombError as error:
    problem = f"is too large ({error}); send a smaller image"
  except UnidentifiedImageError:
    problem = (
      "is not an image in a format Pillow reads (PNG, JPEG, GIF, BMP, TIFF, WebP, ...); "
      "send an image file"
    )
  except Exception as error:  # noqa: BLE001 - see the module docstring
    text = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
    problem = ("is truncated" if "truncated" in text else "cannot be decoded") + (
      f" ({text}); send a complete image file"
    )
  raise RequestError(400, f"{name} {problem}.")


def extension(data: bytes) -> str:
  """The file extension of an image's own format (``.png``, ``.jpg``, ...), to store it as is."""
  with Image.open(io.BytesIO(data)) as image:
    return {"JPEG": ".jpg", "TIFF": ".tif"}.get(image.format, "." + image.format.lower())
