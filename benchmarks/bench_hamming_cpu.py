"""jaxhash exact Hamming top-k vs faiss-cpu IndexBinaryFlat on the same random codes.

    python benchmarks/bench_hamming_cpu.py                # Q=1,000, N=1,000,000, 64 and 128 bits
    python benchmarks/bench_hamming_cpu.py --codes 100000 --repeats 3   # quicker

Both run on the same codes in one process, alternating, ``--threads`` cores each (FAISS through
``omp_set_num_threads``; XLA and jaxhash's query-chunk threads use the process's cores, so run it
under ``taskset -c 0-1`` for a 2-core comparison on a larger machine). The figure is the best of
``--repeats`` (least disturbed by other load); medians are recorded too. Distances must agree
exactly with FAISS; FAISS breaks ties differently, so indices are checked against a numpy
brute force with a stable sort on a subset of queries. Writes ``<out>.json`` and ``<out>.md``.
Other benchmark scripts import the helpers defined here.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import time

import jax
import numpy as np

from jaxhash.retrieval import hamming_topk, to_faiss_bytes


def random_words(rng, num_codes: int, nbits: int) -> np.ndarray:
  """Uniformly random packed codes (unused high bits zero)."""
  words = rng.integers(0, 2**32, (num_codes, -(-nbits // 32)), dtype=np.uint32)
  if nbits % 32:
    words[:, -1] &= np.uint32((1 << (nbits % 32)) - 1)
  return words


def time_call(function, repeats: int) -> list[float]:
  """Wall-clock seconds of ``repeats`` calls after one warm-up call (compilation)."""
  jax.block_until_ready(function())
  times = []
  for _ in range(repeats):
    start = time.perf_counter()
    jax.block_until_ready(function())
    times.append(time.perf_counter() - start)
  return times


def summary(times: list[float]) -> dict:
  return {"best_s": min(times), "median_s": statistics.median(times), "all_s": times}


def machine_info() -> dict:
  """What the figures were measured on, including the load from other processes."""
  cpu = platform.processor()
  if os.path.exists("/proc/cpuinfo"):
    names = [line.split(":", 1)[1].strip() for line in open("/proc/cpuinfo") if line.startswith("model name")]
    cpu = names[0] if names else cpu
  return {
      "cpu": cpu,
      "cores_available": len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count(),
      "platform": platform.platform(),
      "python": platform.python_version(),
      "jax": jax.__version__,
      "numpy": np.__version__,
      "jax_devices": [str(device) for device in jax.devices()],
      "load_average_1min": os.getloadavg()[0] if hasattr(os, "getloadavg") else None,
  }


def write_results(out: str, results: dict, markdown: str) -> None:
  os.makedirs(os.path.dirname(out) or ".", exist_ok=True)
  with open(out + ".json", "w") as f:
    json.dump(results, f, indent=2)
  with open(out + ".md", "w") as f:
    f.write(markdown)
  print(f"wrote {out}.json and {out}.md")


def stable_brute_force(query_words, db_words, k):
  """numpy reference: distances by popcount, ranks by a stable sort (ties by index)."""
  distances = np.bitwise_count(query_words[:, None, :] ^ db_words[None, :, :]).sum(-1)
  order = np.argsort(distances, axis=1, kind="stable")[:, :k]
  return np.take_along_axis(distances, order, axis=1), order


def compare(nbits, args, rng, faiss) -> dict:
  database = random_words(rng, args.codes, nbits)
  queries = random_words(rng, args.queries, nbits)
  index = faiss.IndexBinaryFlat(nbits)
  index.add(to_faiss_bytes(database, nbits))
  faiss_queries = to_faiss_bytes(queries, nbits)
  jaxhash_times, faiss_times = [], []
  for _ in range(args.repeats):  # alternate, so both see the same background load
    jaxhash_times += time_call(lambda: hamming_topk(queries, database, args.k), 1)
    faiss_times += time_call(lambda: index.search(faiss_queries, args.k), 1)
  distances, indices = (np.asarray(x) for x in hamming_topk(queries, database, args.k))
  faiss_distances, _ = index.search(faiss_queries, args.k)
  subset = slice(0, args.check_queries)
  reference = stable_brute_force(queries[subset], database, args.k)
  row = {
      "bits": nbits, "queries": args.queries, "codes": args.codes, "k": args.k,
      "jaxhash": summary(jaxhash_times), "faiss": summary(faiss_times),
      "ratio_best": min(jaxhash_times) / min(faiss_times),
      "ratio_median": statistics.median(jaxhash_times) / statistics.median(faiss_times),
      "distances_equal_faiss": bool((distances == faiss_distances).all()),
      "checked_queries_vs_stable_brute_force": len(reference[0]),
      "indices_equal_brute_force": bool((indices[subset] == reference[1]).all()
                                        and (distances[subset] == reference[0]).all()),
  }
  print(f"{nbits:5d} bits  jaxhash {row['jaxhash']['best_s'] * 1e3:8.1f} ms  "
        f"faiss {row['faiss']['best_s'] * 1e3:8.1f} ms  ratio {row['ratio_best']:.2f}  "
        f"(median ratio {row['ratio_median']:.2f})  distances==faiss {row['distances_equal_faiss']}  "
        f"indices==brute force {row['indices_equal_brute_force']}", flush=True)
  return row


def markdown_table(rows, info, command) -> str:
  lines = [
      f"Command: `{command}`  ",
      f"Machine: {info['cpu']}, {info['cores_available']} cores available, "
      f"jax {info['jax']}, faiss {info['faiss']}, 1-min load average at start "
      f"{info['load_average_1min']}.",
      "",
      "| bits | Q | N | k | jaxhash best (median) ms | FAISS best (median) ms | ratio best (median) "
      "| distances = FAISS | indices = stable brute force |",
      "|---:|---:|---:|---:|---:|---:|---:|:---:|:---:|",
  ]
  for row in rows:
    lines.append(
        f"| {row['bits']} | {row['queries']:,} | {row['codes']:,} | {row['k']} "
        f"| {row['jaxhash']['best_s'] * 1e3:.1f} ({row['jaxhash']['median_s'] * 1e3:.1f}) "
        f"| {row['faiss']['best_s'] * 1e3:.1f} ({row['faiss']['median_s'] * 1e3:.1f}) "
        f"| {row['ratio_best']:.2f} ({row['ratio_median']:.2f}) "
        f"| {'yes' if row['distances_equal_faiss'] else 'NO'} "
        f"| {'yes' if row['indices_equal_brute_force'] else 'NO'} "
        f"({row['checked_queries_vs_stable_brute_force']} queries) |")
  return "\n".join(lines) + "\n"


def main():
  parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
  parser.add_argument("--queries", type=int, default=1000)
  parser.add_argument("--codes", type=int, default=1_000_000)
  parser.add_argument("--bits", type=int, nargs="+", default=[64, 128])
  parser.add_argument("--k", type=int, default=100)
  parser.add_argument("--threads", type=int, default=2)
  parser.add_argument("--repeats", type=int, default=7)
  parser.add_argument("--check-queries", type=int, default=20)
  parser.add_argument("--seed", type=int, default=0)
  parser.add_argument("--out", default="benchmarks/results/hamming_cpu")
  args = parser.parse_args()
  import faiss  # a benchmark dependency only: pip install faiss-cpu
  faiss.omp_set_num_threads(args.threads)
  info = dict(machine_info(), faiss=faiss.__version__, faiss_threads=args.threads)
  rng = np.random.default_rng(args.seed)
  rows = [compare(nbits, args, rng, faiss) for nbits in args.bits]
  info["load_average_1min_at_end"] = os.getloadavg()[0] if hasattr(os, "getloadavg") else None
  command = "python benchmarks/bench_hamming_cpu.py " + " ".join(
      f"--{name.replace('_', '-')} {' '.join(map(str, value)) if isinstance(value, list) else value}"
      for name, value in vars(args).items())
  write_results(args.out, {"machine": info, "command": command, "results": rows},
                markdown_table(rows, info, command))


if __name__ == "__main__":
  main()
