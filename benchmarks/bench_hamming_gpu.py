"""Accelerator benchmark: jaxhash top-k vs the distance-only pass vs a naive ``lax.top_k``.

    python benchmarks/bench_hamming_gpu.py            # Q=1,000, N=10,000,000, 64 bits, k=100
    python benchmarks/bench_hamming_gpu.py --small    # Q=100, N=100,000: a smoke test, CPU is fine

All three run in one process on the default JAX device, on the same codes already on the device:

- distance-only: every Hamming distance computed and reduced to its minimum per query (so nothing
  of size Q x N is stored), in two layouts (``hamming_distances``'s query-major one and the
  code-major one of jaxhash's first pass); the faster is the floor any exact search has to pay;
- jaxhash: ``hamming_topk`` (exact, ordered by (distance, index));
- naive: ``lax.top_k`` on the negated int32 distances of a query chunk (ties go to the lower index,
  so it must give the identical result).

The bar is jaxhash <= 2x the (faster) distance-only pass at the default sizes. Writes
``benchmarks/results/<name>.{json,md}`` with the device name and the machine.
"""

from __future__ import annotations

import argparse
import functools
import os
import sys

import jax
import jax.numpy as jnp
import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from bench_hamming_cpu import random_words, summary, time_call  # noqa: E402

from common import machine, write_results  # noqa: E402
from jaxhash.retrieval import hamming_distances, hamming_topk  # noqa: E402
from jaxhash.retrieval.block_topk import code_query_distances  # noqa: E402
from jaxhash.retrieval.chunking import compiler_options  # noqa: E402

BAR = 2.0  # full top-k within twice the distance-only pass (Q=1,000, N=10M, 64 bits)


@jax.jit
def _distance_minima(query_chunk, database):
  return (jnp.min(hamming_distances(query_chunk, database), axis=1),)


@functools.partial(jax.jit, compiler_options=compiler_options())
def _distance_minima_code_major(query_chunk, database):
  """The same minima in the layout of jaxhash's first pass (codes outer, queries vectorised)."""
  return (jnp.min(code_query_distances(query_chunk, database), axis=0),)


@functools.partial(jax.jit, static_argnames="k")
def _naive_topk(query_chunk, database, k):
  negated, indices = jax.lax.top_k(-hamming_distances(query_chunk, database), k)
  return -negated, indices


def _by_query_chunks(function, queries, chunk):
  """``function`` (returning a tuple of arrays) over query chunks, concatenated."""
  parts = [function(queries[start : start + chunk]) for start in range(0, len(queries), chunk)]
  return tuple(jnp.concatenate(part) for part in zip(*parts))


def main():
  parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
  parser.add_argument("--queries", type=int, default=1000)
  parser.add_argument("--codes", type=int, default=10_000_000)
  parser.add_argument("--bits", type=int, default=64)
  parser.add_argument("--k", type=int, default=100)
  parser.add_argument("--repeats", type=int, default=5)
  parser.add_argument("--small", action="store_true", help="Q=100, N=100,000 (smoke test)")
  parser.add_argument(
    "--chunk-bytes",
    type=float,
    default=2e9,
    help="bound on one query chunk's int32 distances (naive and distance-only)",
  )
  parser.add_argument("--seed", type=int, default=0)
  parser.add_argument(
    "--name",
    help="results file name: benchmarks/results/NAME.{json,md} "
    "(default hamming_gpu, or hamming_gpu_smoke_<backend> with --small)",
  )
  args = parser.parse_args()
  if args.small:
    args.queries, args.codes = 100, 100_000
  args.name = args.name or (
    "hamming_gpu_smoke_" + jax.default_backend() if args.small else "hamming_gpu"
  )
  rng = np.random.default_rng(args.seed)
  database = jax.device_put(random_words(rng, args.codes, args.bits))
  queries = jax.device_put(random_words(rng, args.queries, args.bits))
  chunk = max(1, int(args.chunk_bytes // (4 * args.codes)))  # queries per chunk of int32 distances

  topk = lambda: hamming_topk(queries, database, args.k)
  distance_pass = lambda: _by_query_chunks(lambda q: _distance_minima(q, database), queries, chunk)
  code_major_pass = lambda: _by_query_chunks(
    lambda q: _distance_minima_code_major(q, database), queries, chunk
  )
  naive = lambda: _by_query_chunks(lambda q: _naive_topk(q, database, args.k), queries, chunk)
  times = {
    name: summary(time_call(function, args.repeats))
    for name, function in (
      ("distance_only_query_major", distance_pass),
      ("distance_only_code_major", code_major_pass),
      ("jaxhash_topk", topk),
      ("naive_lax_top_k", naive),
    )
  }
  floor = min(
    times["distance_only_query_major"]["best_s"], times["distance_only_code_major"]["best_s"]
  )
  same = all(np.array_equal(np.asarray(a), np.asarray(b)) for a, b in zip(topk(), naive()))
  device = jax.devices()[0]
  results = {
    "device": f"{device.platform}: {device.device_kind}",
    "machine": machine(),
    "queries": args.queries,
    "codes": args.codes,
    "bits": args.bits,
    "k": args.k,
    "times": times,
    "jaxhash_equals_naive": same,
    "topk_over_distance_pass": times["jaxhash_topk"]["best_s"] / floor,
    "naive_over_distance_pass": times["naive_lax_top_k"]["best_s"] / floor,
  }
  lines = [
    f"Device: {results['device']}; Q={args.queries:,}, N={args.codes:,}, {args.bits} bits, "
    f"k={args.k}; best of {args.repeats}.",
    "",
    "| pass | best ms | median ms | / faster distance-only pass |",
    "|---|---:|---:|---:|",
  ]
  for name, row in times.items():
    lines.append(
      f"| {name} | {row['best_s'] * 1e3:.1f} | {row['median_s'] * 1e3:.1f} "
      f"| {row['best_s'] / floor:.2f} |"
    )
  lines.append(f"\njaxhash top-k identical to naive lax.top_k: {'yes' if same else 'NO'}")
  holds = same and results["topk_over_distance_pass"] <= BAR
  if not args.small:  # the bar is for the default sizes on an accelerator
    results["bar_holds"] = holds
    lines.append(
      f"Bar (exact, top-k <= {BAR}x the distance-only pass): {'holds' if holds else 'MISSED'}"
    )
  print("\n".join(lines))
  write_results(args.name, results, "\n".join(lines) + "\n")
  return 0 if (same if args.small else holds) else 1  # a smoke test still has to be exact


if __name__ == "__main__":
  sys.exit(main())
