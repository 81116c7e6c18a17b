"""Train and evaluate a hashing model.

  python -m jaxhash.train --config configs/dlbhc_mnist.py [--workdir DIR] [--config.a.b=value]

Runs again with the same command resume from the latest checkpoint; a finished run only evaluates.
A changed setting on an existing run is refused (one run per directory); ``--extend`` allows a
larger ``train.num_steps`` / ``num_epochs``. Several processes (hosts) train one run with
``--coordinator_address HOST:PORT --num_processes N --process_id I`` each, or ``--distributed``
on a cluster (docs/distributed.md).
A relative --config path is looked up in the working directory, then in the repository jaxhash was
installed from, so the command works from any folder.
"""

from __future__ import annotations

import os
import sys

from absl import flags
from ml_collections import config_flags

from jaxhash import cli, distributed
from jaxhash.run import run_results, rundir


def define_flags(argv: list[str]) -> flags.FlagValues:
  """train's flags; config_flags reads the --config.KEY overrides to define from ``argv``."""
  values = cli.new_flags()
  config_flags.DEFINE_config_file(
    "config",
    None,
    "Config file, e.g. configs/dlbhc_mnist.py[:variant].",
    flag_values=values,
    lock_config=True,
    sys_argv=argv,
  )
  flags.DEFINE_string(
    "workdir", None, "Run directory (default: runs/<config name>).", flag_values=values
  )
  flags.DEFINE_bool(
    "extend",
    False,
    "Train an existing run to a larger train.num_steps or num_epochs (the schedule is "
    "recomputed; recorded in run.json).",
    flag_values=values,
  )
  distributed.define_flags(values)
  return values


def find_config_arg(argv: list[str]) -> list[str]:
  """``argv`` with the --config file resolved (see ``config_files.find_config``)."""
  from jaxhash.config_files import find_config

  out = list(argv)
  for i, arg in enumerate(argv):
    if arg == "--config" and i + 1 < len(argv):
      at, value = i + 1, argv[i + 1]
    elif arg.startswith("--config="):
      at, value = i, arg[len("--config=") :]
    else:
      continue
    path, sep, variant = value.partition(":")
    resolved = find_config(path) + sep + variant
    out[at] = resolved if at != i else f"--config={resolved}"
  return out


def config_help(argv: list[str]) -> list[str]:
  """The config keys with their values in the --config file of ``argv``, or every config file
  and the base config's keys without one."""
  from jaxhash import usage as help_text

  lines = [f"  --{'config.KEY':<12} Any config key below, e.g. --config.method.bits=64.", ""]
  try:
    argv = find_config_arg(argv)
    values = define_flags(argv)
    cli.parse(values, argv)
  except cli.USER_ERRORS as error:
    lines += [f"(could not load the config: {cli.error_line(error)})", ""]
    values = None
  if values is None or values.config is None:
    return lines + help_text.repository_configs_text() + [""] + help_text.base_keys_text()
  path = config_flags.get_config_filename(values["config"]).split(":")[0]
  from jaxhash.config_files import load_module

  shown = os.path.relpath(path)
  lines += help_text.config_file_text(path if shown.startswith("..") else shown, load_module(path))
  lines += ["", "Config keys and their values in this config (set any with --config.KEY=VALUE):"]
  return lines + help_text.key_lines(rundir.flatten(values.config), help_text.key_docs())


def run(values: flags.FlagValues) -> None:
  cli.require(values, "config")
  config = values.config
  workdir = values.workdir or os.path.join("runs", config.name or "run")
  distributed.start(distributed.process_spec(values), workdir, debug=values.debug)
  from jaxhash.run.trainer import (
    train_and_evaluate,  # after flag parsing: errors in flags stay quick
  )

  results = train_and_evaluate(config, workdir, extend=values.extend)
  if results is None:  # images without labels: nothing to measure
    print(
      f"\n{workdir} is ready: python -m jaxhash.index --workdir {workdir} --images DIR "
      f"--out F.jhi{distributed.by_whom()}"
    )
    return
  print(
    f"\n{run_results.summary(results)}\n\n{run_results.markdown_table(results)}\n\n"
    f"written to {workdir}/results.json{distributed.by_whom()}"
  )


def main(argv: list[str] | None = None) -> int:
  return cli.main(argv, __doc__, define_flags, run, prepare=find_config_arg, more_help=config_help)


if __name__ == "__main__":
  sys.exit(main())
