"""Load test of HammingIndex: 10 million random 64-bit codes added in chunks, saved, loaded, searched.

    python benchmarks/index_load.py                      # 10M codes, 100,000 queries, k=100
    python benchmarks/index_load.py --codes 1000000 --queries 1000 --out index_load_small

Records each phase's time and the process's peak resident memory after it (``ru_maxrss``, which
includes JAX's runtime), and checks that the loaded index answers like the one that was saved.
Writes ``benchmarks/results/<out>.json`` and ``.md``.
"""

from __future__ import annotations

import argparse
import os
import resource
import sys
import tempfile
import time

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from common import machine, write_results  # noqa: E402

from jaxhash.retrieval import HammingIndex  # noqa: E402

LIMIT_GB = 4.0


def peak_gb() -> float:
  return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024 / 1e9  # Linux: KiB


def main() -> None:
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument("--codes", type=int, default=10_000_000)
  parser.add_argument("--chunk", type=int, default=1_000_000)
  parser.add_argument("--queries", type=int, default=100_000)
  parser.add_argument("--k", type=int, default=100)
  parser.add_argument("--bits", type=int, default=64)
  parser.add_argument("--out", default="index_load")
  args = parser.parse_args()
  rng = np.random.default_rng(0)
  words = args.bits // 32
  phases = []

  def phase(name, fn):
    t0 = time.perf_counter()
    value = fn()
    phases.append({"phase": name, "seconds": time.perf_counter() - t0, "peak_rss_gb": peak_gb()})
    print(f"{name:>8}: {phases[-1]['seconds']:8.1f} s, peak RSS {phases[-1]['peak_rss_gb']:.2f} GB",
          flush=True)
    return value

  index = HammingIndex(args.bits)

  def add_all():
    for start in range(0, args.codes, args.chunk):
      n = min(args.chunk, args.codes - start)
      index.add(rng.integers(0, 2**32, (n, words), dtype=np.uint32))

  phase("add", add_all)
  queries = rng.integers(0, 2**32, (args.queries, words), dtype=np.uint32)
  with tempfile.TemporaryDirectory() as tmp:
    path = os.path.join(tmp, "codes.jhi")
    phase("save", lambda: index.save(path))
    size = os.path.getsize(path)
    expected = index.search(queries[:100], args.k)
    del index
    loaded = phase("load", lambda: HammingIndex.load(path))
  got = loaded.search(queries[:100], args.k)
  same = bool(np.array_equal(expected[0], got[0]) and np.array_equal(expected[1], got[1]))
  distances, ids = phase("search", lambda: loaded.search(queries, args.k))
  peak = peak_gb()
  payload = {
      "command": "python benchmarks/" + " ".join([os.path.basename(__file__), *sys.argv[1:]]),
      "machine": machine(),
      "codes": args.codes, "bits": args.bits, "chunk": args.chunk, "queries": args.queries,
      "k": args.k, "file_bytes": size, "loaded_answers_like_saved": same,
      "result_shape": list(distances.shape), "peak_rss_gb": peak,
      "under_limit": peak < LIMIT_GB, "limit_gb": LIMIT_GB,
      "phases": phases,
  }
  print(write_results(args.out, payload))
  if not same or ids.shape != (args.queries, args.k):
    raise SystemExit("the loaded index does not answer like the saved one")


if __name__ == "__main__":
  main()
