"""The HTTP app: the items, health and stats, the web page and the API's description in FastAPI,
and ``POST /search`` as a plain ASGI handler in front of it (``search_route``).

Every refused request is answered with a 4xx status and ``{"error": "<problem>; <fix>"}``: bad
query parameters, bodies and images, unknown ids and routes, wrong methods. The index and the
network are used only on the engine's worker thread (see ``engine``).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import mimetypes
from importlib import resources

import numpy as np
from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, Response
from starlette.concurrency import run_in_threadpool
from starlette.exceptions import HTTPException

from jaxhash.digests import hex_id
from jaxhash.service import search_route, uploads
from jaxhash.service.errors import RequestError
from jaxhash.service.limits import BodyLimit
from jaxhash.service.search_route import SearchRoute
from jaxhash.service.stats import CountResponses

_PAGE = {"/": "text/html", "/page.css": "text/css", "/page.js": "text/javascript"}


def create_app(engine, *, max_body: int = 8 << 20, max_k: int = search_route.MAX_K):
  """The ASGI app over ``engine`` (started and stopped with the app's lifespan), refusing bodies
  over ``max_body`` bytes."""
  catalog, hasher, stats = engine.catalog, engine.hasher, engine.stats

  @contextlib.asynccontextmanager
  async def lifespan(_):
    engine.start()
    yield
    engine.stop()

  app = FastAPI(
    title="jaxhash search",
    version="1",
    lifespan=lifespan,
    docs_url=None,
    redoc_url=None,
    description="Search an index of images by image, code or item id.",
  )
  page = {
    route: (
      resources.files("jaxhash.service") / "page" / ("index.html" if route == "/" else route[1:])
    ).read_bytes()
    for route in _PAGE
  }

  @app.get("/items/{item_id}/image", summary="The image of an indexed item")
  async def item_image(item_id: str):
    path = catalog.path_of(item_id)
    try:
      data = await run_in_threadpool(_read, path)
    except OSError:
      raise RequestError(
        404,
        f"the image of item {item_id!r} ({path}) can no longer be read; "
        "rebuild the index or delete the item.",
      ) from None
    kind = mimetypes.guess_type(path)[0] or ""
    kind = kind if kind.startswith("image/") else "application/octet-stream"
    return Response(
      data,
      media_type=kind,
      headers={"X-Content-Type-Options": "nosniff", "Cache-Control": "max-age=3600"},
    )

  @app.post("/items", status_code=201, summary="Add images (--writable servers)")
  async def add_items(request: Request, id: str | None = None):  # noqa: A002 - the API's name
    """Multipart fields ``image`` (one or more) and optionally ``id`` (one per image), or the raw
    bytes of one image with ``?id=``. Ids default to the image's SHA-256 (16 hex digits)."""
    require_writable()
    data = uploads.images(
      request.headers.get("content-type", ""), await request.body(), many=True, raw_id=id
    )
    images = []
    for number, (_, content) in enumerate(data, 1):
      name = f"image {number}" if len(data) > 1 else "the uploaded file"
      images.append(await uploads.decode(hasher, content, name))
    files = [
      (item_id or hex_id(content), uploads.extension(content), content) for item_id, content in data
    ]
    paths = await asyncio.wrap_future(engine.add(files, np.stack(images)))
    return JSONResponse(
      {"added": [{"id": f[0], "path": p} for f, p in zip(files, paths)], "items": len(catalog)},
      status_code=201,
    )

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
    return {
      "items": len(catalog),
      "bits": hasher.bits,
      "method": hasher.method,
      "run": hasher.workdir,
      "step": hasher.step,
      "index": catalog.path,
      "writable": catalog.writable,
      "features": catalog.index.features is not None,
      "built_step": run.get("step"),
      **stats.snapshot(),
    }

  for route, kind in _PAGE.items():
    app.add_api_route(route, _static(page[route], kind), methods=["GET"], include_in_schema=False)

  def require_writable() -> None:
    if not catalog.writable:
      raise RequestError(
        403, "this server is read-only; start it with --writable to add or delete items."
      )

  search = SearchRoute(engine, max_k)
  # Service sends POST /search to the handler before FastAPI; this route makes FastAPI's router
  # answer other methods on /search with 405.
  app.add_route("/search", search, methods=["POST"])
  _install_error_handlers(app)
  _document(app, "/search", search_route.OPENAPI)
  return Service(app, search, engine, max_body)


class Service:
  """The ASGI app: ``POST /search`` straight to its handler (see ``search_route``), the rest
  through FastAPI; every request within the body limit and counted by status."""

  def __init__(self, api: FastAPI, search: SearchRoute, engine, max_body: int):
    self.api, self.search, self.engine = api, search, engine
    self._app = CountResponses(BodyLimit(self._route, max_body), engine.stats)

  async def __call__(self, scope, receive, send):
    await self._app(scope, receive, send)

  async def _route(self, scope, receive, send):
    if scope["type"] == "http" and scope["path"] == "/search" and scope["method"] == "POST":
      return await self.search(scope, receive, send)
    await self.api(scope, receive, send)


def _document(app: FastAPI, path: str, operations: dict) -> None:
  """Adds a route that FastAPI does not describe (a plain ASGI one) to its /openapi.json."""
  describe = app.openapi

  def openapi():
    if app.openapi_schema is None:
      describe()["paths"][path] = operations
    return app.openapi_schema

  app.openapi = openapi


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
      message = (
        f"no route {request.url.path}; the API is POST /search, GET /items/{{id}}/image, "
        "GET /health, GET /stats (see /openapi.json), and the web page is at /."
      )
    elif error.status_code == 405:
      allowed = (error.headers or {}).get("Allow", "")
      message = (
        f"{request.method} is not allowed on {request.url.path}; use {allowed or 'another method'}."
      )
    else:
      message = f"{error.detail}; check the request."
    return JSONResponse({"error": message}, status_code=error.status_code, headers=error.headers)

  @app.exception_handler(RequestValidationError)
  async def invalid(_, error: RequestValidationError):
    first = error.errors()[0]
    where = ".".join(str(part) for part in first["loc"][1:]) or "the request"
    return JSONResponse(
      {
        "error": f"{where}={first.get('input')!r}: {first['msg']}; see "
        "/openapi.json for the parameters."
      },
      status_code=400,
    )

  @app.exception_handler(Exception)
  async def bug(_, error: Exception):
    logging.getLogger("jaxhash.serve").error("internal error", exc_info=error)
    return JSONResponse(
      {"error": "internal error (a bug, logged by the server); please report it with the request."},
      status_code=500,
    )
