"""The public API and the index/search commands on MNIST, from a trained main-job run.

  python benchmarks/api_search.py [--workdir runs/dlbhc_mnist_48]

Trains the main job (``python -m jaxhash.train --config configs/dlbhc_mnist.py``) into --workdir
unless it is already trained there, then measures two bars:

1. Using only ``jaxhash.load``, ``Hasher.encode`` and ``HammingIndex``: index the 10,000 MNIST test
   images (read here from the IDX file shipped in the package) and query each of them; precision@10
   = the share of the 10 nearest other images with the query's digit (the query itself is left
   out). Also for the run's 1,000 held-out queries alone, which the network never trained on.
   Bar: >= 0.95.
2. ``python -m jaxhash.index`` over DIR/<digit>/*.png holding the first 2,000 test images, then
   ``python -m jaxhash.search --json -k 10`` for 20 of them (evenly spaced): the mean number of the
   top 10 in the query's folder (the query itself, found first, included, as the command returns
   it), and of the next 10 without it (``-k 11``). Bar: >= 9.

Writes benchmarks/results/api_search.{json,md}; exits non-zero when a bar is missed.
"""

from __future__ import annotations

import argparse
import gzip
import importlib.resources
import json
import os
import subprocess
import sys
import tempfile
import time

import numpy as np
from PIL import Image

import jaxhash
from common import ROOT, machine, write_results


def read_idx(name: str) -> np.ndarray:
  """An IDX file shipped in the package (uint8 data; header: magic, then one uint32 per dim)."""
  data = gzip.decompress(
    (importlib.resources.files("jaxhash.data") / "embedded" / name).read_bytes()
  )
  ndim = data[3]
  shape = tuple(int.from_bytes(data[4 + 4 * i : 8 + 4 * i], "big") for i in range(ndim))
  return np.frombuffer(data, np.uint8, offset=4 + 4 * ndim).reshape(shape)


def cli(*args: str) -> tuple[subprocess.CompletedProcess, float]:
  t0 = time.perf_counter()
  proc = subprocess.run(
    [sys.executable, "-m", *args],
    cwd=ROOT,
    capture_output=True,
    text=True,
    env={**os.environ, "PYTHONPATH": ROOT},
  )
  if proc.returncode:
    sys.exit(f"{' '.join(args[:1])} failed:\n{proc.stderr}")
  return proc, time.perf_counter() - t0


def precision_at_10(index, codes, labels, queries) -> float:
  """Mean share of the 10 nearest other images with the query's label (self left out)."""
  _, ids = index.search(codes[queries], 11)
  hits = []
  for query, row in zip(queries, ids):
    others = [i for i in row if i != query][:10]
    hits.append(np.mean(labels[others] == labels[query]))
  return float(np.mean(hits))


def main() -> None:
  parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
  parser.add_argument("--workdir", default=os.path.join(ROOT, "runs", "dlbhc_mnist_48"))
  args = parser.parse_args()
  workdir = os.path.abspath(args.workdir)
  payload = {"machine": machine(), "workdir": os.path.relpath(workdir, ROOT)}
  if not os.path.isfile(os.path.join(workdir, "results.json")):
    _, payload["train_seconds"] = cli(
      "jaxhash.train", "--config", "configs/dlbhc_mnist.py", "--workdir", workdir
    )

  # 1. The API alone.
  images = read_idx("t10k-images-idx3-ubyte.gz")
  labels = read_idx("t10k-labels-idx1-ubyte.gz")
  t0 = time.perf_counter()
  hasher = jaxhash.load(workdir)
  payload["load_seconds"] = time.perf_counter() - t0
  t0 = time.perf_counter()
  codes = hasher.encode(images)
  payload["encode_10000_seconds"] = time.perf_counter() - t0
  index = jaxhash.HammingIndex(hasher.bits)
  index.add(codes)
  held_out = np.loadtxt(os.path.join(workdir, "splits", "query.txt"), dtype=np.int64, comments="#")
  payload["api"] = {
    "step": hasher.step,
    "bits": hasher.bits,
    "precision@10_all_10000": precision_at_10(index, codes, labels, np.arange(len(images))),
    "precision@10_1000_held_out": precision_at_10(index, codes, labels, held_out),
  }

  # 2. The commands over a folder of PNG files.
  with tempfile.TemporaryDirectory() as tmp:
    folder = os.path.join(tmp, "digits")
    paths = []
    for i in range(2000):
      os.makedirs(os.path.join(folder, str(labels[i])), exist_ok=True)
      paths.append(os.path.join(folder, str(labels[i]), f"{i:05d}.png"))
      Image.fromarray(images[i]).save(paths[-1])
    out = os.path.join(tmp, "digits.jhi")
    _, index_seconds = cli("jaxhash.index", "--workdir", workdir, "--images", folder, "--out", out)
    queries = paths[::100]
    same = {}
    for k in (10, 11):
      proc, search_seconds = cli("jaxhash.search", "--index", out, *queries, "-k", str(k), "--json")
      counts = []
      for line in proc.stdout.strip().splitlines():
        record = json.loads(line)
        found = [r["path"] for r in record["results"] if r["path"] != record["query"] or k == 10]
        counts.append(
          sum(os.path.dirname(p) == os.path.dirname(record["query"]) for p in found[:10])
        )
      same[k] = (float(np.mean(counts)), search_seconds, len(counts))
  payload["commands"] = {
    "images": 2000,
    "queries": same[10][2],
    "index_seconds": index_seconds,
    "search_seconds": same[10][1],
    "same_folder_in_top10": same[10][0],
    "same_folder_in_top10_self_excluded": same[11][0],
  }
  bars = {
    "api_precision@10_at_least_0.95": min(
      payload["api"]["precision@10_all_10000"], payload["api"]["precision@10_1000_held_out"]
    )
    >= 0.95,
    "commands_same_folder_at_least_9_of_10": same[11][0] >= 9 and same[10][0] >= 9,
  }
  payload["bars_hold"] = bars
  print(write_results("api_search", payload))
  if not all(bars.values()):
    sys.exit(f"bar missed: {bars}")


if __name__ == "__main__":
  main()
