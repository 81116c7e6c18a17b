"""HashNet ablation on the full MNIST, paper protocol, 48 bits: continuation and pair weighting.

Four runs of configs/hashnet_mnist.py:full differing only in ``method.continuation`` (β raised by
the schedule, or fixed at β = 1) and ``method.weighting`` (balanced, the paper's, or uniform).
The default run (continuation, balanced) reuses benchmarks/hashnet_mnist.py's workdir when that
run is finished (``--retrain`` trains it again). Writes benchmarks/results/hashnet_ablation.json
and .md. About 4 minutes a run on 2 AVX2 EPYC cores, 1.3 on 2 AVX-512 Xeon cores.

  python benchmarks/hashnet_ablation.py [--data-dir data/mnist] [--retrain]
"""

from __future__ import annotations

import argparse
import os
import shutil

from hashnet_mnist import CONFIG, VARIANT
from hashnet_mnist import WORKDIR as MAIN_WORKDIR

import common

VARIANTS = [  # (name, continuation, weighting)
  ("continuation + balanced (HashNet)", True, "balanced"),
  ("fixed β = 1 + balanced", False, "balanced"),
  ("continuation + uniform", True, "uniform"),
  ("fixed β = 1 + uniform", False, "uniform"),
]


def workdir_for(continuation: bool, weighting: str, retrain: bool) -> tuple[str, bool]:
  """(workdir, reused): the main benchmark's finished run for the default variant, or a new one."""
  if continuation and weighting == "balanced" and not retrain:
    if os.path.exists(os.path.join(common.ROOT, MAIN_WORKDIR, "results.json")):
      return MAIN_WORKDIR, True
  workdir = f"runs/bench/hashnet_ablation/{'continuation' if continuation else 'fixed'}_{weighting}"
  shutil.rmtree(os.path.join(common.ROOT, workdir), ignore_errors=True)  # time a fresh run
  return workdir, False


def main() -> None:
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument("--data-dir", default="data/mnist", help="the MNIST IDX files")
  parser.add_argument("--retrain", action="store_true", help="train the default variant again")
  args = parser.parse_args()
  rows = []
  for name, continuation, weighting in VARIANTS:
    config = common.load_config(
      CONFIG,
      VARIANT,
      {
        "data.dir": args.data_dir,
        "method.continuation": continuation,
        "method.weighting": weighting,
      },
    )
    workdir, reused = workdir_for(continuation, weighting, args.retrain)
    run = common.timed_run(config, workdir)
    last = common.read_metrics(workdir)[-1]
    rows.append(
      {
        "variant": name,
        "map@all": run["codes"]["map@all"],
        "map@1000": run["codes"]["map@1000"],
        "precision@radius2": run["codes"]["precision@radius2"],
        "final beta": last["beta"],
        "final loss": last["loss"],
        "train+eval seconds": "reused" if reused else round(run["wall_seconds"], 1),
        "flags": f"--config.method.continuation={continuation} "
        f"--config.method.weighting={weighting}",
      }
    )
    print(f"{name}: map@all {run['codes']['map@all']:.4f}", flush=True)
  payload = {
    "command": f"python -m jaxhash.train --config {CONFIG}:{VARIANT} "
    f"--config.data.dir={args.data_dir} FLAGS",
    "bits": 48,
    "protocol": "mnist",
    "machine": common.machine(),
    "runs": rows,
  }
  print(common.write_results("hashnet_ablation", payload))


if __name__ == "__main__":
  main()
