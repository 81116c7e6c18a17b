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

import ml_collections
from absl import flags

from jaxhash import cli, distributed, plots, run_results, rundir
from jaxhash.config import DATA_LOCATIONS
from jaxhash.errors import UsageError

_WORKDIR = flags.DEFINE_string("workdir", None, "Run directory written by jaxhash.train.")
_OUT = flags.DEFINE_string(
  "out",
  None,
  "Write results.json/.md and plots/ here instead of into "
  "the run directory (refused when DIR already holds results or is "
  "inside a run directory).",
)
_EVAL = flags.DEFINE_multi_string(
  "set", [], "Evaluation override KEY=VALUE of config.eval, e.g. radius=3."
)
flags.DEFINE_bool("debug", False, "Show tracebacks for errors.")
_PROCESSES = distributed.define_absl_flags()

_PREFIX = "--config."
_overrides: list[str] = []  # --config.SECTION.KEY=VALUE items, taken out of argv before parsing


def _settable(key: str) -> bool:
  """Evaluation settings, and the data's location (for data that moved)."""
  section, _, name = key.partition(".")
  return bool(name) and (section == "eval" or (section == "data" and name in DATA_LOCATIONS))


def take_config_overrides(argv: list[str]) -> list[str]:
  """Moves ``--config.eval.KEY=VALUE`` and ``--config.data.dir=DIR`` items (also ``--config.KEY
  VALUE``) into ``_overrides``."""
  rest, i = [], 0
  _overrides.clear()
  while i < len(argv):
    arg = argv[i]
    if arg.startswith(_PREFIX):
      key, sep, value = arg[len(_PREFIX) :].partition("=")
      if not sep and i + 1 < len(argv):
        i, value = i + 1, argv[i + 1]
      if not _settable(key):
        raise UsageError(
          f"{_PREFIX}{key}: evaluate changes only evaluation settings "
          "(--config.eval.KEY=VALUE) and the data's location "
          "(--config.data.dir=DIR); the other keys are the trained run's, so train "
          "a new run to change them."
        )
      _overrides.append(f"{key}={value}")
    else:
      rest.append(arg)
    i += 1
  return rest


def load_run_config(workdir: str, overrides=()) -> ml_collections.ConfigDict:
  """The run's config with ``KEY=VALUE`` overrides of ``config.eval`` (or ``data.KEY=VALUE`` of
  the data's location), locked."""
  config = rundir.load_config(workdir)
  for item in overrides:
    key, sep, value = item.partition("=")
    key = key if "." in key else f"eval.{key}"
    section, _, name = key.partition(".")
    if not sep or not _settable(key) or name not in config[section]:
      raise UsageError(
        f"evaluation setting {item!r}: use KEY=VALUE with KEY one of {sorted(config.eval)}."
      )
    current = config[section][name]
    try:
      config[section][name] = (
        (value.lower() in ("1", "true", "yes"))
        if isinstance(current, bool)
        else type(current)(value)
      )
    except ValueError:
      raise UsageError(
        f"evaluation setting {item!r}: {value!r} is not a {type(current).__name__} "
        f"like the recorded {key}={current!r}."
      ) from None
  return config.lock()


def usage(argv: list[str]) -> str:
  from jaxhash import usage as help_text

  lines = [
    __doc__.strip(),
    "",
    "Flags:",
    *help_text.flag_lines(
      [
        "workdir",
        "out",
        "set",
        "debug",
        "coordinator_address",
        "num_processes",
        "process_id",
        "distributed",
      ]
    ),
    f"  --{'config.eval.KEY':<12} An evaluation setting below, e.g. --config.eval.radius=3.",
    f"  --{'config.data.dir':<12} Where the run's data is now, when it has moved (the split's "
    "fingerprint checks that it is the same data).",
    "",
  ]
  workdir = next((a.split("=", 1)[1] for a in argv if a.startswith("--workdir=")), None)
  if workdir is None and "--workdir" in argv[:-1]:
    workdir = argv[argv.index("--workdir") + 1]
  docs = help_text.key_docs()
  try:
    values = rundir.flatten(rundir.load_config(workdir)) if workdir else None
    source = f"this run's ({workdir})"
  except (ValueError, FileNotFoundError) as error:
    lines += [f"(could not read the run: {error})", ""]
    values = None
  if values is None:
    from jaxhash import config as config_lib

    values, source = rundir.flatten(config_lib.base_config("dlbhc")), "the defaults (DLBHC)"
  settable = {k: v for k, v in values.items() if k.startswith("eval.")}
  lines += [f"Evaluation settings, {source} values (set with --config.eval.KEY=VALUE):"]
  lines += help_text.key_lines(settable, docs)
  lines += [
    "",
    f"The other config keys, {source} values (fixed by training: train a new run to change them):",
  ]
  lines += help_text.key_lines({k: v for k, v in values.items() if k not in settable}, docs)
  return "\n".join(lines)


def main() -> None:
  if not _WORKDIR.value:
    raise UsageError("--workdir is required: the run directory written by jaxhash.train.")
  out = _OUT.value or _WORKDIR.value
  if _OUT.value:
    rundir.check_outside_runs(out, "--out", own=_WORKDIR.value)
    if os.path.exists(os.path.join(out, "results.json")):
      raise UsageError(f"{out} already holds results.json; pass another --out to keep it.")
  from jaxhash import run_files, trainer
  from jaxhash.data import protocols

  workdir = _WORKDIR.value
  config = load_run_config(workdir, [*_overrides, *_EVAL.value])
  distributed.start(_PROCESSES(), workdir, debug=flags.FLAGS.debug)
  rundir.ensure_free(workdir)
  exp = trainer.build_experiment(config)
  writer = distributed.is_writer()
  with rundir.locked(workdir):
    state = trainer.restore_trained(exp, workdir)
    if writer:
      protocols.save_or_check_split(exp.split, os.path.join(workdir, "splits"), exp.split_header())
    if writer and not os.path.isfile(os.path.join(workdir, run_files.MODEL_FILE)):  # an older run
      run_files.write_model_info(workdir, exp.dataset)
    if trainer.unlabelled(exp, sys.stderr):
      return
    results = trainer.evaluate(exp, state, workdir)
    if writer:
      os.makedirs(out, exist_ok=True)
      run_results.write_results(out, results)
      if exp.config.eval.plots:  # beside the results they draw: out/plots
        plots.write_plots_safely(workdir, results, exp.dataset, out)
  print(
    f"{run_results.summary(results)}\n\n{run_results.markdown_table(results)}\n\n"
    f"written to {out}/results.json{distributed.by_whom()}"
  )


if __name__ == "__main__":
  sys.exit(cli.run(main, usage=usage, prepare=take_config_overrides))
