"""``POST /search`` as a plain ASGI app: the hot path, served without the framework's layers.

Each search would otherwise pass through FastAPI's and Starlette's middleware, routing, request
and response objects, which cost more per request than encoding and searching a small image in a
batch. ``app.Service`` hands ``POST /search`` straight here (after the body limit and the counter);
this handler checks its own input and answers its own errors, as ``{"error": ...}`` with a 4xx.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from urllib.parse import parse_qsl

import numpy as np

from jaxhash.retrieval.codes import num_words
from jaxhash.service import uploads
from jaxhash.service.errors import RequestError, send_json

MAX_K = 1000

OPENAPI = {
  "post": {
    "summary": "The nearest items of an image, of codes, or of stored items",
    "description": 'Send an image (multipart field `image`, or the raw bytes) for `{"results": '
    '[{"rank", "id", "path", "distance"}, ...], "bits", "took_ms"}`; or '
    'JSON `{"codes": [...]}` (bits or packed uint32 words per code) or '
    '`{"ids": [...]}` for `"results"` holding one list per code or id.',
    "parameters": [
      {
        "name": "k",
        "in": "query",
        "description": "results per query",
        "schema": {"type": "integer", "default": 10, "minimum": 1, "maximum": MAX_K},
      },
      {
        "name": "radius",
        "in": "query",
        "schema": {"type": "integer", "minimum": 0},
        "description": "keep only results within this Hamming distance",
      },
      {
        "name": "rerank",
        "in": "query",
        "schema": {"type": "boolean", "default": False},
        "description": "re-rank by fc7 features (an index built with --features)",
      },
    ],
    "requestBody": {
      "content": {
        "multipart/form-data": {
          "schema": {
            "type": "object",
            "properties": {"image": {"type": "string", "format": "binary"}},
          }
        },
        "application/octet-stream": {"schema": {"type": "string", "format": "binary"}},
        "application/json": {
          "schema": {
            "type": "object",
            "properties": {
              "codes": {"type": "array", "items": {"type": "array", "items": {"type": "integer"}}},
              "ids": {"type": "array", "items": {"type": "string"}},
            },
          }
        },
      }
    },
    "responses": {
      "200": {"description": "the results"},
      "4XX": {"description": '{"error": "<the problem>; <the fix>"}'},
    },
  }
}


class SearchRoute:
  def __init__(self, engine, max_k: int = MAX_K):
    self.engine, self.max_k = engine, max_k
    self.bits = engine.hasher.bits  # a locked ConfigDict's lookup costs more than the search

  async def __call__(self, scope, receive, send):
    started = time.perf_counter()
    try:
      payload, status = await self._search(scope, await _body(receive)), 200
      payload["took_ms"] = round((time.perf_counter() - started) * 1e3, 3)
      self.engine.stats.record_search(payload["took_ms"])
    except RequestError as error:
      payload, status = {"error": error.message}, error.status
    except Exception:  # noqa: BLE001 - a bug: logged, answered 500, and the server carries on
      logging.getLogger("jaxhash.serve").exception("POST /search")
      payload, status = (
        {
          "error": "internal error (a bug, logged by the server); please report "
          "it with the request."
        },
        500,
      )
    await send_json(send, status, payload)

  async def _search(self, scope, body: bytes) -> dict:
    k, radius, rerank = parameters(
      dict(parse_qsl(scope["query_string"].decode("latin-1"))), self.max_k
    )
    content_type = dict(scope["headers"]).get(b"content-type", b"").decode("latin-1")
    engine = self.engine
    if content_type.startswith("application/json"):
      codes, item_ids = stored_query(body, engine.catalog.index.nbits)
      future = engine.search_stored(k, radius, rerank, codes=codes, item_ids=item_ids)
    else:
      ((_, data),) = uploads.images(content_type, body, many=False)
      future = engine.search_image(await uploads.decode(engine.hasher, data), k, radius, rerank)
    return {"results": await asyncio.wrap_future(future), "bits": self.bits}


async def _body(receive) -> bytes:
  """The request body (``limits.BodyLimit`` has already read it, within the limit)."""
  chunks = []
  while True:
    message = await receive()
    chunks.append(message.get("body", b""))
    if not message.get("more_body"):
      return b"".join(chunks)


def parameters(query: dict, max_k: int) -> tuple[int, int | None, bool]:
  """``(k, radius, rerank)`` from the query string, each checked, with the fix when wrong."""

  def integer(name, default):
    text = query.get(name)
    if text is None:
      return default
    try:
      return int(text)
    except ValueError:
      raise RequestError(400, f"{name}={text[:40]!r} is not an integer.") from None

  k, radius = integer("k", 10), integer("radius", None)
  if not 1 <= k <= max_k:
    raise RequestError(400, f"k={k} is out of range: ask for 1 to {max_k} results.")
  if radius is not None and radius < 0:
    raise RequestError(400, f"radius={radius} must be >= 0 (a Hamming distance).")
  rerank = query.get("rerank", "false").lower()
  if rerank not in ("true", "false", "1", "0"):
    raise RequestError(400, f"rerank={rerank[:40]!r} must be true or false.")
  return k, radius, rerank in ("true", "1")


def stored_query(body: bytes, nbits: int):
  """``(codes, None)`` or ``(None, ids)`` from a JSON body ``{"codes": [...]}`` or
  ``{"ids": [...]}``."""
  try:
    query = json.loads(body)
  except (UnicodeDecodeError, json.JSONDecodeError) as error:
    raise RequestError(
      400, f'the JSON body cannot be parsed ({error}); send {{"codes": [...]}} or {{"ids": [...]}}.'
    ) from None
  if (
    not isinstance(query, dict)
    or len(query.keys() & {"codes", "ids"}) != 1
    or not isinstance(query.get("codes", query.get("ids")), list)
    or not query.get("codes", query.get("ids"))
  ):
    raise RequestError(
      400, 'the JSON body must be {"codes": [...]} or {"ids": [...]}, with a non-empty list.'
    )
  if "ids" in query:
    if not all(isinstance(i, str) for i in query["ids"]):
      raise RequestError(400, "ids must be strings, as search results report them.")
    return None, query["ids"]
  try:
    codes = np.array(query["codes"], dtype=np.int64)
  except (ValueError, TypeError, OverflowError):
    codes = None
  if codes is None or codes.ndim != 2 or codes.shape[1] not in (nbits, num_words(nbits)):
    raise RequestError(
      400,
      f"codes must be a list of {nbits}-bit codes, each {nbits} bits (0/1) "
      f"or {num_words(nbits)} packed uint32 words.",
    )
  if codes.shape[1] == nbits:
    return codes, None
  if (codes < 0).any() or (codes >= 2**32).any():
    raise RequestError(400, "packed code words must be uint32 (0 to 4294967295).")
  return codes.astype(np.uint32), None
