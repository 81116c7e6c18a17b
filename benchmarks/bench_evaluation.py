"""Full-MNIST-sized evaluation: jaxhash against DeepHash-pytorch's CalcTopMap algorithm, same codes.

  python benchmarks/bench_evaluation.py [--rounds 2] [--no-check] [--codes RUN.npz]

Codes like full MNIST's (10,000 queries x 60,000 database, 48 bits, 10 classes): by default from a
generator fitted to a trained DLBHC run (see ``synthetic``), or a trained run's codes, labels and
features saved with ``np.savez`` (query_/database_ words, labels, features). Cases: class labels,
and the same codes with random query labels.

Per case, alternating in this process: jaxhash's whole codes evaluation (mAP@all and @1000 in both
conventions, P@1/10/100/1000, precision and recall within radius 2, PR and precision@k curves),
and the reference, which computes mAP@all alone the way DeepHash-pytorch's CalcTopMap does: per
query, Hamming distances from +-1 codes (0.5 * (bits - B @ q)), NumPy's argsort, the relevance in
that order, and the mean of (number of hits) / (rank) at the relevant ranks (re-implemented here
from that description; NumPy's BLAS on one thread unless OPENBLAS_NUM_THREADS says otherwise:
under load, two threads on two cores made it 3.5x slower). Then coarse-to-fine re-ranking with
500-d features. ``--check`` (default) also runs the evaluation as it was before the package (a
copy kept below as the reference) and compares every figure: <= 1e-6 and equal at 4 decimals.
"""

from __future__ import annotations

import argparse
import os
import sys
import time

os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")  # the reference's BLAS; XLA is not affected

import numpy as np  # noqa: E402

from common import machine, write_results  # noqa: E402
from jaxhash import evaluation  # noqa: E402
from jaxhash.retrieval import hamming_distances, pack_bits, unpack_bits  # noqa: E402

QUERIES, DATABASE, BITS, CLASSES, FEATURES = 10_000, 60_000, 48, 10, 500
UNSTABLE_BITS = (0.3, 0.2, 0.1, 0.05, 0.03)  # flip probabilities of five bits of each class's code
MAP_KEYS = ("map@all", "hashnet_map@all", "map@1000", "hashnet_map@1000")
BAR = 0.1  # the whole codes evaluation in at most a tenth of the reference's mAP@all time


def synthetic(seed: int = 0) -> dict:
  """Codes with a trained run's tie structure, and ReLU features around class centres.

  Each code is its class's code with bits flipped: five class-specific bits with the
  probabilities above, 1-5 more random bits for 15% of the items, another class's code for 2%.
  Fitted to a 48-bit DLBHC run on full MNIST: 39%, 36%, 12%, 4% of its queries are 0, 1, 2, 3
  bits from their class's code (the run: 40%, 29%, 16%, 6%), and 1,547 of the 10,000 query codes
  are distinct (the run: 1,582).
  """
  rng = np.random.default_rng(seed)
  prototypes = rng.integers(0, 2, (CLASSES, BITS), dtype=np.uint8)
  flip_rates = np.zeros((CLASSES, BITS))
  for c in range(CLASSES):
    flip_rates[c, rng.permutation(BITS)[: len(UNSTABLE_BITS)]] = UNSTABLE_BITS
  centers = rng.normal(0, 1, (CLASSES, FEATURES)).astype(np.float32)
  out = {}
  for name, m in (("query", QUERIES), ("database", DATABASE)):
    labels = rng.integers(0, CLASSES, m)
    shown = np.where(rng.random(m) < 0.02, (labels + rng.integers(1, CLASSES, m)) % CLASSES, labels)
    flips = rng.random((m, BITS)) < flip_rates[shown]
    extra = np.where(rng.random(m) < 0.15, rng.integers(1, 6, m), 0)
    flips ^= np.argsort(rng.random((m, BITS)), axis=1) < extra[:, None]  # `extra` random bits
    out[f"{name}_words"] = pack_bits(prototypes[shown] ^ flips)
    out[f"{name}_labels"] = np.eye(CLASSES, dtype=np.uint8)[labels]
    feats = centers[labels] + rng.normal(0, 1.5, (m, FEATURES)).astype(np.float32)
    out[f"{name}_features"] = np.maximum(feats, 0)
  return out


def calc_top_map(query_pm, db_pm, query_labels, db_labels, topk: int) -> float:
  """mAP@topk the way DeepHash-pytorch's CalcTopMap computes it (every query in the mean)."""
  total = 0.0
  for i in range(len(query_pm)):
    gnd = (np.dot(query_labels[i], db_labels.T) > 0).astype(np.float32)
    hamming = 0.5 * (db_pm.shape[1] - np.dot(db_pm, query_pm[i]))
    gnd = gnd[np.argsort(hamming)][:topk]
    hits = int(gnd.sum())
    if hits:
      total += np.mean(np.arange(1, hits + 1) / (np.flatnonzero(gnd) + 1.0))
  return total / len(query_pm)


def legacy_evaluate(query, database, spec) -> dict:
  """The evaluation before the package (jaxhash/evaluation.py, metrics.py, rerank.py at f67c9ab),
  for a spec with "all" in map_at: a stable sort of each chunk's distances, metrics in float32,
  the pool re-ranked by q.q - 2 q.d + d.d from one matrix product, ties in Hamming order."""
  import jax.numpy as jnp

  n, num_queries = len(database.words), len(query.words)
  sums = {"codes": {}, "rerank": {}}

  def add(mode, key, values):
    sums[mode][key] = sums[mode].get(key, 0.0) + float(np.sum(values))

  def ranking_metrics(mode, ranked):
    top = ranked.astype(np.float32)
    precision = np.cumsum(top, axis=1) / np.arange(1, top.shape[1] + 1, dtype=np.float32)
    for r in spec.map_at:
      depth = n if r == "all" else min(r, n)
      found = top[:, :depth].sum(axis=1)
      hit_precision = (precision[:, :depth] * top[:, :depth]).sum(axis=1)
      add(mode, f"map@{r}", np.where(found > 0, hit_precision / np.maximum(found, 1), 0.0))
    for k in spec.precision_at:
      add(mode, f"precision@{k}", top[:, : min(k, n)].sum(axis=1) / float(min(k, n)))

  labels_db = database.labels.astype(np.float32).T
  for start in range(0, num_queries, max(1, 2**24 // n)):
    sl = slice(start, start + max(1, 2**24 // n))
    distances = np.asarray(hamming_distances(query.words[sl], database.words)).astype(np.uint16)
    rel = (query.labels[sl].astype(np.float32) @ labels_db) > 0
    order = np.argsort(distances, axis=1, kind="stable")
    ranking_metrics("codes", np.take_along_axis(rel, order, axis=1))
    retrieved = (distances <= spec.radius).sum(axis=1)
    hits, total = ((distances <= spec.radius) & rel).sum(axis=1), rel.sum(axis=1)
    add(
      "codes",
      f"precision@radius{spec.radius}",
      np.where(retrieved > 0, hits / np.maximum(retrieved, 1), 0.0),
    )
    add(
      "codes", f"recall@radius{spec.radius}", np.where(total > 0, hits / np.maximum(total, 1), 0.0)
    )
    if query.features is not None:
      qf, df = jnp.asarray(query.features[sl]), jnp.asarray(database.features)
      squared = jnp.sum(qf**2, axis=1, keepdims=True) - 2.0 * qf @ df.T + jnp.sum(df**2, axis=1)
      head = order[:, : min(spec.rerank_pool, n)]
      keys = np.take_along_axis(np.asarray(squared), head, axis=1)
      head = np.take_along_axis(head, np.argsort(keys, axis=1, kind="stable"), axis=1)
      fine = np.concatenate([head, order[:, head.shape[1] :]], axis=1)
      ranking_metrics("rerank", np.take_along_axis(rel, fine, axis=1))
  return {
    mode: {k: v / num_queries for k, v in values.items()} for mode, values in sums.items() if values
  }


def timed(function, *args):
  t0 = time.perf_counter()
  value = function(*args)
  return value, time.perf_counter() - t0


def run_case(name, data, rounds, check) -> dict:
  query = evaluation.Encoded(data["query_words"], data["query_labels"])
  database = evaluation.Encoded(data["database_words"], data["database_labels"])
  spec = evaluation.EvalSpec(nbits=BITS, rerank=False)
  to_pm = lambda words: unpack_bits(words, BITS).astype(np.float32) * 2 - 1  # noqa: E731
  ref_args = (
    to_pm(query.words),
    to_pm(database.words),
    query.labels.astype(np.float32),
    database.labels.astype(np.float32),
    DATABASE,
  )
  evaluation.evaluate(query, database, spec)  # compile
  ours, refs = [], []
  for _ in range(rounds):  # alternating
    result, seconds = timed(evaluation.evaluate, query, database, spec)
    ours.append(seconds)
    ref_map, seconds = timed(calc_top_map, *ref_args)
    refs.append(seconds)
    print(f"{name}: jaxhash {ours[-1]:.2f} s, reference {refs[-1]:.1f} s", flush=True)
  distinct = np.unique(np.concatenate([query.words, pack_bits(query.labels)], axis=1), axis=0)
  row = {
    "case": name,
    "distinct queries": len(distinct),
    "jaxhash s": min(ours),
    "reference s": min(refs),
    "ratio": min(ours) / min(refs),
  }
  row.update({k: result["codes"][k] for k in MAP_KEYS})
  row["reference map@all"] = ref_map
  if check:
    row.update(compare(result, legacy_evaluate(query, database, spec)))
  return row


def compare(ours: dict, legacy: dict) -> dict:
  diffs = [
    (abs(ours[mode][k] - v), f"{ours[mode][k]:.4f}" == f"{v:.4f}")
    for mode in legacy
    for k, v in legacy[mode].items()
  ]
  return {
    "figures checked": len(diffs),
    "max abs diff": max(d for d, _ in diffs),
    "equal at 4 decimals": all(same for _, same in diffs),
  }


def main():
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument("--rounds", type=int, default=2, help="alternating timings per case")
  parser.add_argument(
    "--no-check",
    dest="check",
    action="store_false",
    help="skip the comparison with the pre-package evaluation",
  )
  parser.add_argument(
    "--codes",
    help="npz of a trained run's codes instead of the generator "
    "(results then go to evaluation_codes.json)",
  )
  args = parser.parse_args()
  data = dict(np.load(args.codes)) if args.codes else synthetic()
  source = args.codes or "generator fitted to a trained DLBHC run (seed 0)"
  rng = np.random.default_rng(1)
  random_labels = {
    **data,
    "query_labels": np.eye(CLASSES, dtype=np.uint8)[rng.integers(0, CLASSES, QUERIES)],
  }
  # The class-labels figures are checked with the re-ranking run below, which includes them.
  rows = [
    run_case("class labels", data, args.rounds, check=False),
    run_case("random query labels", random_labels, args.rounds, args.check),
  ]

  query, database = (
    evaluation.Encoded(data[f"{name}_words"], data[f"{name}_labels"], data[f"{name}_features"])
    for name in ("query", "database")
  )
  spec = evaluation.EvalSpec(nbits=BITS)
  evaluation.evaluate(query, database, spec)  # compile
  result, total = timed(evaluation.evaluate, query, database, spec)
  rerank = {
    "jaxhash rerank s": result["seconds"]["rerank"],
    "jaxhash total s": total,
    "map@all": result["rerank"]["map@all"],
    "map@1000": result["rerank"]["map@1000"],
  }
  if args.check:
    legacy, seconds = timed(legacy_evaluate, query, database, spec)
    rerank.update({"pre-package total s (codes + rerank)": seconds, **compare(result, legacy)})
  print(f"coarse-to-fine: {rerank}", flush=True)
  checks = [r for r in rows + [rerank] if "equal at 4 decimals" in r]
  holds = all(r["ratio"] <= BAR for r in rows) and all(r["equal at 4 decimals"] for r in checks)
  payload = {
    "machine": machine(),
    "codes": source,
    "reference BLAS threads": os.environ["OPENBLAS_NUM_THREADS"],
    "shape": f"{QUERIES} queries x {DATABASE} database, {BITS} bits, {CLASSES} classes",
    "bar": f"jaxhash / reference <= {BAR} in every case, figures equal to the pre-package "
    "evaluation's where compared",
    "bar_holds": holds,
    "cases": rows,
    "coarse_to_fine": rerank,
  }
  print(write_results("evaluation_codes" if args.codes else "evaluation", payload))
  print(f"bar ({payload['bar']}): {'holds' if holds else 'MISSED'}")
  return 0 if holds else 1


if __name__ == "__main__":
  sys.exit(main())
