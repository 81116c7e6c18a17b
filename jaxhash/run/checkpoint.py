"""Verified orbax checkpoints of the TrainState: save every N steps, restore the newest intact one.

Orbax writes each step into a temporary directory and renames it when complete, so a run killed
mid-save leaves the previous checkpoint as the latest one. Orbax does not notice altered bytes, so
every save first records a SHA-256 of the state's arrays (names, dtypes, shapes and bytes) in
``checkpoint_digests.json`` beside ``checkpoints/``; a restore recomputes it. A checkpoint that
cannot be read, does not match its digest or holds non-finite values is reported in one line and
the next older one is tried; with none left the restore stops with one line. A state with
non-finite values is never saved.

With several processes (``jaxhash.distributed``) every process saves and restores its part of the
state through orbax (which has one process write what is shared), and process 0 alone writes the
digests and moves damaged or diverged checkpoints aside.

Orbax reports failures of its background writes through threads and asyncio: its log records,
asyncio's "exception was never retrieved" reports and tensorstore's "Event loop is closed" noise of
reads and writes still in flight are kept off the screen by ``quiet_orbax()``, which the training
loop and the read-only restore call before they start orbax (``VERBOSE`` shows them; the CLIs set
it with ``--debug``); a failed save is raised as one ``OSError``, a failed restore as one line.
"""

from __future__ import annotations

import dataclasses
import errno
import functools
import json
import logging
import os
import re
import sys
import warnings

import jax
import numpy as np
import orbax.checkpoint as ocp

from jaxhash import digests, distributed
from jaxhash.errors import UsageError
from jaxhash.io_utils import atomic_write_text

DIGESTS_FILE = "checkpoint_digests.json"
DAMAGED_DIR = "damaged_checkpoints"
DIVERGED_DIR = "diverged_checkpoints"
VERBOSE = False  # show orbax's own log records and background tracebacks


class _OrbaxNoise(logging.Filter):
  """Drops orbax's own log records (its failures reach the user as one raised error)."""

  def filter(self, record: logging.LogRecord) -> bool:
    return VERBOSE or f"{os.sep}orbax{os.sep}" not in record.pathname


class _AsyncioNoise(logging.Filter):
  """Drops asyncio's "exception was never retrieved" reports of orbax's and tensorstore's reads and
  writes that were left running after a sibling failed (the failure itself is raised)."""

  def filter(self, record: logging.LogRecord) -> bool:
    message = record.getMessage().lower()
    return VERBOSE or not (
      "was never retrieved" in message
      and any(name in message for name in ("orbax", "tensorstore", "ocdbt"))
    )


def _from_orbax(unraisable) -> bool:
  """Whether an unraisable error comes from orbax's or tensorstore's asynchronous I/O."""
  error = unraisable.exc_value
  if isinstance(error, RuntimeError) and str(error) == "Event loop is closed":
    return True  # tensorstore finishing a read or write after orbax's event loop closed
  code = getattr(unraisable.object, "cr_code", None)  # a coroutine abandoned when a sibling failed
  tb = unraisable.exc_traceback
  files = [code.co_filename] if code else []
  while tb is not None:
    files.append(tb.tb_frame.f_code.co_filename)
    tb = tb.tb_next
  return any(f"{os.sep}orbax{os.sep}" in f for f in files)


@functools.cache
def quiet_orbax() -> None:
  """Keeps orbax's background noise off the screen for the whole process: filters on the absl and
  asyncio loggers, a ``sys.unraisablehook`` that drops orbax's, and one warnings filter. The first
  call installs them; later calls do nothing."""
  logging.getLogger("absl").addFilter(_OrbaxNoise())
  logging.getLogger("asyncio").addFilter(_AsyncioNoise())
  previous = sys.unraisablehook

  def hook(unraisable):
    if VERBOSE or not _from_orbax(unraisable):
      previous(unraisable)

  sys.unraisablehook = hook
  if not VERBOSE:  # orbax's array-metadata read, abandoned when a damaged checkpoint fails early
    warnings.filterwarnings(
      "ignore", r"coroutine 'Store\._get_array_metadatas' was never awaited", RuntimeWarning
    )


def state_digest(state) -> tuple[str, bool]:
  """(SHA-256 of every leaf's path, dtype, shape and bytes; whether all floats are finite)."""
  state = jax.device_get(state)
  digest = digests.tree_sha256(state, lambda path, leaf: f"{path}|{leaf.dtype.str}|{leaf.shape}|")
  arrays = [np.asarray(leaf) for leaf in jax.tree.leaves(state)]
  return digest, all(np.isfinite(a).all() for a in arrays if a.dtype.kind in "fc")


def _first_line(error: BaseException, limit: int = 300) -> str:
  text = (str(error).strip().splitlines() or [type(error).__name__])[0]
  text = text.split(" See full TensorStore details")[0]
  return text if len(text) <= limit else text[:limit] + "..."


def _write_error(step: int, directory: str, error: BaseException) -> OSError:
  """One line for a failed save: the OS error and file when tensorstore names them.

  Orbax passes tensorstore's failure on as it is, and tensorstore's errors carry the OS error code
  and the file only in their text (no ``errno`` or ``filename``, and orbax has no API for why a
  save failed), so they are read from it.
  """
  text = str(error)
  code = re.search(r"os_error_code='(\d+)'", text)
  path = re.search(r'Failed (?:writing|to write)[^"]*"([^"]+)"', text)
  if isinstance(error, OSError) and error.errno:
    reason = f"{error.strerror}{f': {error.filename}' if error.filename else ''}"
  elif code:
    reason = f"{os.strerror(int(code.group(1)))}{f' writing {path.group(1)}' if path else ''}"
  else:
    reason = _first_line(error)
  number = int(code.group(1)) if code else getattr(error, "errno", None) or errno.EIO
  return OSError(
    number,
    f"saving checkpoint {step} in {directory} failed ({reason}); the "
    "checkpoints saved before it are kept: free disk space or fix permissions, "
    "then rerun the same command to resume",
  )


def _bad_metadata(step_dir: str) -> str | None:
  """Names the first of orbax's JSON metadata files in a step directory that is not a JSON object.

  Orbax's own error for these is a bare ``JSONDecodeError`` (or a crash of its manager) that does
  not say which file it read.
  """
  for root, dirs, files in os.walk(step_dir):
    dirs[:] = sorted(d for d in dirs if d != "d" and not d.startswith("ocdbt"))  # array data
    for name in sorted(files):
      if name.startswith("_") or os.path.basename(root) == "array_metadatas":
        path = os.path.join(root, name)
        try:
          with open(path, "rb") as f:
            if not isinstance(json.loads(f.read().decode("utf-8")), dict):
              return f"{path} is not a JSON object"
        except (OSError, UnicodeDecodeError, json.JSONDecodeError) as e:
          return f"{path} is not valid JSON ({_first_line(e, 80)})"
  return None


class IncompatibleCheckpoint(UsageError):
  """An intact checkpoint whose arrays do not fit the model being restored (another config or
  jaxhash version): not damage, so it is never set aside."""


def _shapes(tree) -> dict[str, tuple]:
  """Leaf path -> shape, with dict keys, attributes and indices written alike (orbax records
  namedtuples and dataclasses as dicts)."""

  def name(key):
    for attr in ("key", "name", "idx"):
      if hasattr(key, attr):
        return str(getattr(key, attr))
    return str(key)

  return {
    "/".join(map(name, path)): tuple(leaf.shape)
    for path, leaf in jax.tree_util.tree_flatten_with_path(tree)[0]
  }


def _restore_target(saved: dict, abstract_state, where: str):
  """What a checkpoint whose recorded tree is ``saved`` is restored into: ``abstract_state``, a
  dataclass's fields as a dict (as orbax records it). A checkpoint whose arrays differ raises
  ``IncompatibleCheckpoint`` naming the first differing array.
  """
  target = abstract_state
  if dataclasses.is_dataclass(abstract_state) and isinstance(saved, dict):
    target = {f.name: getattr(abstract_state, f.name) for f in dataclasses.fields(abstract_state)}
  want, have = _shapes(target), _shapes(saved)
  if want != have:
    differing = sorted(set(want) ^ set(have)) or sorted(k for k in want if want[k] != have[k])
    key = differing[0]
    detail = (
      f"{key}: saved {have[key] if key in have else 'absent'}, "
      f"expected {want[key] if key in want else 'absent'}"
    )
    raise IncompatibleCheckpoint(
      f"{where} was saved for another model ({len(differing)} arrays differ, e.g. {detail}); "
      "evaluate it with the config it was trained with, or train in another --workdir."
    )
  return target


@dataclasses.dataclass(frozen=True)
class Restored:
  step: int
  state: object
  skipped: tuple[str, ...]  # one line per newer checkpoint that was damaged
  verified: bool  # False: no digest was recorded for it (saved before digests existed)


class Checkpointer:
  """Use as ``with Checkpointer(workdir) as ckpt:`` so orbax is closed on every path.

  Restores read one step directory at a time (orbax's ``CheckpointManager`` reads every step's
  metadata when it starts and fails on one damaged file), so the manager, which saves and keeps
  the newest ``max_to_keep``, starts only at the first save, after damaged steps are set aside.
  """

  def __init__(self, workdir: str, max_to_keep: int = 2, read_only: bool = False):
    self.workdir = workdir
    self.directory = os.path.abspath(os.path.join(workdir, "checkpoints"))
    self._digests_path = os.path.join(workdir, DIGESTS_FILE)
    self._max_to_keep, self._read_only = max_to_keep, read_only
    self._manager = None
    self._pending: int | None = None

  def __enter__(self) -> Checkpointer:
    return self

  def __exit__(self, exc_type, *_) -> None:
    try:
      self.close()
    except OSError:
      if exc_type is None:  # else the error already on its way out is the one to show
        raise

  def steps(self) -> list[int]:
    """The saved steps: those orbax finalized (renamed from their temporary directory)."""
    return sorted(ocp.step.checkpoint_steps(self.directory))

  def _step_dir(self, step: int) -> str:
    return os.path.join(self.directory, str(step))

  def _digests(self) -> tuple[dict, str | None]:
    """(step -> SHA-256, a note when the digest file cannot be read)."""
    if not os.path.exists(self._digests_path):
      return {}, None
    try:
      with open(self._digests_path, "rb") as f:
        digests = json.loads(f.read().decode("utf-8"))
      if isinstance(digests, dict):
        return digests, None
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as e:
      return {}, (
        f"{self._digests_path} is unreadable ({_first_line(e)}); checkpoints are not verified"
      )
    return {}, (
      f"{self._digests_path} is not a mapping of steps to digests; checkpoints are not verified"
    )

  def _write_digests(self, digests: dict) -> None:
    if distributed.is_writer():
      atomic_write_text(self._digests_path, json.dumps(digests, indent=1, sort_keys=True) + "\n")

  def _saver(self) -> ocp.CheckpointManager:
    if self._read_only:
      raise RuntimeError("this Checkpointer is read-only")
    if self._manager is None:
      self._manager = ocp.CheckpointManager(
        self.directory,
        options=ocp.CheckpointManagerOptions(
          max_to_keep=self._max_to_keep, create=True, cleanup_tmp_directories=True
        ),
      )
    return self._manager

  def save(self, step: int, state) -> None:
    """Records the state's digest, then starts an asynchronous orbax save of it."""
    digest, finite = state_digest(state)
    if not finite:
      raise FloatingPointError(
        f"the state at step {step} holds non-finite values; it is not saved."
      )
    self.wait()
    keep = {str(s) for s in self.steps()} | {str(step)}
    digests = {k: v for k, v in self._digests()[0].items() if k in keep}
    self._write_digests({**digests, str(step): digest})
    self._pending = step
    try:
      self._saver().save(step, args=ocp.args.StandardSave(state), force=True)
    except Exception as e:  # noqa: BLE001 - orbax and tensorstore raise many kinds
      raise _write_error(step, self.directory, e) from e

  def wait(self) -> None:
    """Waits for the save in flight; its failure is raised as one OSError."""
    step, self._pending = self._pending, None
    if self._manager is None:
      return
    try:
      self._manager.wait_until_finished()
    except Exception as e:  # noqa: BLE001
      raise _write_error(step, self.directory, e) from e

  def restore(self, abstract_state, set_aside_damaged: bool = False) -> Restored | None:
    """The newest intact checkpoint shaped like ``abstract_state``; None when there is none at all.

    Damaged newer checkpoints are skipped (and, with ``set_aside_damaged``, moved into
    ``damaged_checkpoints/`` with older ones whose metadata is damaged, so that training can
    save again). Raises ``UsageError`` when every checkpoint is damaged.
    """
    steps = self.steps()[::-1]
    if not steps:
      return None
    digests, note = self._digests()
    skipped = [note] if note else []
    problems = []
    for step in steps:
      why, state = self._check(step, abstract_state, digests, verify=note is None)
      if why is None:
        break
      problems.append((step, why))
      skipped.append(f"checkpoint {step} in {self.directory} is damaged ({why})")
    else:
      listed = "; ".join(f"{step}: {why}" for step, why in problems)
      raise UsageError(
        f"no intact checkpoint in {self.directory} ({listed}); restore the files "
        "from a backup or start again in another --workdir."
      )
    if set_aside_damaged:
      older = {s: _bad_metadata(self._step_dir(s)) for s in steps if s < step}
      older = {s: why for s, why in older.items() if why}
      skipped += [
        f"checkpoint {s} in {self.directory} is damaged ({why})" for s, why in older.items()
      ]
      self._set_aside([s for s, _ in problems] + list(older), digests)
      distributed.barrier("checkpoints-set-aside")
    return Restored(step, state, tuple(skipped), verified=note is None and str(step) in digests)

  def _check(self, step: int, abstract_state, digests: dict, verify: bool):
    """(None, state) for an intact checkpoint, else (why, None)."""
    bad = _bad_metadata(self._step_dir(step))
    if bad:
      return f"unreadable: {bad}", None
    path = os.path.join(self._step_dir(step), "default")
    reader = ocp.StandardCheckpointer()
    try:
      try:
        saved = reader.metadata(path).item_metadata.tree
      except Exception as e:  # noqa: BLE001 - damaged files surface as many kinds of error
        return f"unreadable: {_first_line(e, 160)}", None
      target = _restore_target(saved, abstract_state, f"checkpoint {step} in {self.directory}")
      try:
        state = reader.restore(path, target)
      except Exception as e:  # noqa: BLE001
        return f"unreadable: {_first_line(e, 160)}", None
    finally:
      reader.close()
    if target is not abstract_state:
      state = dataclasses.replace(abstract_state, **state)
    digest, finite = state_digest(state)
    if not finite:
      return "it holds non-finite values", None
    if verify and str(step) in digests and digests[str(step)] != digest:
      return "its arrays differ from the digest recorded when it was saved", None
    return None, state

  def set_aside_diverged(self, steps: list[int]) -> None:
    """Moves intact checkpoints of a diverged state into ``diverged_checkpoints/`` (kept, not
    deleted), so that a rerun resumes from an older one or starts again."""
    self.wait()
    self._set_aside(steps, self._digests()[0], DIVERGED_DIR)

  def _set_aside(self, steps: list[int], digests: dict, folder: str = DAMAGED_DIR) -> None:
    if not steps or not distributed.is_writer():
      return
    target_dir = os.path.join(self.workdir, folder)
    os.makedirs(target_dir, exist_ok=True)
    for step in steps:
      target, n = os.path.join(target_dir, str(step)), 1
      while os.path.exists(target):
        target, n = os.path.join(target_dir, f"{step}.{n}"), n + 1
      os.replace(self._step_dir(step), target)
    moved = {str(s) for s in steps}
    self._write_digests({k: v for k, v in digests.items() if k not in moved})
    if self._manager is not None:
      self._manager.reload()

  def close(self) -> None:
    """Finishes the save in flight (raising its failure) and releases orbax's threads."""
    if self._manager is None:
      return
    try:
      self.wait()
    except OSError:
      try:
        self._manager.close()
      except Exception:  # noqa: BLE001 - the same failure again; the first is raised
        pass
      raise
    self._manager.close()
