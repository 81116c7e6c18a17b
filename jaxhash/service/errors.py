"""The one error type a request can end with: an HTTP status and a line naming the problem and
the fix, answered as ``{"error": line}``."""

from __future__ import annotations

import json


class RequestError(Exception):
  def __init__(self, status: int, message: str):
    super().__init__(message)
    self.status, self.message = status, message


def error_body(message: str) -> bytes:
  return json.dumps({"error": message}).encode("utf-8")
