"""The HTTP routes: the search API, the items, health and stats, and the web page.

Every refused request is answered with a 4xx status and ``{"error": "<problem>; <fix>"}``: bad
query parameters, bodies and images, unknown ids and routes, wrong methods. The index and the
network are used only on the engine's worker thread (see ``engine``).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import mimetypes
import time
from importlib import resources

import numpy as np
from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, Response
from starlette.concurrency import run_in_threadpool
from starlette.exceptions import HTTPException

from jaxhash.retrieval.codes import num_words
from jaxhash.service import uploads
from jaxhash.service.catalog import ID_PATTERN, digest_id
from jaxhash.service.errors import RequestError
from jaxhash.service.limits import BodyLimit
from jaxhash.service.stats import CountResponses

MAX_K = 1000
_PAGE = {"/": "text/html", "/page.css": "text/css", "/page.js": "text/javascript"}


def create_app(engine, *, max_body: int = 8 << 20, max_k: int = MAX_K):
  """The ASGI app over a started-on-startup ``engine``, refusing bodies over ``max_body`` bytes."""
  catalog, hasher, stats = engine.catalog, engine.hasher, engine.stats

  @contextlib.asynccontextmanager
  async def lifespan(_):
    engine.start()
    yield
    engine.stop()

  app = FastAPI(title="jaxhash search", version="1", lifespan=lifespan, docs_url=None,
                redoc_url=None, description="Search an index of images by image, code or item id.")
  page = {route: (resources.files("jaxhash.service") / "page" / ("index.html" if route == "/" else
                                                                  route[1:])).read_bytes()
          for route in _PAGE}

  @app.post("/search", summary="The nearest items of an image, of codes, or of stored items",
            openapi_extra={"parameters": _SEARCH_PARAMETERS})
  async def search(request: Request):
    """Send an image (multipart field ``image``, or the raw bytes) for ``{"results": [{"rank",
    "id", "path", "distance"}, ...], "bits", "took_ms"}``; or JSON ``{"codes": [...]}`` (bits or
    packed uint32 words per code) or ``{"ids": [...]}`` for ``"results"`` holding one list per
    code or id."""
    started = time.perf_counter()
    k, radius, rerank = _search_parameters(request.query_params, max_k)
    body = await request.body()
    if request.headers.get("content-type", "").startswith("application/json"):
      codes, item_ids = _stored_query(body, catalog.index.nbits)
      future = engine.search_stored(k, radius, rerank, codes=codes, item_ids=item_ids)
    else:
      (_, data), = _images(request, body, many=False)
      future = engine.search_image(await uploads.decode(hasher, data), k, radius, rerank)
    results = await asyncio.wrap_future(future)
    took = (time.perf_counter() - started) * 1e3
    stats.record_search(took)
    return JSONResponse({"results": results, "bits": hasher.bits, "took_ms": round(took, 3)})

  @app.get("/items/{item_id}/image", summary="The image of an indexed item")
  async def item_image(item_id: str):
    path = catalog.path_of(item_id)
    try:
      data = await run_in_threadpool(_read, path)
    except OSError:
      raise RequestError(404, f"the image of item {item_id!r} ({path}) can no longer be read; "
                         "rebuild the index or delete the item.") from None
    kind = mimetypes.guess_type(path)[0] or ""
    return Response(data, media_type=kind if kind.startswith("image/") else "application/octet-stream",
                    headers={"X-Content-Type-Options": "nosniff", "Cache-Control": "max-age=3600"})

  @app.post("/items", status_code=201, summary="Add images (--writable servers)")
  async def add_items(request: Request, id: str | None = None):  # noqa: A002 - the API's name
    """Multipart fields ``image`` (one or more) and optionally ``id`` (one per image), or the raw
    bytes of one image with ``?id=``. Ids default to the image's SHA-256 (16 hex digits)."""
    require_writable()
    data = _images(request, await request.body(), many=True, raw_id=id)
    images = []
    for number, (item_id, content) in enumerate(data, 1):
      name = f"image {number}" if len(data) > 1 else "the uploaded file"
      images.append(await uploads.decode(hasher, content, name))
    files = [(item_id or digest_id(content), uploads.extension(content), content)
             for item_id, content in data]
    paths = await asyncio.wrap_future(engine.add(files, np.stack(images)))
    return JSONResponse({"added": [{"id": f[0], "path": p} for f, p in zip(files, paths)],
                         "items": len(catalog)}, status_code=201)

  @app.delete("/items/{item_id}", summary="Delete an item (--writable servers)")
  async def delete_item(item_id: str):
    require_writable()
    await asyncio.wrap_future(engine.delete(item_id))
    return {"deleted": item_id, "items": len(catalog)}

  @app.get("/health", summary="200 while the server answers")
  async def health():
    return {"status": "ok", "items": len(catalog)}

  @app.get("/stats", summary="Items, code length, run, uptime, requests, search latency")
  async def get_stats():
    run = catalog.index.run or {}
    return {"items": len(catalog), "bits": hasher.bits, "method": hasher.method,
            "run": hasher.workdir, "step": hasher.step, "index": catalog.path,
            "writable": catalog.writable, "features": catalog.index.features is not None,
            "built_step": run.get("step"), **stats.snapshot()}

  for route, kind in _PAGE.items():
    app.add_api_route(route, _static(page[route], kind), methods=["GET"], include_in_schema=False)

  def require_writable() -> None:
    if not catalog.writable:
      raise RequestError(403, "this server is read-only; start it with --writable to add or "
                         "delete items.")

  _install_error_handlers(app)
  app.add_middleware(BodyLimit, limit=max_body)
  app.add_middleware(CountResponses, stats=stats)  # the outermost: counts 413s too
  app.state.engine = engine
  return app


def _images(request: Request, body: bytes, many: bool, raw_id: str | None = None):
  """``[(id or None, bytes), ...]``: the multipart ``image`` files (one unless ``many``) with
  their ``id`` fields, or the raw body as one image with ``raw_id``."""
  kind = request.headers.get("content-type", "")
  if not kind.startswith("multipart/form-data"):
    if not body:
      raise RequestError(400, "the request body is empty; send an image (multipart field 'image', "
                         "or the raw bytes).")
    return [(_checked_id(raw_id), body)]
  parts = uploads.form_parts(body, kind)
  files = [data for name, filename, data in parts if name == "image"]
  ids = [_checked_id(data.decode("utf-8", "replace")) for name, _, data in parts if name == "id"]
  if not files:
    raise RequestError(400, "no multipart field 'image'; send the image as a file field named "
                       "'image'.")
  if len(files) > 1 and not many:
    raise RequestError(400, f"{len(files)} images in one search; send one image per request.")
  if ids and len(ids) != len(files):
    raise RequestError(400, f"{len(ids)} 'id' fields for {len(files)} images; send one id per "
                       "image, or none.")
  return [(ids[i] if ids else None, data) for i, data in enumerate(files)]


def _search_parameters(query, max_k: int) -> tuple[int, int | None, bool]:
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


_SEARCH_PARAMETERS = [
    {"name": "k", "in": "query", "schema": {"type": "integer", "default": 10, "minimum": 1,
                                            "maximum": MAX_K}, "description": "results per query"},
    {"name": "radius", "in": "query", "schema": {"type": "integer", "minimum": 0},
     "description": "keep only results within this Hamming distance"},
    {"name": "rerank", "in": "query", "schema": {"type": "boolean", "default": False},
     "description": "re-rank by fc7 features (an index built with --features)"}]


def _checked_id(item_id: str | None) -> str | None:
  if item_id is not None and not ID_PATTERN.fullmatch(item_id):
    raise RequestError(400, f"id {item_id[:40]!r} is not allowed; use 1 to 128 letters, digits, "
                       "'.', '_' or '-', starting with a letter or digit.")
  return item_id


def _stored_query(body: bytes, nbits: int):
  """``(codes, None)`` or ``(None, ids)`` from a JSON body ``{"codes": [...]}`` or ``{"ids": [...]}``."""
  try:
    query = json.loads(body)
  except (UnicodeDecodeError, json.JSONDecodeError) as error:
    raise RequestError(400, f"the JSON body cannot be parsed ({error}); send {{\"codes\": [...]}} "
                       "or {\"ids\": [...]}.") from None
  if not isinstance(query, dict) or len(query.keys() & {"codes", "ids"}) != 1 or not isinstance(
      query.get("codes", query.get("ids")), list) or not query.get("codes", query.get("ids")):
    raise RequestError(400, "the JSON body must be {\"codes\": [...]} or {\"ids\": [...]}, with a "
                       "non-empty list.")
  if "ids" in query:
    if not all(isinstance(i, str) for i in query["ids"]):
      raise RequestError(400, "ids must be strings, as search results report them.")
    return None, query["ids"]
  try:
    codes = np.array(query["codes"], dtype=np.int64)
  except (ValueError, TypeError, OverflowError):
    codes = None
  if codes is None or codes.ndim != 2 or codes.shape[1] not in (nbits, num_words(nbits)):
    raise RequestError(400, f"codes must be a list of {nbits}-bit codes, each {nbits} bits (0/1) or "
                       f"{num_words(nbits)} packed uint32 words.")
  if codes.shape[1] == nbits:
    return codes, None
  if (codes < 0).any() or (codes >= 2**32).any():
    raise RequestError(400, "packed code words must be uint32 (0 to 4294967295).")
  return codes.astype(np.uint32), None


def _read(path: str) -> bytes:
  with open(path, "rb") as f:
    return f.read()


def _static(content: bytes, kind: str):
  async def serve_page():
    return Response(content, media_type=kind)
  return serve_page


def _install_error_handlers(app: FastAPI) -> None:
  @app.exception_handler(RequestError)
  async def request_error(_, error: RequestError):
    return JSONResponse({"error": error.message}, status_code=error.status)

  @app.exception_handler(HTTPException)
  async def http_error(request: Request, error: HTTPException):
    if error.status_code == 404:
      message = (f"no route {request.url.path}; the API is POST /search, GET /items/{{id}}/image, "
                 "GET /health, GET /stats (see /openapi.json), and the web page is at /.")
    elif error.status_code == 405:
      allowed = (error.headers or {}).get("Allow", "")
      message = f"{request.method} is not allowed on {request.url.path}; use {allowed or 'another method'}."
    else:
      message = f"{error.detail}; check the request."
    return JSONResponse({"error": message}, status_code=error.status_code, headers=error.headers)

  @app.exception_handler(RequestValidationError)
  async def invalid(_, error: RequestValidationError):
    first = error.errors()[0]
    where = ".".join(str(part) for part in first["loc"][1:]) or "the request"
    return JSONResponse({"error": f"{where}={first.get('input')!r}: {first['msg']}; see "
                         "/openapi.json for the parameters."}, status_code=400)

  @app.exception_handler(Exception)
  async def bug(_, error: Exception):
    logging.getLogger("jaxhash.serve").error("internal error", exc_info=error)
    return JSONResponse({"error": "internal error (a bug, logged by the server); please report "
                         "it with the request."}, status_code=500)
