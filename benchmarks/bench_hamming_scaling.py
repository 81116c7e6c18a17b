"""How jaxhash top-k time grows with the database size N and the number of queries Q.

    python benchmarks/bench_hamming_scaling.py  # N = 1e5..1e7 at Q=1,000; Q = 1..10,000 at N=1e6
    python benchmarks/bench_hamming_scaling.py --codes 100000 1000000 --queries 1 100 --faiss

Optionally (``--faiss``) faiss-cpu ``IndexBinaryFlat`` on the same codes, ``--threads`` threads.
Both time what a user calls on codes they already hold: ``HammingIndex.search`` (its codes laid
out by the warm-up search, as at the first search after ``add``) and FAISS's ``search`` after
``add``. Best of ``--repeats`` after a warm-up call. Writes the figures and the
machine (``benchmarks/common.py``: CPU model and vector extensions, commit, versions) to
``benchmarks/results/<name>.{json,md}``.
"""

from __future__ import annotations

import argparse
import os
import sys

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from bench_hamming_cpu import random_words, summary, time_call  # noqa: E402

from common import machine, write_results  # noqa: E402
from jaxhash.retrieval import HammingIndex, to_faiss_bytes  # noqa: E402


def measure(num_queries, num_codes, args, rng, faiss) -> dict:
  database = random_words(rng, num_codes, args.bits)
  queries = random_words(rng, num_queries, args.bits)
  ours = HammingIndex(args.bits)
  ours.add(database)  # laid out at the warm-up search, as FAISS's add copies the codes (untimed)
  row = {
    "queries": num_queries,
    "codes": num_codes,
    "jaxhash": summary(time_call(lambda: ours.search(queries, args.k), args.repeats)),
  }
  if faiss is not None:
    index = faiss.IndexBinaryFlat(args.bits)
    index.add(to_faiss_bytes(database, args.bits))
    faiss_queries = to_faiss_bytes(queries, args.bits)
    row["faiss"] = summary(time_call(lambda: index.search(faiss_queries, args.k), args.repeats))
  codes_per_second = num_queries * num_codes / row["jaxhash"]["best_s"]
  print(
    f"Q={num_queries:>6,}  N={num_codes:>11,}  jaxhash {row['jaxhash']['best_s'] * 1e3:9.1f} ms"
    f"  ({codes_per_second / 1e9:5.2f} G distances/s)"
    + (f"  faiss {row['faiss']['best_s'] * 1e3:9.1f} ms" if faiss else ""),
    flush=True,
  )
  return row


def main():
  parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
  parser.add_argument(
    "--codes", type=int, nargs="+", default=[100_000, 300_000, 1_000_000, 3_000_000, 10_000_000]
  )
  parser.add_argument("--queries", type=int, nargs="+", default=[1, 10, 100, 1000, 10_000])
  parser.add_argument("--fixed-queries", type=int, default=1000, help="Q for the sweep over N")
  parser.add_argument("--fixed-codes", type=int, default=1_000_000, help="N for the sweep over Q")
  parser.add_argument("--bits", type=int, default=64)
  parser.add_argument("--k", type=int, default=100)
  parser.add_argument("--repeats", type=int, default=3)
  parser.add_argument("--faiss", action="store_true", help="also time faiss-cpu IndexBinaryFlat")
  parser.add_argument("--threads", type=int, default=2)
  parser.add_argument("--seed", type=int, default=0)
  parser.add_argument(
    "--name", default="hamming_scaling", help="results file name: benchmarks/results/NAME.{json,md}"
  )
  args = parser.parse_args()
  faiss = None
  if args.faiss:
    import faiss

    faiss.omp_set_num_threads(args.threads)
  rng = np.random.default_rng(args.seed)
  print(f"sweep over N at Q={args.fixed_queries}, {args.bits} bits, k={args.k}")
  over_codes = [measure(args.fixed_queries, n, args, rng, faiss) for n in args.codes]
  print(f"sweep over Q at N={args.fixed_codes}, {args.bits} bits, k={args.k}")
  over_queries = [measure(q, args.fixed_codes, args, rng, faiss) for q in args.queries]
  info = machine()
  command = "python " + " ".join(sys.argv)
  jax_version, load = info["versions"]["jax"], info["load_average_1min"]
  lines = [
    f"Command: `{command}`  ",
    f"{info['cpu']}, {info['cores_available']} cores, jax {jax_version}; {args.bits} bits, "
    f"k={args.k}, best of {args.repeats}; 1-min load average at the end {load}.",
    "",
    "| Q | N | jaxhash ms | G distances/s |" + (" FAISS ms | ratio |" if faiss else ""),
    "|---:|---:|---:|---:|" + ("---:|---:|" if faiss else ""),
  ]
  for row in over_codes + over_queries:
    best = row["jaxhash"]["best_s"]
    rate = row["queries"] * row["codes"] / best / 1e9
    line = f"| {row['queries']:,} | {row['codes']:,} | {best * 1e3:.1f} | {rate:.2f} |"
    if faiss:
      line += f" {row['faiss']['best_s'] * 1e3:.1f} | {best / row['faiss']['best_s']:.2f} |"
    lines.append(line)
  write_results(
    args.name,
    {
      "machine": info,
      "command": command,
      "args": vars(args),
      "over_codes": over_codes,
      "over_queries": over_queries,
    },
    "\n".join(lines) + "\n",
  )


if __name__ == "__main__":
  main()
