"""A run's results: results.json and results.md written and read, and the names that every table
and plot labels a run with. ``jaxhash.report`` (tables across runs) and ``jaxhash.plots`` both build
on it, so neither needs the other.
"""

from __future__ import annotations

import json
import os

from jaxhash.errors import UsageError
from jaxhash.io_utils import atomic_write_text

MODES = ("codes", "rerank")
METHODS = {
  "dlbhc": "DLBHC",
  "hashnet": "HashNet",
  "lsh": "LSH",
  "sh": "SH",
  "itq": "ITQ",
  "itq_cca": "ITQ-CCA",
  "sdh": "SDH",
}
DATASETS = {
  "mnist10k": "MNIST t10k",
  "mnist": "MNIST",
  "mnist-unseen": "MNIST",
  "cifar10": "CIFAR-10",
  "cifar10-2": "CIFAR-10",
  "cifar10-unseen": "CIFAR-10",
  "imagenet100": "ImageNet-100",
  "nuswide": "NUS-WIDE",
  "coco": "MS-COCO",
}


def markdown_table(results: dict) -> str:
  """One column per mode, and the classifier baseline's when it was evaluated."""
  modes = [m for m in (*MODES, "classifier") if m in results]
  names = list(results[modes[0]])
  for mode in modes[1:]:
    names += [k for k in results[mode] if k not in names]
  lines = [f"| metric | {' | '.join(modes)} |", f"|---|{'---|' * len(modes)}"]
  for name in names:
    cells = [number(results[m].get(name)) for m in modes]
    lines.append(f"| {name} | {' | '.join(cells)} |")
  return "\n".join(lines)


def summary(results: dict) -> str:
  seconds = ", ".join(f"{k} {v:.1f} s" for k, v in results["seconds"].items())
  return (
    f"{results['method']} · {results['bits']} bits · protocol {results['protocol']} · "
    f"{results['num_queries']} queries · {results['num_database']} database · "
    f"step {results['step']} · {seconds}"
  )


def write_results(workdir: str, results: dict) -> None:
  atomic_write_text(os.path.join(workdir, "results.json"), json.dumps(results, indent=2) + "\n")
  text = f"# Results\n\n{summary(results)}\n\n{markdown_table(results)}\n"
  atomic_write_text(os.path.join(workdir, "results.md"), text)


def title(results: dict) -> str:
  """What every plot is labelled with, e.g. "DLBHC · MNIST t10k · 48 bits · protocol mnist10k"."""
  method, protocol = results["method"], results["protocol"]
  return (
    f"{METHODS.get(method, method)} · {DATASETS.get(protocol, protocol)} · "
    f"{results['bits']} bits · protocol {protocol}"
  )


def run_label(results: dict) -> str:
  """Which run a row or a curve is: its directory (as given to the report), backbone and step."""
  parts = [
    results.get("run"),
    results.get("backbone"),
    f"step {results['step']}" if "step" in results else None,
  ]
  return " · ".join(str(p) for p in parts if p)


def load_results(path: str) -> dict:
  """The results.json of run directory ``path`` (or ``path`` itself when it is that file)."""
  file = os.path.join(path, "results.json") if os.path.isdir(path) else path
  if not os.path.isfile(file):
    raise FileNotFoundError(
      f"{file} not found; pass run directories that jaxhash.train wrote "
      "(python -m jaxhash.evaluate --workdir DIR writes it again)."
    )
  with open(file) as f:
    try:
      results = json.load(f)
    except json.JSONDecodeError as e:
      raise UsageError(f"{file} is not valid JSON ({e}); evaluate the run again.") from None
  missing = [k for k in ("method", "bits", "protocol", "codes") if k not in results]
  if not isinstance(results, dict) or missing:
    raise UsageError(f"{file} lacks {missing}; it is not a jaxhash results.json.")
  return results


def radius_key(metrics: dict) -> str | None:
  """The ``precision@radius{r}`` key of a results mode (its r is the evaluation's radius)."""
  return next((k for k in metrics if k.startswith("precision@radius")), None)


def number(value, form: str = ".4f") -> str:
  """``value`` formatted; an int (a count: bits) as it is; None as an empty cell."""
  if value is None:
    return ""
  return str(value) if isinstance(value, int) else format(value, form)
