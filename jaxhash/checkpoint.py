"""Verified orbax checkpoints of the TrainState: save every N steps, restore the newest intact one.

Orbax writes each step into a temporary directory and renames it when complete, so a run killed
mid-save leaves the previous checkpoint as the latest one. Orbax does not notice altered bytes, so
every save first records a SHA-256 of the state's arrays (names, dtypes, shapes and bytes) in
``checkpoint_digests.json`` beside ``checkpoints/``; a restore recomputes it. A checkpoint that
cannot be read, does not match its digest or holds non-finite values is reported in one line and
the next older one is tried; with none left the restore stops with one line. A state with
non-finite values is never saved.

Orbax reports failures of its background writes through threads and asyncio: its log records and
the "Event loop is closed" noise of writes still in flight are kept off the screen (``VERBOSE``
shows them; the CLIs set it with ``--debug``) and the failure is raised as one ``OSError``.
"""

from __future__ import annotations

import dataclasses
import errno
import hashlib
import json
import logging
import os
import re
import sys

import jax
import numpy as np
import orbax.checkpoint as ocp

from jaxhash.io_utils import atomic_write_text

DIGESTS_FILE = "checkpoint_digests.json"
DAMAGED_DIR = "damaged_checkpoints"
VERBOSE = False  # show orbax's own log records and background tracebacks


class _OrbaxNoise(logging.Filter):
  """Drops orbax's own log records (its failures reach the user as one raised error)."""

  def filter(self, record: logging.LogRecord) -> bool:
    return VERBOSE or f"{os.sep}orbax{os.sep}" not in record.pathname


def _quiet_unraisable(previous):
  def hook(unraisable):
    # tensorstore finishing a write after orbax's event loop closed (the other writes of a failed save)
    if VERBOSE or not (isinstance(unraisable.exc_value, RuntimeError)
                       and str(unraisable.exc_value) == "Event loop is closed"):
      previous(unraisable)
  hook.jaxhash_quiet = True
  return hook


def _install_quiet_hooks() -> None:
  absl_logger = logging.getLogger("absl")
  if not any(isinstance(f, _OrbaxNoise) for f in absl_logger.filters):
    absl_logger.addFilter(_OrbaxNoise())
  if not getattr(sys.unraisablehook, "jaxhash_quiet", False):
    sys.unraisablehook = _quiet_unraisable(sys.unraisablehook)


def state_digest(state) -> tuple[str, bool]:
  """(SHA-256 of every leaf's path, dtype, shape and bytes; whether all floats are finite)."""
  sha, finite = hashlib.sha256(), True
  for path, leaf in jax.tree_util.tree_flatten_with_path(jax.device_get(state))[0]:
    array = np.asarray(leaf)
    sha.update(f"{jax.tree_util.keystr(path)}|{array.dtype.str}|{array.shape}|".encode())
    sha.update(np.ascontiguousarray(array).tobytes())
    if array.dtype.kind in "fc" and not np.isfinite(array).all():
      finite = False
  return sha.hexdigest(), finite


def _first_line(error: BaseException, limit: int = 300) -> str:
  text = (str(error).strip().splitlines() or [type(error).__name__])[0]
  text = text.split(" See full TensorStore details")[0]
  return text if len(text) <= limit else text[:limit] + "..."


def _write_error(step: int, directory: str, error: BaseException) -> OSError:
  """One line for a failed save: the OS error and file when tensorstore names them."""
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
  return OSError(number, f"saving checkpoint {step} in {directory} failed ({reason}); the checkpoints "
                         "saved before it are kept: free disk space or fix permissions, then rerun the "
                         "same command to resume")


def _bad_json_file(step_dir: str) -> str | None:
  """Names the first of orbax's JSON metadata files in a checkpoint that does not parse.

  Orbax's own error for these is a bare ``JSONDecodeError`` that does not say which file it read.
  """
  for root, dirs, files in os.walk(step_dir):
    dirs[:] = sorted(d for d in dirs if d != "d" and not d.startswith("ocdbt"))  # array data
    for name in sorted(files):
      if name.startswith("_") or os.path.basename(root) == "array_metadatas":
        path = os.path.join(root, name)
        try:
          with open(path, "rb") as f:
            json.loads(f.read().decode("utf-8"))
        except (OSError, UnicodeDecodeError, json.JSONDecodeError) as e:
          return f"{path} is not valid JSON ({_first_line(e, 80)})"
  return None


@dataclasses.dataclass(frozen=True)
class Restored:
  step: int
  state: object
  skipped: tuple[str, ...]  # one line per newer checkpoint that was damaged
  verified: bool  # False: no digest was recorded for it (saved before digests existed)


class Checkpointer:
  """Use as ``with Checkpointer(workdir) as ckpt:`` so orbax is closed on every path."""

  def __init__(self, workdir: str, max_to_keep: int = 2, read_only: bool = False):
    _install_quiet_hooks()
    self.workdir = workdir
    self.directory = os.path.abspath(os.path.join(workdir, "checkpoints"))
    self._digests_path = os.path.join(workdir, DIGESTS_FILE)
    self._pending: int | None = None
    self._manager = ocp.CheckpointManager(
        self.directory,
        options=ocp.CheckpointManagerOptions(max_to_keep=max_to_keep, create=not read_only,
                                             read_only=read_only, cleanup_tmp_directories=not read_only),
    )

  def __enter__(self) -> Checkpointer:
    return self

  def __exit__(self, exc_type, *_) -> None:
    try:
      self.close()
    except OSError:
      if exc_type is None:  # else the error already on its way out is the one to show
        raise

  def steps(self) -> list[int]:
    return sorted(self._manager.all_steps())

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
      return {}, f"{self._digests_path} is unreadable ({_first_line(e)}); checkpoints are not verified"
    return {}, f"{self._digests_path} is not a mapping of steps to digests; checkpoints are not verified"

  def _write_digests(self, digests: dict) -> None:
    atomic_write_text(self._digests_path, json.dumps(digests, indent=1, sort_keys=True) + "\n")

  def save(self, step: int, state) -> None:
    """Records the state's digest, then starts an asynchronous orbax save of it."""
    digest, finite = state_digest(state)
    if not finite:
      raise FloatingPointError(f"the state at step {step} holds non-finite values; it is not saved.")
    self.wait()
    keep = {str(s) for s in self.steps()} | {str(step)}
    digests = {k: v for k, v in self._digests()[0].items() if k in keep}
    self._write_digests({**digests, str(step): digest})
    self._pending = step
    try:
      self._manager.save(step, args=ocp.args.StandardSave(state), force=True)
    except Exception as e:  # noqa: BLE001 - orbax and tensorstore raise many kinds
      raise _write_error(step, self.directory, e) from e

  def wait(self) -> None:
    """Waits for the save in flight; its failure is raised as one OSError."""
    step, self._pending = self._pending, None
    try:
      self._manager.wait_until_finished()
    except Exception as e:  # noqa: BLE001
      raise _write_error(step, self.directory, e) from e

  def restore(self, abstract_state, set_aside_damaged: bool = False) -> Restored | None:
    """The newest intact checkpoint shaped like ``abstract_state``; None when there is none at all.

    Damaged newer checkpoints are skipped (and, with ``set_aside_damaged``, moved into
    ``damaged_checkpoints/`` so that training can save those steps again). Raises ValueError when
    every checkpoint is damaged.
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
      raise ValueError(f"no intact checkpoint in {self.directory} ({listed}); restore the files from "
                       "a backup or start again in another --workdir.")
    if set_aside_damaged and problems:
      self._set_aside([s for s, _ in problems], digests)
    return Restored(step, state, tuple(skipped), verified=note is None and str(step) in digests)

  def _check(self, step: int, abstract_state, digests: dict, verify: bool):
    """(None, state) for an intact checkpoint, else (why, None)."""
    try:
      state = self._manager.restore(step, args=ocp.args.StandardRestore(abstract_state))
    except Exception as e:  # noqa: BLE001 - damaged files surface as many kinds of error
      return f"unreadable: {_bad_json_file(os.path.join(self.directory, str(step))) or _first_line(e, 160)}", None
    digest, finite = state_digest(state)
    if not finite:
      return "it holds non-finite values", None
    if verify and str(step) in digests and digests[str(step)] != digest:
      return "its arrays differ from the digest recorded when it was saved", None
    return None, state

  def _set_aside(self, steps: list[int], digests: dict) -> None:
    target_dir = os.path.join(self.workdir, DAMAGED_DIR)
    os.makedirs(target_dir, exist_ok=True)
    for step in steps:
      target, n = os.path.join(target_dir, str(step)), 1
      while os.path.exists(target):
        target, n = os.path.join(target_dir, f"{step}.{n}"), n + 1
      os.replace(os.path.join(self.directory, str(step)), target)
    moved = {str(s) for s in steps}
    self._write_digests({k: v for k, v in digests.items() if k not in moved})
    self._manager.reload()

  def close(self) -> None:
    """Finishes the save in flight (raising its failure) and releases orbax's threads."""
    try:
      self.wait()
    except OSError:
      try:
        self._manager.close()
      except Exception:  # noqa: BLE001 - the same failure again; the first is raised
        pass
      raise
    self._manager.close()
