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

import argparse
import gc
import socket
import sys

from jaxhash import cli
from jaxhash.errors import UsageError


def parser() -> argparse.ArgumentParser:
  p = argparse.ArgumentParser(
    prog="python -m jaxhash.serve",
    description=__doc__.split("\n\n", 1)[0],
    epilog=__doc__.split("\n\n", 2)[2],
    formatter_class=argparse.RawDescriptionHelpFormatter,
  )
  p.add_argument("--index", required=True, metavar="FILE.jhi", help="index file from jaxhash.index")
  p.add_argument(
    "--workdir", help="run that encodes the queries (default: the one the index records)"
  )
  p.add_argument("--host", default="127.0.0.1", help="address to listen on (default: 127.0.0.1)")
  p.add_argument("--port", type=int, default=8000, help="port to listen on (default: 8000)")
  p.add_argument("--writable", action="store_true", help="allow POST /items and DELETE /items/{id}")
  p.add_argument(
    "--items", metavar="DIR", help="where added images are stored (default: FILE.items)"
  )
  p.add_argument("--max-body-mb", type=float, default=8.0, help="largest request body (default: 8)")
  p.add_argument(
    "--max-batch", type=int, default=64, help="most queries encoded together (default: 64)"
  )
  p.add_argument(
    "--batch-window-ms",
    type=float,
    default=2.0,
    help="how long a batch waits for more queries (default: 2)",
  )
  p.add_argument("--debug", action="store_true", help="show tracebacks for errors")
  return p


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


def _run(args) -> None:
  sock = _listen(args.host, args.port)
  app = make_app(
    args.index,
    args.workdir,
    writable=args.writable,
    items=args.items,
    max_body_mb=args.max_body_mb,
    max_batch=args.max_batch,
    batch_window_ms=args.batch_window_ms,
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
    f"{', writable' if args.writable else ''}) at {url}",
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
  args = parser().parse_args(argv)
  return cli.run(lambda: _run(args), ["serve", *(["--debug"] if args.debug else [])], parse=None)


if __name__ == "__main__":
  sys.exit(main())
