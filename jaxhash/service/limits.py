"""The request body limit, enforced before the app reads a byte of the body.

A body larger than ``limit`` gets 413 with a JSON error: at once when its Content-Length says
so, else as soon as the bytes received pass the limit (a chunked body). The body is read here
and handed to the app whole, so no route can be made to buffer more than the limit.
"""

from __future__ import annotations

from jaxhash.service.errors import send_json


class BodyLimit:
  def __init__(self, app, limit: int):
    self.app, self.limit = app, limit

  async def __call__(self, scope, receive, send):
    if scope["type"] != "http":
      return await self.app(scope, receive, send)
    declared = dict(scope["headers"]).get(b"content-length", b"0")
    if declared.isdigit() and int(declared) > self.limit:
      return await self._refuse(send)
    chunks, size = [], 0
    while True:
      message = await receive()
      if message["type"] == "http.disconnect":
        return
      chunks.append(message.get("body", b""))
      size += len(chunks[-1])
      if size > self.limit:
        return await self._refuse(send)
      if not message.get("more_body"):
        break
    body, delivered = b"".join(chunks), False

    async def replay():
      nonlocal delivered
      if delivered:
        return await receive()
      delivered = True
      return {"type": "http.request", "body": body, "more_body": False}

    await self.app(scope, replay, send)

  async def _refuse(self, send):
    await send_json(
      send,
      413,
      {
        "error": f"the request body is larger than the server's limit of "
        f"{self.limit:,} bytes; send a smaller image, or start the server "
        "with a larger --max-body-mb."
      },
      ((b"connection", b"close"),),
    )
