"""``metrics.jsonl``, the training log: one JSON object per line, ``"step"`` and logged scalars.

This module is the log's one owner. Lines are written whole and flushed, so a crash or a full disk
leaves at most one torn last line; readers drop it with a warning naming the file. A resumed run
trims the log to its checkpoint, since the steps after it are trained and logged again.
"""

from __future__ import annotations

import json
import os
import warnings

from jaxhash.errors import UsageError
from jaxhash.io_utils import atomic_write_text, write_error

FILE = "metrics.jsonl"


def log_path(workdir: str) -> str:
  return os.path.join(workdir, FILE)


def _parse(path: str) -> tuple[list[dict], str | None, bool]:
  """(records, a note when a torn last line was dropped, whether the file ends mid-line).

  Any other line that is not a record raises a ValueError naming the file and line.
  """
  try:
    with open(path, "rb") as f:
      lines = f.read().split(b"\n")
  except FileNotFoundError:
    return [], None, False
  last = lines.pop()  # b"" when the file ends with a newline, else the unfinished last line
  records, note = [], None
  for lineno, line in enumerate(lines + [last], start=1):
    if not line.strip():
      continue
    try:
      record = json.loads(line.decode("utf-8"))
      if not isinstance(record, dict) or type(record.get("step")) is not int:
        raise ValueError('not an object with an integer "step"')
    except ValueError as e:  # includes JSON and UTF-8 decoding errors
      if lineno == len(lines) + 1:
        note = (
          f"dropped the torn last line of {path} (line {lineno}, {len(line)} bytes; left by a "
          "crash or a full disk during an append)"
        )
        break
      raise UsageError(
        f"{path}:{lineno}: not a metrics record ({e}); delete that line (the "
        "log is not needed to resume)."
      ) from None
    records.append(record)
  return records, note, bool(last)


def read_metrics(workdir: str) -> list[dict]:
  """The records of ``workdir/metrics.jsonl`` in order ([] when there is none)."""
  records, note, _ = _parse(log_path(workdir))
  if note:
    warnings.warn(note, RuntimeWarning, stacklevel=2)
  return records


def trim(workdir: str, last_step: int) -> list[str]:
  """Keeps the records up to ``last_step`` (a resumed run's checkpoint); returns notes to show."""
  path = log_path(workdir)
  records, note, unfinished = _parse(path)
  kept = [r for r in records if r["step"] <= last_step]
  if unfinished or len(kept) < len(records):
    atomic_write_text(path, "".join(json.dumps(r) + "\n" for r in kept))
  return [note] if note else []


class MetricsWriter:
  """Appends records to the log; each is one whole line, flushed at once. ``enabled=False``
  writes nothing (the processes of a run other than process 0, which writes the log)."""

  def __init__(self, workdir: str, enabled: bool = True):
    self.path, self._file = log_path(workdir), None
    if not enabled:
      return
    try:
      self._file = open(self.path, "a", encoding="utf-8")
    except OSError as e:
      raise write_error(e, self.path) from e

  def write(self, record: dict) -> None:
    if self._file is None:
      return
    try:
      self._file.write(json.dumps(record) + "\n")
      self._file.flush()
    except OSError as e:
      raise write_error(e, self.path) from e

  def sync(self) -> None:
    """Makes the log durable up to here (called beside each checkpoint)."""
    if self._file is None:
      return
    try:
      os.fsync(self._file.fileno())
    except OSError as e:
      raise write_error(e, self.path) from e

  def close(self) -> None:
    if self._file is None:
      return
    try:
      self._file.close()
    except OSError:  # a failed flush was already raised by write()
      pass
