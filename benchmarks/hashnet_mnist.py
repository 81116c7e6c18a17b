"""HashNet on the full MNIST, paper protocol, 48 bits: codes-only retrieval, run time, β and loss.

Queries = the 10,000 test images; training set = database = the 60,000 train images. The bar is
mAP@all >= 0.99. Trains from scratch in a fresh workdir (its own, under runs/bench/) and writes
benchmarks/results/hashnet_mnist.json and .md.

  python benchmarks/hashnet_mnist.py [--data-dir data/mnist]
"""

from __future__ import annotations

import argparse
import os
import shutil
import sys

import common

CONFIG, VARIANT = "configs/hashnet_mnist.py", "full"
WORKDIR = "runs/bench/hashnet_mnist"
BAR = 0.99


def curve(workdir: str, every: int = 500) -> list[dict]:
  """β and loss from metrics.jsonl at every ``every`` steps and the last step."""
  records = common.read_metrics(workdir)
  return [
    {"step": r["step"], "beta": r["beta"], "loss": r["loss"], "learning_rate": r["learning_rate"]}
    for r in records
    if r["step"] % every == 0 or r is records[-1]
  ]


def main() -> int:
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument("--data-dir", default="data/mnist", help="the MNIST IDX files")
  args = parser.parse_args()
  config = common.load_config(CONFIG, VARIANT, {"data.dir": args.data_dir})
  shutil.rmtree(os.path.join(common.ROOT, WORKDIR), ignore_errors=True)  # time a fresh run
  run = common.timed_run(config, WORKDIR)
  payload = {
    "command": f"python -m jaxhash.train --config {CONFIG}:{VARIANT} "
    f"--config.data.dir={args.data_dir}",
    "bits": run["bits"],
    "protocol": run["protocol"],
    "queries": run["num_queries"],
    "database": run["num_database"],
    "steps": run["step"],
    "wall_seconds": round(run["wall_seconds"], 1),
    "bar": f"map@all >= {BAR}",
    "passed": run["codes"]["map@all"] >= BAR,
    "machine": common.machine(),
    "workdir": run["workdir"],
    "metrics": [{"metric": k, "codes": v} for k, v in run["codes"].items()],
    "curve": curve(WORKDIR),
  }
  print(common.write_results("hashnet_mnist", payload))
  print(f"bar ({payload['bar']}): {'holds' if payload['passed'] else 'MISSED'}")
  return 0 if payload["passed"] else 1


if __name__ == "__main__":
  sys.exit(main())
