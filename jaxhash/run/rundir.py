"""A run directory holds one run: its identity is checked before anything in it is written.

``config.json`` records the config a run was trained with. A rerun on the same directory is
compared with it key by key, before any file is written:

- ``eval.*`` may differ: evaluation settings are recorded with each evaluation (``results.json``),
  never over ``config.json``.
- Bookkeeping (``name``, ``train.log_every``, ``train.checkpoint_every``,
  ``train.steps_per_call``) and the data's location (``data.dir``, ``data.image_root``, ...: data
  that moved; the split files' fingerprint still checks that it is the same data) may differ; the
  change is written to ``config.json`` and recorded in ``run.json``.
- A longer training (``train.num_steps`` / ``num_epochs`` giving more steps) needs an explicit
  ``extend=True`` (``--extend``): the learning-rate schedule is recomputed for the new total.
- After a non-finite stop (recorded in ``run.json``), a lower ``optim.learning_rate`` or
  ``train.skip_nonfinite=True`` is accepted, and recorded.
- Every other key is identity-bearing, including keys added to the schema later: a change is
  refused with one line listing the differing keys. A key missing from an older ``config.json``
  compares equal to its default in ``jaxhash.config.base_config``.

``run.json`` keeps the run's history: a list of events (created, changed, extended, stopped
non-finite, ...), each with its UTC time.

Training and evaluation hold the run directory's lock while they write in it
(``jaxhash.run.workdir_lock``).
"""

from __future__ import annotations

import dataclasses
import datetime
import json
import os
from typing import Callable

from jaxhash.errors import UsageError
from jaxhash.io_utils import atomic_write_text

CONFIG_FILE = "config.json"
RUN_FILE = "run.json"

FREE_PREFIXES = ("eval.",)
BOOKKEEPING = (
  "name",
  "train.log_every",
  "train.checkpoint_every",
  "train.steps_per_call",
  "data.dir",
  "data.image_root",
  "data.tfds_data_dir",
  "data.feature_cache_dir",
)
LENGTH = ("train.num_steps", "train.num_epochs")
RECOVERY = ("optim.learning_rate", "train.skip_nonfinite")


def read_json(path: str):
  """The parsed JSON file at ``path``; a damaged file is a ValueError naming it."""
  try:
    with open(path, "rb") as f:
      return json.loads(f.read().decode("utf-8"))
  except (UnicodeDecodeError, json.JSONDecodeError) as e:
    raise UsageError(
      f"{path} is not valid JSON ({e}); restore it from a backup or use another --workdir."
    ) from None


def _is_run(directory: str) -> bool:
  return os.path.isfile(os.path.join(directory, CONFIG_FILE)) and (
    os.path.isfile(os.path.join(directory, RUN_FILE))
    or os.path.isdir(os.path.join(directory, "checkpoints"))
  )


def enclosing_run(path: str) -> str | None:
  """The run directory that is ``path`` or holds it at any depth (real path), or None."""
  directory = os.path.realpath(path)
  while not _is_run(directory):
    parent = os.path.dirname(directory)
    if parent == directory:
      return None
    directory = parent
  return directory


def check_outside_runs(path: str, flag: str, own: str | None = None) -> None:
  """Refuses an output ``path`` inside a run directory: a run's files are written only by its own
  commands (train; evaluate, which passes ``own``, its run directory itself)."""
  run = enclosing_run(path)
  if run is not None and not (own and os.path.realpath(path) == os.path.realpath(own)):
    raise UsageError(
      f"{flag} {path} is inside the run directory {run}, which holds only the files "
      "its training and evaluation write; write it outside the run."
    )


def flatten(tree, prefix: str = "") -> dict:
  """``{"a": {"b": 1}}`` -> ``{"a.b": 1}``, in key order; ``tree``: a dict or a ConfigDict."""
  flat = {}
  for key, value in tree.items():
    if hasattr(value, "items"):
      flat.update(flatten(value, f"{prefix}{key}."))
    else:
      flat[f"{prefix}{key}"] = value
  return flat


def _unflatten(flat: dict) -> dict:
  tree: dict = {}
  for dotted, value in flat.items():
    *parents, leaf = dotted.split(".")
    node = tree
    for name in parents:
      node = node.setdefault(name, {})
    node[leaf] = value
  return tree


def _as_json(config) -> dict:
  """A ConfigDict (or dict) as JSON types, so recorded and requested values compare alike."""
  return json.loads(config.to_json() if hasattr(config, "to_json") else json.dumps(config))


def _defaults(method: str) -> dict:
  from jaxhash.config import base_config  # imports the models: only when a run is checked

  return flatten(_as_json(base_config(method)))


def recorded_config(workdir: str) -> dict | None:
  """The flat config of the run in ``workdir`` (defaults filled in), or None for a new directory."""
  path = os.path.join(workdir, CONFIG_FILE)
  if not os.path.exists(path):
    return None
  recorded = read_json(path)
  if (
    not isinstance(recorded, dict)
    or not isinstance(recorded.get("method"), dict)
    or "name" not in recorded["method"]
  ):
    raise UsageError(
      f"{path} is not a jaxhash run config (no method.name); restore it from a "
      "backup or use another --workdir."
    )
  return {**_defaults(recorded["method"]["name"]), **flatten(recorded)}


def load_config(workdir: str):
  """The run's config as an unlocked ConfigDict, with keys newer than the run at their defaults."""
  import ml_collections

  flat = recorded_config(workdir)
  if flat is None:
    raise FileNotFoundError(
      f"{os.path.join(workdir, CONFIG_FILE)} not found; --workdir must be a "
      "directory written by jaxhash.train."
    )
  return ml_collections.ConfigDict(_unflatten(flat))


@dataclasses.dataclass(frozen=True)
class Change:
  key: str
  old: object
  new: object

  def __str__(self) -> str:
    return f"{self.key} {self.old!r} -> {self.new!r}"


@dataclasses.dataclass(frozen=True)
class Plan:
  """What a checked rerun will change in the run directory (see :func:`commit`)."""

  workdir: str
  config: dict  # the JSON config to record: the requested one with the recorded eval.*
  new_run: bool
  changes: tuple[Change, ...]  # accepted changes outside eval.*, recorded in run.json
  old_steps: int | None
  new_steps: int


def _run_events(workdir: str) -> list[dict]:
  path = os.path.join(workdir, RUN_FILE)
  if not os.path.exists(path):
    return []
  run = read_json(path)
  if not isinstance(run, dict) or not isinstance(run.get("history"), list):
    raise UsageError(
      f"{path} has no history list; restore it from a backup or use another --workdir."
    )
  return run["history"]


def last_event(workdir: str) -> dict | None:
  events = _run_events(workdir)
  return events[-1] if events else None


def check(
  workdir: str,
  config,
  steps_of: Callable[[dict], int],
  extend: bool = False,
  has_checkpoints: bool = False,
) -> Plan:
  """Compares ``config`` with the run recorded in ``workdir``: ValueError for a refused change.

  Reads only. ``steps_of(flat_config)`` is the number of training steps a config asks for.
  """
  requested = _as_json(config)
  flat_new = flatten(requested)
  recorded = recorded_config(workdir)
  if recorded is None:
    if has_checkpoints:
      raise UsageError(
        f"{workdir} holds checkpoints but no {CONFIG_FILE}, so its run cannot be "
        "checked against this config; use another --workdir."
      )
    return Plan(workdir, requested, True, (), None, steps_of(flat_new))
  differing = [
    Change(k, recorded[k], v) for k, v in flat_new.items() if k in recorded and recorded[k] != v
  ]
  differing += [Change(k, None, v) for k, v in flat_new.items() if k not in recorded]
  old_steps, new_steps = steps_of(recorded), steps_of(flat_new)
  refused, accepted, notes = [], [], []
  for change in differing:
    if change.key.startswith(FREE_PREFIXES):
      continue
    if change.key in BOOKKEEPING:
      accepted.append(change)
    elif change.key in LENGTH and new_steps == old_steps:
      accepted.append(change)
    elif change.key in LENGTH and new_steps > old_steps and extend:
      accepted.append(change)
    elif change.key in RECOVERY and _recovery_allowed(workdir, change):
      accepted.append(change)
    else:
      refused.append(change)
  if any(c.key in LENGTH for c in refused):
    notes.append(
      f"that is {old_steps} -> {new_steps} training steps"
      + ("; pass --extend to train this run longer" if new_steps > old_steps else "")
    )
  if any(c.key in RECOVERY for c in refused):
    notes.append(
      "a learning rate may only be lowered, or train.skip_nonfinite set, after a non-finite stop"
    )
  if refused:
    raise UsageError(
      f"{workdir} holds a run of another config: {', '.join(map(str, refused))}"
      f"{''.join(f' ({n})' for n in notes)}; a run directory holds one run: use another "
      "--workdir for these settings."
    )
  to_record = _unflatten(
    {
      k: recorded[k] if k.startswith(FREE_PREFIXES) and k in recorded else v
      for k, v in flat_new.items()
    }
  )
  return Plan(workdir, to_record, False, tuple(accepted), old_steps, new_steps)


def _recovery_allowed(workdir: str, change: Change) -> bool:
  """After a non-finite stop: a lower learning rate, or skipping non-finite steps."""
  event = last_event(workdir)
  if event is None or event.get("event") != "nonfinite_stop":
    return False
  if change.key == "train.skip_nonfinite":
    return change.new is True
  return isinstance(change.new, (int, float)) and 0 < change.new < change.old


def record_event(workdir: str, event: str, **fields) -> None:
  """Appends one event to ``run.json`` (written atomically)."""
  entry = {
    "event": event,
    "time": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
    **fields,
  }
  atomic_write_text(
    os.path.join(workdir, RUN_FILE),
    json.dumps({"history": [*_run_events(workdir), entry]}, indent=1) + "\n",
  )


def commit(plan: Plan, step: int) -> None:
  """Writes what a checked plan changes: config.json (new run or accepted changes) and run.json."""
  if not plan.new_run and not plan.changes:
    return
  atomic_write_text(
    os.path.join(plan.workdir, CONFIG_FILE), json.dumps(plan.config, indent=2) + "\n"
  )
  if plan.new_run:
    record_event(plan.workdir, "created", steps=plan.new_steps)
    return
  fields = {"changes": [dataclasses.asdict(c) for c in plan.changes], "at_step": step}
  if plan.new_steps != plan.old_steps:
    record_event(
      plan.workdir, "extended", from_steps=plan.old_steps, to_steps=plan.new_steps, **fields
    )
  else:
    record_event(plan.workdir, "changed", **fields)
