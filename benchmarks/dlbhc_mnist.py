"""DLBHC on MNIST at 48 bits: the default job (embedded t10k, protocol mnist10k) and the paper's
protocol on the full MNIST (10,000 test queries; 60,000 train images = training set = database).

  python benchmarks/dlbhc_mnist.py [--only default|full] [--data-dir data/mnist]

Each run trains from scratch in a fresh workdir under runs/bench/ and is timed end to end (data
loading, compilation, training, encoding and evaluation). Figures go to
benchmarks/results/dlbhc_mnist.json and .md.
"""

import argparse
import shutil

from common import load_config, machine, timed_run, write_results

RUNS = {
  "default": ("", {}),
  "full": ("full", {}),
}


def main():
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument("--only", choices=sorted(RUNS))
  parser.add_argument("--data-dir", default="data/mnist", help="MNIST IDX files for the full run")
  args = parser.parse_args()
  rows = []
  for name, (variant, overrides) in RUNS.items():
    if args.only and name != args.only:
      continue
    if name == "full":
      overrides = {**overrides, "data.dir": args.data_dir}
    config = load_config("configs/dlbhc_mnist.py", variant or None, overrides)
    workdir = f"runs/bench/dlbhc_mnist_{name}"
    shutil.rmtree(workdir, ignore_errors=True)
    run = timed_run(config, workdir)
    command = " ".join(
      [
        "python -m jaxhash.train --config configs/dlbhc_mnist.py"
        + (f":{variant}" if variant else ""),
        *(f"--config.{k}={v}" for k, v in overrides.items()),
      ]
    )
    rows.append(
      {
        "run": name,
        "command": command,
        "protocol": run["protocol"],
        "bits": run["bits"],
        "queries": run["num_queries"],
        "database": run["num_database"],
        "steps": run["step"],
        "codes map@all": run["codes"]["map@all"],
        "codes map@1000": run["codes"]["map@1000"],
        **{f"codes {k}": v for k, v in run["codes"].items() if k.startswith("hashnet_map@")},
        "codes precision@radius2": run["codes"]["precision@radius2"],
        "rerank map@all": run["rerank"]["map@all"],
        "rerank precision@100": run["rerank"]["precision@100"],
        "seconds": run["wall_seconds"],
      }
    )
    print(
      f"{name}: codes mAP@all {run['codes']['map@all']:.4f} in {run['wall_seconds']:.0f} s",
      flush=True,
    )
  print(write_results("dlbhc_mnist", {"machine": machine(), "runs": rows}))


if __name__ == "__main__":
  main()
