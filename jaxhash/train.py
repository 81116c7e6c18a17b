"""Train and evaluate a hashing model.

  python -m jaxhash.train --config configs/dlbhc_mnist.py [--workdir DIR] [--config.a.b=value]

Runs again with the same command resume from the latest checkpoint; a finished run only evaluates.
A changed setting on an existing run is refused (one run per directory); ``--extend`` allows a
larger ``train.num_steps`` / ``num_epochs``.
"""

from __future__ import annotations

import os
import sys

from absl import flags
from ml_collections import config_flags

from jaxhash import cli, report

_CONFIG = config_flags.DEFINE_config_file("config", None, "Config file, e.g. configs/dlbhc_mnist.py[:variant].",
                                          lock_config=True)
_WORKDIR = flags.DEFINE_string("workdir", None, "Run directory (default: runs/<config name>).")
_EXTEND = flags.DEFINE_bool("extend", False, "Train an existing run to a larger train.num_steps or "
                            "num_epochs (the schedule is recomputed; recorded in run.json).")
flags.DEFINE_bool("debug", False, "Show tracebacks for errors.")


def main() -> None:
  if flags.FLAGS["config"].present == 0:
    raise ValueError("--config is required, e.g. --config configs/dlbhc_mnist.py")
  path = config_flags.get_config_filename(flags.FLAGS["config"]).split(":")[0]
  if not os.path.isfile(path):
    raise FileNotFoundError(f"config file {path} not found; configs live in configs/, e.g. configs/dlbhc_mnist.py")
  config = _CONFIG.value
  from jaxhash.trainer import train_and_evaluate  # after flag parsing: --help stays instant

  workdir = _WORKDIR.value or os.path.join("runs", config.name or "run")
  results = train_and_evaluate(config, workdir, extend=_EXTEND.value)
  print(f"\n{report.summary(results)}\n\n{report.markdown_table(results)}\n\nwritten to {workdir}/results.json")


if __name__ == "__main__":
  sys.exit(cli.run(main))
