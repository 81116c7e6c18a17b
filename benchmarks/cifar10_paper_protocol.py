"""The papers' CIFAR-10 protocol on a CPU: DLBHC and HashNet at 12, 32 and 48 bits on cifar10-2,
the classifier baseline, and the unseen-class protocol.

Protocol cifar10-2 is DLBHC's: the 10,000 test images are the queries, the 50,000 training images
are both the training set and the database, mAP@1000 (and @all). The recipe is the configs'
``paper_cpu`` (``jaxhash.presets.paper_cpu``), in two steps per protocol. Fine-tune once: DLBHC at
the longest code length trains the last stages of ImageNet EfficientNet-Lite0 on a frozen prefix
computed once into a cache that both protocols share (no flips cached, so nothing in it depends on
the split). Then every other code length and method (``paper_cpu_head``) starts from that run's
backbone, frozen and cached whole, and trains its own head. The classifier row is Sablayrolles et
al.'s baseline (ICASSP 2017): the database ranked by the class the fine-tuned DLBHC network
predicts. The unseen-class rows (protocol ``cifar10-unseen``) fine-tune on seven classes and
retrieve among the three others, where a classifier cannot help. Fresh workdirs and fresh caches
every time, so caching is timed too. Writes benchmarks/results/cifar10_paper_protocol.{json,md};
exits 1 when a DLBHC row misses the paper or the whole table took more than 90 minutes.

  python benchmarks/cifar10_paper_protocol.py [--tarball ../shared/data/cifar10/cifar10-jpg.tar.gz]
      [--cifar-dir /tmp/cifar10] [--bits 12 32 48] [--set train.num_epochs=0.1 ...]
"""

from __future__ import annotations

import argparse
import os
import shutil
import sys
import time

import common
from jaxhash import published
from jaxhash.data.image_folder import prepare_cifar10
from jaxhash.run import experiment, run_evaluation, run_results, trainer

VARIANT, HEAD_VARIANT = "paper_cpu", "paper_cpu_head"
BUDGET_S = 90 * 60  # the whole table, caching included, on two CPU cores
# The unseen-class rows show what codes add where a classifier cannot help; no published figure
# stands beside them, so their fine-tuning is shorter and the table stays within the budget.
UNSEEN_EPOCHS = 1.5
ROOT = "runs/bench/cifar10_paper_protocol"
METHODS = ("dlbhc", "hashnet")
PAPER, UNSEEN = "cifar10-2", "cifar10-unseen"


def run(
  method: str, bits: int, protocol: str, overrides: dict, backbone_run: str = ""
) -> tuple[dict, dict, str]:
  """Trains and evaluates one run in a fresh workdir: the fine-tuning run, or with
  ``backbone_run`` a head on that run's frozen backbone. Returns (row, results, workdir) with
  caching, training and evaluation timed apart."""
  workdir = os.path.join(common.ROOT, ROOT, f"{method}_{protocol}_{bits}")
  shutil.rmtree(workdir, ignore_errors=True)
  head = {"model.init_weights": backbone_run} if backbone_run else {}
  config = common.load_config(
    f"configs/{method}_cifar10.py",
    f"{HEAD_VARIANT if backbone_run else VARIANT},bits={bits}",
    {
      **overrides,
      **head,
      "data.protocol": protocol,
      "eval.classifier_baseline": method == "dlbhc" and not backbone_run,
    },
  )
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
  cache_end = shard_times[-1] if shard_times else t_data  # none computed: the cache was reused
  row = {
    "method": method,
    "protocol": protocol,
    "bits": bits,
    "trained": "heads on that backbone" if backbone_run else "last stages fine-tuned",
    "map@1000": results["codes"]["map@1000"],
    "map@all": results["codes"]["map@all"],
    "rerank map@1000": results.get("rerank", {}).get("map@1000"),
    "rerank map@all": results.get("rerank", {}).get("map@all"),
    "published map@1000": _published(method, protocol, bits),
    "steps": int(state.step),
    "load data s": round(t_data - t0, 1),
    "caching s": round(cache_end - t_data, 1),
    "training s": round(t_train - cache_end, 1),
    "evaluation s": round(t_eval - t_train, 1),
  }
  return row, results, workdir


def _published(method: str, protocol: str, bits: int) -> float | None:
  figures = published.matching(method, protocol, bits, 1000)
  return figures[0].value if figures else None


def classifier_row(protocol: str, bits: int, results: dict) -> dict:
  """Sablayrolles et al.'s baseline from a DLBHC run: the database ranked by predicted class."""
  baseline = results["classifier"]
  return {
    "method": "classifier",
    "protocol": protocol,
    "bits": baseline.get("bits"),
    "map@1000": baseline["map@1000"],
    "map@all": baseline["map@all"],
    "query accuracy": baseline["accuracy"],
    "from": f"the dlbhc {bits}-bit run",
  }


def missed(rows: list[dict]) -> list[str]:
  """The DLBHC rows below the paper's mAP@1000 (the bar)."""
  return [
    f"dlbhc {r['bits']} bits: {r['map@1000']:.4f} < {r['published map@1000']:.4f}"
    for r in rows
    if r["method"] == "dlbhc"
    and r.get("published map@1000") is not None
    and r["map@1000"] < r["published map@1000"]
  ]


def main() -> int:
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument("--tarball", default="../shared/data/cifar10/cifar10-jpg.tar.gz")
  parser.add_argument(
    "--cifar-dir", default="/tmp/cifar10", help="where the JPEG tree and list files go"
  )
  parser.add_argument("--bits", type=int, nargs="+", default=[12, 32, 48])
  parser.add_argument(
    "--set",
    action="append",
    default=[],
    help="config override KEY=VALUE for every run (smaller smoke runs)",
  )
  parser.add_argument("--name", default="cifar10_paper_protocol", help="results file name")
  args = parser.parse_args()
  load_before, t0 = os.getloadavg()[0], time.perf_counter()
  data_dir = prepare_cifar10(args.tarball, args.cifar_dir)
  cache_dir = os.path.join(common.ROOT, ROOT, "features")
  shutil.rmtree(cache_dir, ignore_errors=True)  # time the caching too
  overrides = {
    "data.dir": data_dir,
    "data.feature_cache_dir": cache_dir,
    **common.parse_set(args.set),
  }
  rows, longest = [], max(args.bits)
  for protocol, bits in ((PAPER, args.bits), (UNSEEN, [longest])):
    shorter = {"train.num_epochs": UNSEEN_EPOCHS} if protocol == UNSEEN else {}
    row, results, finetuned = run("dlbhc", longest, protocol, {**shorter, **overrides})
    rows += [row, classifier_row(protocol, longest, results)]
    print(row, flush=True)
    for method, b in [(m, b) for m in METHODS for b in bits if (m, b) != ("dlbhc", longest)]:
      rows.append(run(method, b, protocol, overrides, backbone_run=finetuned)[0])
      print(rows[-1], flush=True)
  rows.sort(
    key=lambda r: (
      r["protocol"] != PAPER,
      (*METHODS, "classifier").index(r["method"]),
      r["bits"] or 0,
    )
  )
  wall = time.perf_counter() - t0
  config = common.load_config("configs/dlbhc_cifar10.py", VARIANT, overrides)
  sets = "".join(f" --config.{k}={v}" for k, v in overrides.items())
  payload = {
    "benchmark": "python benchmarks/cifar10_paper_protocol.py"
    + "".join(f" --set {s}" for s in args.set)
    + ("" if args.bits == [12, 32, 48] else " --bits " + " ".join(map(str, args.bits))),
    "commands": [
      f"python -m jaxhash.train --config configs/dlbhc_cifar10.py:{VARIANT},bits={max(args.bits)}"
      f"{sets} --workdir FINETUNED [--config.data.protocol={UNSEEN}]",
      *(
        f"python -m jaxhash.train --config configs/{m}_cifar10.py:{HEAD_VARIANT},bits=B{sets}"
        f" --config.model.init_weights=FINETUNED [--config.data.protocol={UNSEEN}]"
        for m in METHODS
      ),
    ],
    "protocols": {
      PAPER: "10,000 test queries; the 50,000 training images train and are the "
      "database; mAP@1000 and @all",
      UNSEEN: "trained on the training images of classes 0-6; 3,000 test queries "
      "of classes 7-9 against their 15,000 training images",
    },
    **common.cached_recipe(config),
    "heads": f"every other row: its head alone on the fine-tuned backbone, frozen, for "
    f"{common.load_config('configs/dlbhc_cifar10.py', HEAD_VARIANT, overrides).train.num_epochs}"
    " epochs",
    "unseen-class fine-tuning epochs": overrides.get("train.num_epochs", UNSEEN_EPOCHS),
    "wall seconds": round(wall, 1),
    "load average before": load_before,
    "load average after": os.getloadavg()[0],
    "machine": common.machine(),
    "rows": rows,
  }
  print(common.write_results(args.name, payload))
  failures = missed(rows) + (
    [f"the table took {wall / 60:.1f} minutes, over {BUDGET_S // 60}"] if wall > BUDGET_S else []
  )
  for failure in failures:
    print(f"MISSED: {failure}", file=sys.stderr)
  return 1 if failures else 0


if __name__ == "__main__":
  sys.exit(main())
