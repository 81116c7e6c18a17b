"""Evaluate the latest checkpoint of a run directory.

  python -m jaxhash.evaluate --workdir runs/dlbhc_mnist_48 [--config.eval.radius=3 ...]

Reads the run's ``config.json`` and split files, encodes queries and database, and rewrites
``results.json`` / ``results.md``. Evaluation settings (``config.eval.*``) may be overridden.
"""

from __future__ import annotations

import os
import sys

import ml_collections
from absl import flags

from jaxhash import cli, plots, report, rundir

_WORKDIR = flags.DEFINE_string("workdir", None, "Run directory written by jaxhash.train.")
_EVAL = flags.DEFINE_multi_string("set", [], "Evaluation override KEY=VALUE of config.eval, e.g. radius=3.")
flags.DEFINE_bool("debug", False, "Show tracebacks for errors.")


def load_run_config(workdir: str, overrides=()) -> ml_collections.ConfigDict:
  config = rundir.load_config(workdir)
  for item in overrides:
    key, sep, value = item.partition("=")
    if not sep or key not in config.eval:
      raise ValueError(f"--set {item!r}: use KEY=VALUE with KEY one of {sorted(config.eval)}.")
    current = config.eval[key]
    try:
      config.eval[key] = (value.lower() in ("1", "true", "yes")) if isinstance(current, bool) else type(current)(value)
    except ValueError:
      raise ValueError(f"--set {item!r}: {value!r} is not a {type(current).__name__} like the recorded "
                       f"{key}={current!r}.") from None
  return config.lock()


def main() -> None:
  if not _WORKDIR.value:
    raise ValueError("--workdir is required: the run directory written by jaxhash.train.")
  from jaxhash import trainer
  from jaxhash.data import protocols

  workdir = _WORKDIR.value
  config = load_run_config(workdir, _EVAL.value)
  rundir.ensure_free(workdir)
  exp = trainer.build_experiment(config)
  with rundir.locked(workdir):
    state = trainer.restore_trained(exp, workdir)
    protocols.save_or_check_split(exp.split, os.path.join(workdir, "splits"), exp.split_header())
    results = trainer.evaluate(exp, state.params, int(state.step))
    report.write_results(workdir, results)
    plots.write_plots_safely(workdir, results, exp.dataset)
  print(f"{report.summary(results)}\n\n{report.markdown_table(results)}\n\nwritten to {workdir}/results.json")


if __name__ == "__main__":
  sys.exit(cli.run(main))
