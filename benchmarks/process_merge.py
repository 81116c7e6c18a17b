"""What searching a database split across processes costs: the local search and the merge.

    python benchmarks/process_merge.py        # 2 processes on this machine, 1M codes each
    python benchmarks/process_merge.py --codes 100000 --queries 1 100 --repeats 3

Starts ``--processes`` processes on this machine (``jax.distributed`` over 127.0.0.1, gloo, one
CPU device each). Each holds its own part of the database (random 64-bit codes, prepared once as
``HammingIndex`` does) and, per query count Q, times with every process starting together:
``local`` its own exact top-k (``processes.local_topk``), ``merge`` the gather of every process's
``(Q, k)`` lists and their exact merge (``processes.merge_processes``), and ``total`` the whole
``process_topk``. Best and median of ``--repeats`` after a warm-up; the merge's payload is
``Q * k * 8`` bytes per process. ``layout_bytes_per_code``: the arrays of the search layout
(``prepare_codes``) per code, what each process holds (the packed codes themselves can be dropped
once laid out). Process 0 writes ``benchmarks/results/<name>.{json,md}``.
The processes share this machine's cores, so ``local`` is a share of the machine; the merge
crosses the loopback interface, not a network.
"""

from __future__ import annotations

import argparse
import os
import socket
import subprocess
import sys
import time

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from bench_hamming_cpu import random_words  # noqa: E402

from common import ROOT, machine, write_results  # noqa: E402


def parse(argv=None):
  parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
  parser.add_argument("--processes", type=int, default=2)
  parser.add_argument("--codes", type=int, default=1_000_000, help="codes held by each process")
  parser.add_argument("--queries", type=int, nargs="+", default=[1, 10, 100, 1000])
  parser.add_argument("--bits", type=int, default=64)
  parser.add_argument("--k", type=int, default=100)
  parser.add_argument("--repeats", type=int, default=5)
  parser.add_argument("--seed", type=int, default=0)
  parser.add_argument("--name", default="process_merge")
  parser.add_argument("--process_id", type=int, help=argparse.SUPPRESS)  # set for the workers
  parser.add_argument("--coordinator_address", help=argparse.SUPPRESS)
  return parser.parse_args(argv)


def timed(name: str, call, repeats: int, sync) -> dict:
  """``{name}_best_ms`` and ``{name}_median_ms`` of ``call`` after a warm-up (which compiles)."""
  call()
  seconds = []
  for _ in range(repeats):
    sync()
    start = time.perf_counter()
    call()
    seconds.append(time.perf_counter() - start)
  return {
    f"{name}_best_ms": min(seconds) * 1e3,
    f"{name}_median_ms": float(np.median(seconds)) * 1e3,
  }


def worker(args) -> None:
  import jax

  jax.distributed.initialize(args.coordinator_address, args.processes, args.process_id)
  from jax.experimental import multihost_utils

  from jaxhash.retrieval import prepare_codes, process_topk
  from jaxhash.retrieval.processes import local_topk, merge_processes, part_sizes

  index = jax.process_index()
  rng = np.random.default_rng([args.seed, index])
  local = prepare_codes(random_words(rng, args.codes, args.bits))
  layout = sum(a.nbytes for pair in local.part.views.values() for a in pair if a is not None)
  sizes = part_sizes(args.codes)
  sync = lambda: multihost_utils.sync_global_devices("repeat")
  rows = []
  for count in args.queries:
    queries = random_words(np.random.default_rng([args.seed, 99, count]), count, args.bits)
    found = local_topk(queries, local, args.k)
    row = {
      "processes": args.processes,
      "codes_per_process": args.codes,
      "queries": count,
      "k": args.k,
      "bits": args.bits,
      "merge_bytes_per_process": count * args.k * 8,
      "layout_bytes_per_code": layout / args.codes,
    }
    row.update(timed("local", lambda: local_topk(queries, local, args.k), args.repeats, sync))
    row.update(
      timed(
        "merge",
        lambda: merge_processes(*found, sizes, args.k, 32 * queries.shape[1]),
        args.repeats,
        sync,
      )
    )
    row.update(timed("total", lambda: process_topk(queries, local, args.k), args.repeats, sync))
    rows.append(row)
    if index == 0:
      print(
        f"Q={count:>5}  local {row['local_best_ms']:8.2f} ms  merge "
        f"{row['merge_best_ms']:7.2f} ms  total {row['total_best_ms']:8.2f} ms",
        flush=True,
      )
  if index == 0:
    command = (
      f"python benchmarks/process_merge.py --processes {args.processes} --codes "
      f"{args.codes} --queries {' '.join(map(str, args.queries))} --bits {args.bits} "
      f"--k {args.k} --repeats {args.repeats} --seed {args.seed} --name {args.name}"
    )
    print(write_results(args.name, {"machine": machine(), "command": command, "rows": rows}))


def main() -> None:
  args = parse()
  if args.process_id is not None:
    return worker(args)
  with socket.socket() as s:
    s.bind(("127.0.0.1", 0))
    address = f"127.0.0.1:{s.getsockname()[1]}"
  workers = [
    subprocess.Popen(
      [
        sys.executable,
        os.path.abspath(__file__),
        *sys.argv[1:],
        "--coordinator_address",
        address,
        "--process_id",
        str(i),
      ],
      cwd=ROOT,
    )
    for i in range(args.processes)
  ]
  status = max(w.wait() for w in workers)
  sys.exit(status)


if __name__ == "__main__":
  main()
