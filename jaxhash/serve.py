"""Serve an index over HTTP: a JSON search API for programs and a web page for people.

  python -m jaxhash.serve --index FILE.jhi [--workdir RUN] [--host 127.0.0.1] [--port 8000]
                          [--writable] [--items DIR] [--max-body-mb 8]

Loads the run that built the index (``--workdir`` as for ``jaxhash.search``) and the index once,
then answers until stopped (Ctrl-C). Open http://127.0.0.1:8000/ to search by dropping an image;
programs POST an image to /search?k=10 and get the results ``jaxhash.search --json`` prints. The
API (docs/serving.md; /openapi.json): POST /search, GET /items/{id}/image, GET /health, GET
/stats, and with ``--writable`` POST /items and DELETE /items/{id}, each change saved to the index
file before it is acknowledged (added images are stored in --items, default FILE.items/).
Listens on 127.0.0.1 only unless ``--host`` says otherwise (``--host 0.0.0.0``: every interface).
Needs the serve extra: pip install "jaxhash[serve]".
"""

from __future__ import annotations

import gc
import socket
import sys

from absl import flags

from jaxhash import cli
from jaxhash.errors import UsageError


def define_flags(argv: list[str]) -> flags.FlagValues:
  values = cli.new_flags()
  for name, default, help_text in [
    ("index", None, "Index file FILE.jhi from jaxhash.index."),
    ("workdir", None, "Run that encodes the queries (default: the one the index records)."),
    ("host", "127.0.0.1", "Address to listen on."),
    ("items", None, "Where added images are stored (default: FILE.items)."),
  ]:
    flags.DEFINE_string(name, default, help_text, flag_values=values)
  flags.DEFINE_integer("port", 8000, "Port to listen on.", flag_values=values)
  flags.DEFINE_bool(
    "writable", False, "Allow POST /items and DELETE /items/{id}.", flag_values=values
  )
  flags.DEFINE_float("max-body-mb", 8.0, "Largest request body, in MB.", flag_values=values)
  flags.DEFINE_integer("max-batch", 64, "Most queries encoded together.", flag_values=values)
  flags.DEFINE_float(
    "batch-window-ms", 2.0, "How long a batch waits for more queries.", flag_values=values
  )
  return values


def _listen(host: str, port: int) -> socket.socket:
  try:
    info = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)[0]
    sock = socket.socket(info[0], socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(info[4])
    sock.listen(1024)
  except OSError as error:
    raise OSError(
      error.errno,
      f"cannot listen on {host}:{port} ({error.strerror or error}); pass another --port or --host.",
    ) from None
  return sock


def make_app(
  index: str,
  workdir: str | None = None,
  *,
  writable: bool = False,
  items: str | None = None,
  max_body_mb: float = 8.0,
  max_batch: int = 64,
  batch_window_ms: float = 2.0,
):
  """The service's ASGI app over ``index``, warmed up: what the command serves (the tests too).
  The engine starts and stops with the app's lifespan."""
  try:
    from jaxhash.service.app import create_app
  except ModuleNotFoundError as error:
    raise ImportError(
      f"python -m jaxhash.serve needs the serve extra ({error.name} is not "
      'installed): pip install "jaxhash[serve]".'
    ) from None
  from jaxhash.search import hasher_for
  from jaxhash.service.catalog import Catalog
  from jaxhash.service.engine import Engine

  for name, value in [("--max-body-mb", max_body_mb), ("--max-batch", max_batch)]:
    if not value > 0:
      raise UsageError(f"{name} {value} must be > 0.")
  if batch_window_ms < 0:
    raise UsageError(f"--batch-window-ms {batch_window_ms} must be >= 0.")
  catalog = Catalog(index, items, writable=writable)
  engine = Engine(
    hasher_for(catalog.index, workdir), catalog, max_batch=max_batch, window=batch_window_ms / 1e3
  )
  engine.warm_up()
  return create_app(engine, max_body=int(max_body_mb * 2**20))


def run(values: flags.FlagValues) -> None:
  cli.require(values, "index")
  sock = _listen(values.host, values.port)
  app = make_app(
    values.index,
    values.workdir,
    writable=values.writable,
    items=values.items,
    max_body_mb=values["max-body-mb"].value,
    max_batch=values["max-batch"].value,
    batch_window_ms=values["batch-window-ms"].value,
  )
  import uvicorn

  # The run, the index and JAX's caches live as long as the server: frozen, the garbage collector
  # stops walking them at every collection (a quarter of a loaded server's CPU time otherwise).
  gc.freeze()
  host, port = sock.getsockname()[:2]
  engine = app.engine
  url = f"http://{f'[{host}]' if ':' in host else host}:{port}/"
  print(
    f"serving {len(engine.catalog)} items ({engine.hasher!r}"
    f"{', writable' if values.writable else ''}) at {url}",
    file=sys.stderr,
    flush=True,
  )
  try:
    uvicorn.Server(
      uvicorn.Config(
        app, log_level="warning", access_log=False, proxy_headers=False, timeout_graceful_shutdown=5
      )
    ).run(sockets=[sock])
  except KeyboardInterrupt:  # uvicorn re-raises the Ctrl-C (SIGINT) it stopped on: a normal stop
    pass
  print("stopped.", file=sys.stderr)


def main(argv: list[str] | None = None) -> int:
  return cli.main(argv, __doc__, define_flags, run)


if __name__ == "__main__":
  sys.exit(main())
