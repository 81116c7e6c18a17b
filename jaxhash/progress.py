"""Progress lines: the train loop's bar (step, loss, speed, ETA) and long stages (decoding,
encoding, ranking).

On a terminal a line redraws in place; elsewhere (logs, notebooks, CI) lines are printed one per
update (the train loop) or at most every ``every`` seconds (stages), each state once. The library
calls that a user makes directly (``Hasher.encode``, ``build_index``) pass :data:`SILENT` unless
asked for progress. In a run of several processes only process 0 shows them (:data:`MUTED` in the
others), so one terminal shows one progress line.
"""

from __future__ import annotations

import sys
import time

MUTED = False  # set by jaxhash.distributed in processes other than 0


def _duration(seconds: float) -> str:
  seconds = int(max(seconds, 0))
  return (
    f"{seconds // 3600}:{seconds % 3600 // 60:02d}:{seconds % 60:02d}"
    if seconds >= 3600
    else f"{seconds // 60}:{seconds % 60:02d}"
  )


def _bar(fraction: float, width: int) -> str:
  filled = int(width * min(max(fraction, 0.0), 1.0))
  return "#" * filled + "." * (width - filled)


class _Silent:
  """A stream that drops what is written: progress nobody asked for."""

  def write(self, text: str) -> int:
    return len(text)

  def flush(self) -> None:
    pass


SILENT = _Silent()


def _is_terminal(stream) -> bool:
  return hasattr(stream, "isatty") and stream.isatty()


class Progress:
  def __init__(
    self, total_steps: int, start_step: int, batch_size: int, stream=None, width: int = 24
  ):
    self.total, self.start, self.batch_size, self.width = total_steps, start_step, batch_size, width
    self.stream = stream or sys.stderr
    self.inline = _is_terminal(self.stream) and not MUTED
    self.t0 = time.perf_counter()

  def update(self, step: int, values: dict) -> str:
    elapsed = time.perf_counter() - self.t0
    done = step - self.start
    rate = done / elapsed if elapsed > 0 else 0.0
    eta = (self.total - step) / rate if rate > 0 else 0.0
    bar = _bar(step / max(self.total, 1), self.width)
    shown = " ".join(f"{k} {v:.4g}" for k, v in values.items())
    line = (
      f"step {step}/{self.total} [{bar}] {shown} | {rate * self.batch_size:.0f} img/s "
      f"| {_duration(elapsed)} < {_duration(eta)}"
    )
    if not MUTED:
      self.stream.write(("\r" + line + "\033[K") if self.inline else line + "\n")
      self.stream.flush()
    return line

  def close(self) -> None:
    if self.inline:
      self.stream.write("\n")
      self.stream.flush()


class Stage:
  """Progress of one long stage over ``total`` items, e.g. ``Stage("encoding", 60000, "images")``.

  Silent when the stage ends within ``delay`` seconds, so quick calls print nothing; after that a
  line ``encoding 12000/60000 images [####....] 1234 images/s | 0:10 < 0:40``, and a last one when
  the stage closes. Use as a context manager, calling ``advance(n)`` as items finish.
  """

  def __init__(
    self,
    label: str,
    total: int,
    unit: str = "images",
    stream=None,
    delay: float = 2.0,
    every: float = 10.0,
    width: int = 24,
  ):
    self.label, self.total, self.unit, self.width = label, total, unit, width
    self.stream = stream or sys.stderr
    self.inline = _is_terminal(self.stream)
    self.delay, self.every = delay, (0.2 if self.inline else every)
    self.done, self.shown, self._written = 0, False, -1
    self.t0 = self._last = time.perf_counter()

  def __enter__(self) -> Stage:
    return self

  def __exit__(self, *exc) -> None:
    self.close()

  def line(self) -> str:
    elapsed = time.perf_counter() - self.t0
    rate = self.done / elapsed if elapsed > 0 else 0.0
    eta = (self.total - self.done) / rate if rate > 0 else 0.0
    return (
      f"{self.label} {self.done}/{self.total} {self.unit} "
      f"[{_bar(self.done / max(self.total, 1), self.width)}] {rate:.0f} {self.unit}/s | "
      f"{_duration(elapsed)} < {_duration(eta)}"
    )

  def advance(self, n: int = 1) -> None:
    self.done += n
    now = time.perf_counter()
    due = now - self.t0 >= self.delay and (not self.shown or now - self._last >= self.every)
    if due and not MUTED:
      self._write()
      self._last = now

  def close(self) -> None:
    if self.shown:
      if self._written != self.done:  # the last line is not already on the stream
        self._write()
      if self.inline:
        self.stream.write("\n")
        self.stream.flush()
      self.shown = False

  def _write(self) -> None:
    line = self.line()
    self.stream.write(("\r" + line + "\033[K") if self.inline else line + "\n")
    self.stream.flush()
    self.shown, self._written = True, self.done
