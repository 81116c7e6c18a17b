"""HashNet on CIFAR-10 end to end through the list-file path on CPU, protocol cifar10, 48 bits.

Extracts the JPEG tarball and writes its list files (once, into --cifar-dir), then trains
configs/hashnet_cifar10.py:cpu from scratch in a fresh workdir and evaluates 1,000 queries against
the 54,000-image database. A CPU budget (about 11 minutes on 2 EPYC cores, 5 on 2 Xeon cores),
not the paper's setting: the AlexNet recipe from ImageNet weights is the config's default, for an
accelerator. Writes
benchmarks/results/hashnet_cifar10.json and .md.

  python benchmarks/hashnet_cifar10.py [--tarball data/cifar10-jpg.tar.gz] \
      [--cifar-dir runs/cifar10]
"""

from __future__ import annotations

import argparse
import os
import shutil
import time

import common
from jaxhash.data.image_folder import prepare_cifar10

CONFIG, VARIANT = "configs/hashnet_cifar10.py", "cpu"
WORKDIR = "runs/bench/hashnet_cifar10"


def main() -> None:
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument("--tarball", default="data/cifar10-jpg.tar.gz")
  parser.add_argument(
    "--cifar-dir", default="runs/cifar10", help="where the JPEG tree and list files go"
  )
  args = parser.parse_args()
  t0 = time.perf_counter()
  data_dir = prepare_cifar10(args.tarball, args.cifar_dir)
  prepare_seconds = time.perf_counter() - t0
  config = common.load_config(CONFIG, VARIANT, {"data.dir": data_dir})
  shutil.rmtree(os.path.join(common.ROOT, WORKDIR), ignore_errors=True)  # time a fresh run
  run = common.timed_run(config, WORKDIR)
  records = common.read_metrics(WORKDIR)
  payload = {
    "command": f"python -m jaxhash.train --config {CONFIG}:{VARIANT} --config.data.dir={data_dir}",
    "bits": run["bits"],
    "protocol": run["protocol"],
    "queries": run["num_queries"],
    "database": run["num_database"],
    "backbone": config.model.backbone,
    "steps": run["step"],
    "final beta": records[-1]["beta"],
    "final loss": records[-1]["loss"],
    "prepare_seconds": round(prepare_seconds, 1),
    "wall_seconds": round(run["wall_seconds"], 1),
    "machine": common.machine(),
    "workdir": run["workdir"],
    "metrics": [{"metric": k, "codes": v} for k, v in run["codes"].items()],
  }
  print(common.write_results("hashnet_cifar10", payload))


if __name__ == "__main__":
  main()
