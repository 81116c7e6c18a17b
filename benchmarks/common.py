"""What the benchmark scripts share: configs as ``--config`` loads them, timed runs, results files.

Scripts run from the repository root (``python benchmarks/<name>.py``); relative paths in configs
and overrides (``data/mnist``) resolve against it, as they do for ``jaxhash.train``. The scripts'
data defaults live under ``data/`` of the repository (a folder or a link to one): ``data/mnist``
holds the four MNIST IDX files, ``data/cifar10-jpg.tar.gz`` the CIFAR-10 JPEG tarball.

    config = load_config("configs/dlbhc_mnist.py", "full", {"data.dir": "data/mnist"})
    run = timed_run(config, "runs/bench/dlbhc_mnist_full")
    row = {"map@all": run["codes"]["map@all"], "seconds": run["wall_seconds"]}
    print(write_results("dlbhc_mnist_full", {"machine": machine(), "runs": [row]}))
"""

from __future__ import annotations

import json
import os
import platform
import sys
import time
from typing import Any, Mapping

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
RESULTS_DIR = os.path.join(ROOT, "benchmarks", "results")
if ROOT not in sys.path:  # `python benchmarks/x.py` puts benchmarks/, not the root, on sys.path
  sys.path.insert(0, ROOT)

from jaxhash import config_files, environment  # noqa: E402
from jaxhash.io_utils import atomic_write_text  # noqa: E402


def load_config(path: str, arg: str | None = None, overrides: Mapping[str, Any] | None = None):
  """``jaxhash.load_config`` (the loader of ``--config path:arg --config.a.b=v``) of the config
  file at ``path``, relative to the repository root, with dotted ``overrides`` ({"a.b": v})."""
  path = path if os.path.isabs(path) else os.path.join(ROOT, path)
  return config_files.load_config(path + (f":{arg}" if arg else ""), overrides)


def timed_run(config, workdir: str) -> dict:
  """``train_and_evaluate`` into ``workdir`` (relative to the root); results plus ``wall_seconds``.

  A workdir that already holds a finished run is only evaluated, so its ``wall_seconds`` is not a
  training time: pass a fresh workdir to time training.
  """
  from jaxhash.run.trainer import train_and_evaluate

  workdir = workdir if os.path.isabs(workdir) else os.path.join(ROOT, workdir)
  t0 = time.perf_counter()
  results = train_and_evaluate(config, workdir)
  return {
    **results,
    "wall_seconds": time.perf_counter() - t0,
    "workdir": os.path.relpath(workdir, ROOT),
  }


def cached_recipe(config) -> dict:
  """How a ``presets.pretrained_cached`` run was made, for a results file: backbone, input,
  trained part and schedule."""
  return {
    "backbone": f"{config.model.backbone} ({config.model.init_weights} ImageNet weights)",
    "input size": f"{config.data.image_size}x{config.data.image_size}",
    "trained": f"the last {config.model.trainable} stages + the method's head; batch norm "
    f"{'frozen' if config.model.freeze_batch_norm else 'trained'}",
    "epochs": config.train.num_epochs,
    "batch size": config.train.batch_size,
  }


def parse_set(items: list[str]) -> dict:
  """A script's ``--set KEY=VALUE`` overrides: ``["a.b=1", "c=x"]`` -> ``{"a.b": 1, "c": "x"}``
  (ints, then floats, else strings)."""
  values = {}
  for item in items:
    key, sep, value = item.partition("=")
    if not sep:
      raise ValueError(f"--set {item!r}: use KEY=VALUE, e.g. train.num_epochs=1.")
    for kind in (int, float, str):
      try:
        values[key] = kind(value)
        break
      except ValueError:
        continue
  return values


def read_metrics(workdir: str) -> list[dict]:
  """The ``metrics.jsonl`` records of a run (loss, β, learning rate, ... by step)."""
  workdir = workdir if os.path.isabs(workdir) else os.path.join(ROOT, workdir)
  with open(os.path.join(workdir, "metrics.jsonl")) as f:
    return [json.loads(line) for line in f if line.strip()]


def _cpu() -> dict:
  """The CPU model and the vector extensions speed depends on (AVX2 vs AVX-512 differ a lot)."""
  model, flags = platform.processor(), set()
  if os.path.exists("/proc/cpuinfo"):
    with open("/proc/cpuinfo") as f:
      for line in f:
        key, _, value = line.partition(":")
        if key.strip() == "model name" and not model:
          model = value.strip()
        elif key.strip() == "flags" and not flags:
          flags = set(value.split())
  vector = sorted(
    f for f in flags if f in ("avx", "avx2", "fma", "popcnt") or f.startswith("avx512")
  )
  return {"cpu": model, "vector_extensions": vector, "cores_available": environment.cpu_cores()}


def _commit() -> str:
  """The checked-out commit (with ``+dirty`` when the work tree differs outside the results
  files, which do not change what is measured), or "" outside git."""
  import subprocess

  try:
    head = subprocess.run(
      ["git", "rev-parse", "HEAD"], cwd=ROOT, capture_output=True, text=True, check=True
    ).stdout.strip()
    dirty = subprocess.run(
      ["git", "status", "--porcelain", "--untracked-files=no", "--", ".", ":!benchmarks/results"],
      cwd=ROOT,
      capture_output=True,
      text=True,
      check=True,
    ).stdout.strip()
  except (OSError, subprocess.CalledProcessError):
    return ""
  return head + ("+dirty" if dirty else "")


def _versions() -> dict:
  """Versions of the packages a figure can depend on; absent packages are left out."""
  from importlib import metadata

  versions = {"python": platform.python_version()}
  for name in ("jax", "jaxlib", "flax", "optax", "numpy", "faiss-cpu", "torch"):
    try:
      versions[name] = metadata.version(name)
    except metadata.PackageNotFoundError:
      pass
  return versions


def machine() -> dict:
  """Where and from what a figure was measured: commit, CPU, load, versions, JAX backend, and
  XLA_FLAGS when set (``--xla_cpu_max_isa=AVX2`` measures the AVX2 code on an AVX-512 CPU)."""
  import jax

  xla_flags = os.environ.get("XLA_FLAGS", "")
  return {
    "commit": _commit(),
    **_cpu(),
    **({"xla_flags": xla_flags} if xla_flags else {}),
    "load_average_1min": os.getloadavg()[0],
    "platform": platform.platform(),
    "versions": _versions(),
    "backend": jax.default_backend(),
    "devices": [d.device_kind for d in jax.devices()],
  }


def _cell(value) -> str:
  if isinstance(value, float):
    return f"{value:.4f}" if abs(value) < 10 else f"{value:.1f}"
  return str(value)


def markdown(name: str, payload: Mapping[str, Any]) -> str:
  """``# name``, then scalar entries as a list and each list of flat dicts as a table."""
  lines, tables = [f"# {name}", ""], []
  for key, value in payload.items():
    if isinstance(value, list) and value and all(isinstance(row, Mapping) for row in value):
      tables.append((key, value))
    elif isinstance(value, Mapping):
      lines.append(f"- {key}: " + ", ".join(f"{k} {_cell(v)}" for k, v in value.items()))
    else:
      lines.append(f"- {key}: {_cell(value)}")
  for key, rows in tables:
    columns = list(dict.fromkeys(k for row in rows for k in row))
    lines += ["", f"## {key}", "", f"| {' | '.join(columns)} |", f"|{'---|' * len(columns)}"]
    lines += [f"| {' | '.join(_cell(row.get(c, '')) for c in columns)} |" for row in rows]
  return "\n".join(lines) + "\n"


def write_results(name: str, payload: Mapping[str, Any], text: str | None = None) -> str:
  """Writes ``benchmarks/results/<name>.json`` and ``.md`` atomically; returns the markdown:
  ``text``, or by default the payload laid out by ``markdown``."""
  text = markdown(name, payload) if text is None else text
  atomic_write_text(os.path.join(RESULTS_DIR, f"{name}.json"), json.dumps(payload, indent=2) + "\n")
  atomic_write_text(os.path.join(RESULTS_DIR, f"{name}.md"), text)
  return text
