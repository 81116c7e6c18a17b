"""Load test of HammingIndex: 10 million random 64-bit codes added in chunks, saved, loaded and
searched with 100,000 queries (k = 10), with the time of each stage and the peak memory.

  python benchmarks/bench_index_load.py            # N = 10,000,000, Q = 100,000, k = 10
  python benchmarks/bench_index_load.py --small    # N = 100,000, Q = 1,000: a quick check
  python benchmarks/bench_index_load.py --queries 1000  # all 10M codes, fewer queries (faster)

Peak memory is the process's maximum resident set size (``resource.getrusage``), which includes
the JAX runtime; the bar is < 4 GB. Writes benchmarks/results/index_load[_small][_<Q>q].{json,md}.
"""

from __future__ import annotations

import argparse
import os
import resource
import sys
import tempfile
import time

import numpy as np

from common import machine, write_results
from jaxhash.retrieval import HammingIndex

BITS, K = 64, 10
PEAK_LIMIT_BYTES = 4 * 2**30


def peak_bytes() -> int:
  return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024  # Linux reports KiB


def random_codes(rng, n: int) -> np.ndarray:
  return rng.integers(0, 2**32, (n, BITS // 32), dtype=np.uint64).astype(np.uint32)


def main() -> None:
  parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
  parser.add_argument("--small", action="store_true", help="N = 100,000, Q = 1,000")
  parser.add_argument("--queries", type=int, help="Q (default 100,000, or 1,000 with --small)")
  args = parser.parse_args()
  n, q, chunk = (100_000, 1_000, 10_000) if args.small else (10_000_000, 100_000, 250_000)
  default_q, q = q, args.queries or q
  rng = np.random.default_rng(0)
  stages = []

  def stage(name, started, **extra):
    stages.append(
      {
        "stage": name,
        "seconds": time.perf_counter() - started,
        "peak_rss_gib": peak_bytes() / 2**30,
        **extra,
      }
    )
    print(
      f"{name}: {stages[-1]['seconds']:.1f} s, peak RSS {stages[-1]['peak_rss_gib']:.2f} GiB",
      flush=True,
    )

  t0 = time.perf_counter()
  index = HammingIndex(BITS)
  for _ in range(n // chunk):
    index.add(random_codes(rng, chunk))
  stage("add", t0, chunks=n // chunk, chunk=chunk)

  with tempfile.TemporaryDirectory() as tmp:
    path = os.path.join(tmp, "codes.jhi")
    t0 = time.perf_counter()
    index.save(path)
    stage("save", t0, file_bytes=os.path.getsize(path))
    kept = index.codes[:: n // 100].copy()  # 100 stored codes, to check the loaded index finds them
    del index
    t0 = time.perf_counter()
    index = HammingIndex.load(path)
    stage("load", t0)

  queries = random_codes(rng, q)
  queries[: len(kept)] = kept
  t0 = time.perf_counter()
  distances, ids = index.search(queries, K)
  stage("search", t0, queries=q, k=K)
  found = bool(
    (distances[: len(kept), 0] == 0).all()
    and (ids[: len(kept), 0] == np.arange(0, n, n // 100)[: len(kept)]).all()
  )

  peak = peak_bytes()
  payload = {
    "machine": machine(),
    "n": n,
    "bits": BITS,
    "queries": q,
    "k": K,
    "peak_rss_bytes": peak,
    "peak_under_4_gib": peak < PEAK_LIMIT_BYTES,
    "stored_codes_found_at_distance_0": found,
    "stages": stages,
  }
  name = "index_load" + ("_small" if args.small else "") + (f"_{q}q" if q != default_q else "")
  print(write_results(name, payload))
  if peak >= PEAK_LIMIT_BYTES or not found:
    sys.exit(
      "bar missed: "
      + (
        "peak memory >= 4 GiB"
        if peak >= PEAK_LIMIT_BYTES
        else "a stored code was not found at distance 0"
      )
    )


if __name__ == "__main__":
  main()
