"""A one-line progress bar for the train loop: step, loss, accuracy, speed and ETA.

On a terminal it redraws in place; elsewhere (logs, notebooks, CI) it prints one line per update.
"""

from __future__ import annotations

import sys
import time


def _duration(seconds: float) -> str:
  seconds = int(max(seconds, 0))
  return f"{seconds // 3600}:{seconds % 3600 // 60:02d}:{seconds % 60:02d}" if seconds >= 3600 \
      else f"{seconds // 60}:{seconds % 60:02d}"


class Progress:
  def __init__(self, total_steps: int, start_step: int, batch_size: int, stream=None, width: int = 24):
    self.total, self.start, self.batch_size, self.width = total_steps, start_step, batch_size, width
    self.stream = stream or sys.stderr
    self.inline = hasattr(self.stream, "isatty") and self.stream.isatty()
    self.t0 = time.perf_counter()

  def update(self, step: int, values: dict) -> str:
    elapsed = time.perf_counter() - self.t0
    done = step - self.start
    rate = done / elapsed if elapsed > 0 else 0.0
    eta = (self.total - step) / rate if rate > 0 else 0.0
    filled = int(self.width * step / max(self.total, 1))
    bar = "#" * filled + "." * (self.width - filled)
    shown = " ".join(f"{k} {v:.4g}" for k, v in values.items())
    line = (f"step {step}/{self.total} [{bar}] {shown} | {rate * self.batch_size:.0f} img/s "
            f"| {_duration(elapsed)} < {_duration(eta)}")
    self.stream.write(("\r" + line + "\033[K") if self.inline else line + "\n")
    self.stream.flush()
    return line

  def close(self) -> None:
    if self.inline:
      self.stream.write("\n")
      self.stream.flush()
