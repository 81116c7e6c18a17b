"""What ``GET /stats`` reports: requests served by status, search latency percentiles, batches."""

from __future__ import annotations

import collections
import time

import numpy as np


class Stats:
  def __init__(self, window: int = 10_000):
    self.started = time.monotonic()
    self.requests: collections.Counter = collections.Counter()
    self._latencies = collections.deque(maxlen=window)  # the last `window` searches, in ms
    self.batches = self.batched = 0

  def record_search(self, milliseconds: float) -> None:
    self._latencies.append(milliseconds)

  def record_batch(self, size: int) -> None:
    self.batches += 1
    self.batched += size

  def snapshot(self) -> dict:
    latencies = np.array(self._latencies, np.float64)
    percentiles = (
      {f"p{q}": round(float(np.percentile(latencies, q)), 3) for q in (50, 90, 99)}
      if latencies.size
      else {}
    )
    return {
      "uptime_s": round(time.monotonic() - self.started, 3),
      "requests": sum(self.requests.values()),
      "responses_by_status": {str(s): n for s, n in sorted(self.requests.items())},
      "search_latency_ms": {"last": int(latencies.size), **percentiles},
      "batches": self.batches,
      "mean_batch": round(self.batched / self.batches, 3) if self.batches else 0.0,
    }


class CountResponses:
  """ASGI middleware counting each response by its status into ``stats``."""

  def __init__(self, app, stats: Stats):
    self.app, self.stats = app, stats

  async def __call__(self, scope, receive, send):
    if scope["type"] != "http":
      return await self.app(scope, receive, send)

    async def counted(message):
      if message["type"] == "http.response.start":
        self.stats.requests[message["status"]] += 1
      await send(message)

    await self.app(scope, receive, counted)
