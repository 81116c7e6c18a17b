"""The one error type a request can end with (an HTTP status and a line naming the problem and
the fix, answered as ``{"error": line}``), and the JSON answer of the plain ASGI handlers."""

from __future__ import annotations

import json


class RequestError(Exception):
  def __init__(self, status: int, message: str):
    super().__init__(message)
    self.status, self.message = status, message


async def send_json(send, status: int, payload: dict, headers: tuple = ()) -> None:
  body = json.dumps(payload).encode("utf-8")
  await send(
    {
      "type": "http.response.start",
      "status": status,
      "headers": [
        (b"content-type", b"application/json"),
        (b"content-length", str(len(body)).encode()),
        *headers,
      ],
    }
  )
  await send({"type": "http.response.body", "body": body})
