"""Evaluate the latest checkpoint of a run directory.

  python -m jaxhash.evaluate --workdir runs/dlbhc_mnist_48 [--config.eval.radius=3 ...] [--out DIR]

Reads the run's ``config.json`` and split files, encodes queries and database, and writes
``results.json`` / ``results.md`` and the plots: into the run directory (replacing its results),
or with ``--out DIR`` into DIR and DIR/plots, keeping the run's earlier results. Only evaluation
settings (``config.eval.*``) may be changed, as ``--config.eval.KEY=VALUE`` (or ``--set
KEY=VALUE``), and the data's location when it has moved (``--config.data.dir=DIR``, also
``data.image_root``, ``data.tfds_data_dir``): the split files' fingerprint checks that it holds the
run's images. Several processes share the encoding with ``--coordinator_address HOST:PORT
--num_processes N --process_id I`` each (or ``--distributed``); process 0 writes the results
(docs/distributed.md).
"""

from __future__ import annotations

import os
import sys
from typing import Mapping

import ml_collections
from absl import flags
from ml_collections import config_flags

from jaxhash import cli, distributed, plots
from jaxhash.config import DATA_LOCATIONS
from jaxhash.errors import UsageError
from jaxhash.run import run_results, rundir, workdir_lock


def _settable(key: str) -> bool:
  """Evaluation settings, and the data's location (for data that moved)."""
  section, _, name = key.partition(".")
  return bool(name) and (section == "eval" or (section == "data" and name in DATA_LOCATIONS))


def settable_config() -> ml_collections.ConfigDict:
  """What --config.KEY may set: the base config's ``eval`` and the data's location, typed."""
  from jaxhash import config as config_lib

  base = config_lib.base_config("dlbhc")
  return ml_collections.ConfigDict(
    {"eval": base.eval, "data": {key: base.data[key] for key in DATA_LOCATIONS}}
  )


def define_flags(argv: list[str]) -> flags.FlagValues:
  """evaluate's flags; config_flags reads the --config.KEY overrides to define from ``argv``."""
  values = cli.new_flags()
  flags.DEFINE_string(
    "workdir", None, "Run directory written by jaxhash.train.", flag_values=values
  )
  flags.DEFINE_string(
    "out",
    None,
    "Write results.json/.md and plots/ here instead of into the run directory (refused when DIR "
    "already holds results or is inside a run directory).",
    flag_values=values,
  )
  flags.DEFINE_multi_string(
    "set", [], "Evaluation override KEY=VALUE of config.eval, e.g. radius=3.", flag_values=values
  )
  distributed.define_flags(values)
  try:
    config_flags.DEFINE_config_dict(
      "config",
      settable_config(),
      "Evaluation settings and the data's location (the others are fixed by training).",
      flag_values=values,
      sys_argv=argv,
    )
  except (AttributeError, KeyError) as error:  # ml_collections: a key outside settable_config
    raise UsageError(
      f"unknown evaluation setting {cli.unknown_key(error)}: evaluate changes only evaluation "
      "settings (--config.eval.KEY=VALUE) and the data's location (--config.data.dir=DIR); the "
      "other keys are the trained run's, so train a new run to change them."
    ) from None
  return values


def set_items(items: list[str]) -> dict[str, str]:
  """``{"radius": "3"}`` from ``--set radius=3``."""
  pairs = [item.partition("=") for item in items]
  for key, sep, _ in pairs:
    if not sep:
      raise UsageError(f"--set {key}: use --set KEY=VALUE, e.g. --set radius=3.")
  return {key: value for key, _, value in pairs}


def load_run_config(workdir: str, settings: Mapping[str, object] = {}) -> ml_collections.ConfigDict:
  """The run's config with evaluation settings (``{"radius": 3}``, ``{"eval.radius": "3"}``) or
  the data's location (``{"data.dir": DIR}``) changed, locked. A text value is read as the type
  of the recorded one."""
  config = rundir.load_config(workdir)
  for key, value in settings.items():
    key = key if "." in key else f"eval.{key}"
    section, _, name = key.partition(".")
    if not _settable(key) or name not in config[section]:
      raise UsageError(
        f"evaluation setting {key!r}: use KEY=VALUE with KEY one of {sorted(config.eval)}."
      )
    current = config[section][name]
    if isinstance(value, str) and not isinstance(current, str):
      try:
        value = (
          value.lower() in ("1", "true", "yes")
          if isinstance(current, bool)
          else type(current)(value)
        )
      except ValueError:
        raise UsageError(
          f"evaluation setting {key}={value!r}: {value!r} is not a {type(current).__name__} "
          f"like the recorded {key}={current!r}."
        ) from None
    config[section][name] = value
  return config.lock()


def settings_help(argv: list[str]) -> list[str]:
  """The evaluation settings and the other keys, with the values of the --workdir in ``argv``
  (or the defaults)."""
  from jaxhash import usage as help_text

  lines = [
    f"  --{'config.eval.KEY':<12} An evaluation setting below, e.g. --config.eval.radius=3.",
    f"  --{'config.data.dir':<12} Where the run's data is now, when it has moved (the split's "
    "fingerprint checks that it is the same data).",
    "",
  ]
  docs = help_text.key_docs()
  try:
    values = define_flags(argv)
    cli.parse(values, argv)
    keys = rundir.flatten(rundir.load_config(values.workdir)) if values.workdir else None
    source = f"this run's ({values.workdir})"
  except cli.USER_ERRORS as error:
    lines += [f"(could not read the run: {cli.error_line(error)})", ""]
    keys = None
  if keys is None:
    from jaxhash import config as config_lib

    keys, source = rundir.flatten(config_lib.base_config("dlbhc")), "the defaults (DLBHC)"
  settable = {k: v for k, v in keys.items() if k.startswith("eval.")}
  lines += [f"Evaluation settings, {source} values (set with --config.eval.KEY=VALUE):"]
  lines += help_text.key_lines(settable, docs)
  lines += [
    "",
    f"The other config keys, {source} values (fixed by training: train a new run to change them):",
  ]
  return lines + help_text.key_lines({k: v for k, v in keys.items() if k not in settable}, docs)


def run(values: flags.FlagValues) -> None:
  cli.require(values, "workdir")
  workdir = values.workdir
  out = values.out or workdir
  if values.out:
    rundir.check_outside_runs(out, "--out", own=workdir)
    if os.path.exists(os.path.join(out, "results.json")):
      raise UsageError(f"{out} already holds results.json; pass another --out to keep it.")
  from jaxhash.data import protocols
  from jaxhash.run import experiment, run_evaluation, run_files

  settings = {
    **config_flags.get_override_values(values["config"]),
    **set_items(values["set"].value),
  }
  config = load_run_config(workdir, settings)
  distributed.start(distributed.process_spec(values), workdir, debug=values.debug)
  workdir_lock.ensure_free(workdir)
  exp = experiment.build_experiment(config)
  writer = distributed.is_writer()
  with workdir_lock.locked(workdir):
    state = experiment.restore_trained(exp, workdir)
    if writer:
      protocols.save_or_check_split(exp.split, os.path.join(workdir, "splits"), exp.split_header())
    # A run whose model.json was lost gets it back (jaxhash.load needs it; its error says so).
    if writer and not os.path.isfile(os.path.join(workdir, run_files.MODEL_FILE)):
      run_files.write_model_info(workdir, exp.dataset)
    if run_evaluation.unlabelled(exp, sys.stderr):
      return
    results = run_evaluation.evaluate(exp, state, workdir)
    if writer:
      os.makedirs(out, exist_ok=True)
      run_results.write_results(out, results)
      if exp.config.eval.plots:  # beside the results they draw: out/plots
        plots.write_plots_safely(workdir, results, exp.dataset, out)
  print(
    f"{run_results.summary(results)}\n\n{run_results.markdown_table(results)}\n\n"
    f"written to {out}/results.json{distributed.by_whom()}"
  )


def main(argv: list[str] | None = None) -> int:
  return cli.main(argv, __doc__, define_flags, run, more_help=settings_help)


if __name__ == "__main__":
  sys.exit(main())
