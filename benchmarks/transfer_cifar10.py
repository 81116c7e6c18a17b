"""Transfer learning on CIFAR-10 on CPU: EfficientNet-Lite0 from ImageNet weights; DLBHC, HashNet.

Protocol cifar10 (1,000 queries, 5,000 training images, the other 54,000 as database), 48 bits,
configs ``dlbhc_cifar10.py:lite0_cpu`` and ``hashnet_cifar10.py:lite0_cpu``: the frozen prefix's
activations are computed once into a cache that both methods share (the first run builds it, the
second verifies and reuses it), then each method trains the last stages on them. Fresh workdirs
and a fresh cache every time. Writes benchmarks/results/transfer_cifar10.json and .md: per method
mAP@1000 and mAP@all of Hamming ranking (and re-ranked by fc7 distance), wall time split into
caching, training and evaluation.

  python benchmarks/transfer_cifar10.py [--tarball data/cifar10-jpg.tar.gz] \\
      [--cifar-dir runs/cifar10] [--set train.num_epochs=1 ...]
"""

from __future__ import annotations

import argparse
import os
import shutil
import sys
import time

import common
from jaxhash.data.image_folder import prepare_cifar10
from jaxhash.run import experiment, run_evaluation, run_results, trainer

CONFIGS = (("dlbhc", "configs/dlbhc_cifar10.py"), ("hashnet", "configs/hashnet_cifar10.py"))
VARIANT = "lite0_cpu"
ROOT = "runs/bench/transfer_cifar10"


def run_method(name: str, config_path: str, overrides: dict) -> dict:
  """Trains and evaluates one method in a fresh workdir; times caching, training and evaluation."""
  workdir = os.path.join(common.ROOT, ROOT, name)
  shutil.rmtree(workdir, ignore_errors=True)
  config = common.load_config(config_path, VARIANT, overrides)
  t0 = time.perf_counter()
  exp = experiment.build_experiment(config)
  t_data = time.perf_counter()
  shard_times = []
  state = trainer.train(
    exp, workdir, stream=sys.stderr, on_shard=lambda i: shard_times.append(time.perf_counter())
  )
  t_train = time.perf_counter()
  results = run_evaluation.evaluate(exp, state, workdir, sys.stderr)
  run_results.write_results(workdir, results)
  t_eval = time.perf_counter()
  # Caching ends with the last shard this run computed (none: the cache was reused and verified).
  cache_end = shard_times[-1] if shard_times else t_data
  return {
    "method": name,
    "config": f"{config_path}:{VARIANT}",
    "map@1000": results["codes"]["map@1000"],
    "map@all": results["codes"]["map@all"],
    "rerank map@1000": results.get("rerank", {}).get("map@1000"),
    "rerank map@all": results.get("rerank", {}).get("map@all"),
    "steps": int(state.step),
    "cache shards computed": len(shard_times),
    "load data s": round(t_data - t0, 1),
    "caching s": round(cache_end - t_data, 1),
    "training s": round(t_train - cache_end, 1),
    "evaluation s": round(t_eval - t_train, 1),
    "total s": round(t_eval - t0, 1),
  }, config


def main() -> None:
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument("--tarball", default="data/cifar10-jpg.tar.gz")
  parser.add_argument(
    "--cifar-dir", default="runs/cifar10", help="where the JPEG tree and list files go"
  )
  parser.add_argument(
    "--set",
    action="append",
    default=[],
    help="config override KEY=VALUE for both methods (smaller smoke runs)",
  )
  args = parser.parse_args()
  load_before = os.getloadavg()[0]
  t0 = time.perf_counter()
  data_dir = prepare_cifar10(args.tarball, args.cifar_dir)
  cache_dir = os.path.join(common.ROOT, ROOT, "features")
  shutil.rmtree(cache_dir, ignore_errors=True)  # time the caching too
  overrides = {
    "data.dir": data_dir,
    "data.feature_cache_dir": cache_dir,
    **common.parse_set(args.set),
  }
  rows, config = [], None
  for name, path in CONFIGS:
    row, config = run_method(name, path, overrides)
    rows.append(row)
    print(row, flush=True)
  sets = "".join(f" --config.{k}={v}" for k, v in overrides.items())
  payload = {
    "commands": [f"python -m jaxhash.train --config {path}:{VARIANT}{sets}" for _, path in CONFIGS],
    "benchmark": "python benchmarks/transfer_cifar10.py" + "".join(f" --set {s}" for s in args.set),
    "protocol": config.data.protocol,
    "bits": config.method.bits,
    **common.cached_recipe(config),
    "wall seconds": round(time.perf_counter() - t0, 1),
    "load average before": load_before,
    "load average after": os.getloadavg()[0],
    "machine": common.machine(),
    "methods": rows,
  }
  print(common.write_results("transfer_cifar10", payload))


if __name__ == "__main__":
  main()
