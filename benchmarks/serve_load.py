"""The search service under load, against the same queries run in-process.

  python benchmarks/serve_load.py [--workdir runs/dlbhc_mnist_48] [--requests 2000] [--clients 16]

Trains the main job (``python -m jaxhash.train --config configs/dlbhc_mnist.py``) into --workdir
unless it is already trained there, indexes the 10,000 MNIST test images (PNG files in a temporary
folder), starts ``python -m jaxhash.serve`` on a free loopback port, and sends --requests POST
/search?k=10 requests (multipart field ``image``; 200 distinct test images in turn) from --clients
concurrent clients, each on its own keep-alive connection, then stops the server. A request fails
when it is not answered 200 with the 10 results that the same image gets in-process.

The in-process baseline runs the same query sequence through ``Hasher.encode`` (of the image
files, so both sides decode the PNGs) and ``HammingIndex.search(k=10)`` in batches of --clients
queries, in this process while the server idles. Both run in 4 alternating rounds of a quarter of
the requests each, so that a machine whose load changes weighs on both alike.

Writes benchmarks/results/serve_load.{json,md}: requests, failures, p50/p99 latency, requests/s,
the baseline's queries/s and their ratio. Bars: 0 failures; ratio >= 0.5. Exits 1 when one is
missed.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request

import numpy as np
from PIL import Image

import jaxhash
from common import ROOT, machine, write_results
from jaxhash.data.sources import embedded_mnist

K, DISTINCT, ROUNDS = 10, 200, 4


def http_request(port: int, body: bytes, boundary: str) -> bytes:
  head = (
    f"POST /search?k={K} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nContent-Type: multipart/"
    f"form-data; boundary={boundary}\r\nContent-Length: {len(body)}\r\n\r\n"
  )
  return head.encode() + body


def multipart(data: bytes, boundary: str) -> bytes:
  return (
    (
      f'--{boundary}\r\nContent-Disposition: form-data; name="image"; filename="q.png"\r\n'
      f"Content-Type: image/png\r\n\r\n"
    ).encode()
    + data
    + f"\r\n--{boundary}--\r\n".encode()
  )


async def read_response(reader) -> tuple[int, bytes]:
  status = int((await reader.readline()).split()[1])
  length = 0
  while (line := await reader.readline()) not in (b"\r\n", b""):
    name, _, value = line.partition(b":")
    if name.strip().lower() == b"content-length":
      length = int(value)
  return status, await reader.readexactly(length)


async def load(port: int, requests: list[bytes], order: list[int], clients: int):
  """``(seconds, latencies, answers)``: answers[i] is (status, body) or the error of request i."""
  answers, latencies, next_request = [None] * len(order), [], iter(range(len(order)))

  async def client():
    reader = writer = None
    for i in next_request:
      started = time.perf_counter()
      try:
        if writer is None:
          reader, writer = await asyncio.open_connection("127.0.0.1", port)
        writer.write(requests[order[i]])
        await writer.drain()
        answers[i] = await read_response(reader)
      except (OSError, ValueError, IndexError, asyncio.IncompleteReadError) as error:
        answers[i], writer = repr(error), None
      latencies.append(time.perf_counter() - started)
    if writer is not None:
      writer.close()

  started = time.perf_counter()
  await asyncio.gather(*(client() for _ in range(clients)))
  return time.perf_counter() - started, latencies, answers


def run(coroutine):
  """``asyncio.run`` on uvloop when installed (uvicorn[standard] brings it): the clients share
  the machine with the server, so the less CPU they take the better."""
  try:
    import uvloop
  except ImportError:
    return asyncio.run(coroutine)
  return uvloop.run(coroutine)


def free_port() -> int:
  with socket.socket() as sock:
    sock.bind(("127.0.0.1", 0))
    return sock.getsockname()[1]


def get_json(port: int, path: str) -> dict:
  with urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=5) as response:
    return json.load(response)


def start_server(index_path: str, port: int) -> subprocess.Popen:
  server = subprocess.Popen(
    [sys.executable, "-m", "jaxhash.serve", "--index", index_path, "--port", str(port)],
    cwd=ROOT,
    env={**os.environ, "PYTHONPATH": ROOT},
    stderr=subprocess.PIPE,
    text=True,
  )
  deadline = time.monotonic() + 600
  while time.monotonic() < deadline:
    if server.poll() is not None:
      sys.exit(f"the server exited: {server.stderr.read()}")
    try:
      get_json(port, "/health")
      return server
    except OSError:
      time.sleep(0.5)
  server.kill()
  sys.exit("the server did not answer /health within 10 minutes")


def in_process(hasher, index, paths: list[str], order: list[int], batch: int):
  """``(seconds, results per distinct query)``: the queries' encode + search in batches."""
  found, started = {}, time.perf_counter()
  for start in range(0, len(order), batch):
    queries = order[start : start + batch]
    distances, ids = index.search(hasher.encode([paths[q] for q in queries]), K)
    for q, d, i in zip(queries, distances.tolist(), ids.tolist()):
      found[q] = list(zip(i, d))
  return time.perf_counter() - started, found


def main() -> None:
  parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
  parser.add_argument("--workdir", default=os.path.join(ROOT, "runs", "dlbhc_mnist_48"))
  parser.add_argument("--requests", type=int, default=2000)
  parser.add_argument("--clients", type=int, default=16)
  args = parser.parse_args()
  workdir = os.path.abspath(args.workdir)
  if not os.path.isfile(os.path.join(workdir, "results.json")):
    subprocess.run(
      [
        sys.executable,
        "-m",
        "jaxhash.train",
        "--config",
        "configs/dlbhc_mnist.py",
        "--workdir",
        workdir,
      ],
      cwd=ROOT,
      check=True,
    )
  hasher = jaxhash.load(workdir)
  mnist = embedded_mnist()
  with tempfile.TemporaryDirectory() as tmp:
    paths = []
    for i, (image, label) in enumerate(zip(mnist.images, mnist.labels.argmax(1))):
      os.makedirs(os.path.join(tmp, "digits", str(label)), exist_ok=True)
      paths.append(os.path.join(tmp, "digits", str(label), f"{i:05d}.png"))
      Image.fromarray(image[..., 0]).save(paths[-1])
    index, _ = jaxhash.build_index(hasher, paths)
    index_path = os.path.join(tmp, "digits.jhi")
    index.save(index_path)

    queries = paths[:: len(paths) // DISTINCT][:DISTINCT]
    boundary = "jaxhashbenchmarkboundary"
    port = free_port()
    requests = [
      http_request(port, multipart(open(p, "rb").read(), boundary), boundary) for p in queries
    ]
    order = [i % len(queries) for i in range(args.requests)]
    server = start_server(index_path, port)
    try:  # warm both sides, then alternate rounds of each, so that both meet the same load
      run(load(port, requests, order[: 4 * args.clients], args.clients))
      in_process(hasher, index, queries, order[: 4 * args.clients], args.clients)
      seconds = baseline_seconds = 0.0
      latencies, answers, expected = [], [], {}
      # Rounds of whole batches: no in-process batch of another size is compiled while timed.
      step = -(-args.requests // (ROUNDS * args.clients)) * args.clients
      for start in range(0, args.requests, step):
        part = order[start : start + step]
        took, times, got = run(load(port, requests, part, args.clients))
        seconds, latencies, answers = seconds + took, latencies + times, answers + got
        took, found = in_process(hasher, index, queries, part, args.clients)
        baseline_seconds += took
        expected.update(found)
      stats = get_json(port, "/stats")
    finally:
      server.send_signal(signal.SIGINT)
      server.wait(timeout=60)

  failures = []
  for i, answer in enumerate(answers):
    ok = (
      isinstance(answer, tuple)
      and answer[0] == 200
      and [(r["path"], r["distance"]) for r in json.loads(answer[1])["results"]]
      == expected[order[i]]
    )
    if not ok:
      failures.append(answer if not isinstance(answer, tuple) else answer[0])
  rps, baseline_qps = args.requests / seconds, args.requests / baseline_seconds
  payload = {
    "machine": machine(),
    "workdir": os.path.relpath(workdir, ROOT),
    "items": len(index),
    "bits": hasher.bits,
    "k": K,
    "requests": args.requests,
    "clients": args.clients,
    "distinct_queries": len(queries),
    "failures": len(failures),
    "failure_examples": [str(f) for f in failures[:5]],
    "seconds": round(seconds, 3),
    "requests_per_s": round(rps, 1),
    "latency_ms": {
      f"p{q}": round(float(np.percentile(latencies, q)) * 1e3, 2) for q in (50, 90, 99)
    },
    "server_mean_batch": stats["mean_batch"],
    "in_process": {
      "what": f"Hasher.encode(image files) + HammingIndex.search(k={K}), batches of "
      f"{args.clients}, in {ROUNDS} rounds alternating with the server's",
      "seconds": round(baseline_seconds, 3),
      "queries_per_s": round(baseline_qps, 1),
    },
    "ratio_to_in_process": round(rps / baseline_qps, 3),
  }
  bars = {"no_failed_requests": not failures, "ratio_at_least_0.5": rps / baseline_qps >= 0.5}
  payload["bars_hold"] = bars
  print(write_results("serve_load", payload))
  if not all(bars.values()):
    sys.exit(f"bar missed: {bars}")


if __name__ == "__main__":
  main()
