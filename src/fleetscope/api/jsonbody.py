"""JSON bodies whatever the Content-Type says.

``curl -d '{...}'`` sends ``application/x-www-form-urlencoded``; FastAPI would
then hand the routes raw bytes, and a user who sent a perfectly good JSON object
would be told it is not one. :class:`JsonBodies` rewrites the Content-Type of a
write to the API to ``application/json`` when the body parses as JSON, so the
routes see what the user meant; a body that does not parse is left alone, and
the error then says so and names the Content-Type that came with it.
"""

from __future__ import annotations

import json

from starlette.types import ASGIApp, Message, Receive, Scope, Send

MAX_BODY = 1 << 20  # bytes read to decide; larger bodies pass through untouched
_WRITES = {"POST", "PUT", "PATCH"}


def is_json_type(content_type: str | None) -> bool:
    """Whether a Content-Type says JSON (``application/json``, ``application/*+json``)."""
    media = (content_type or "").split(";")[0].strip().lower()
    return media == "application/json" or (media.startswith("application/") and media.endswith("+json"))


class JsonBodies:
    """ASGI middleware: writes under ``prefix`` with a JSON body count as JSON."""

    def __init__(self, app: ASGIApp, prefix: str = "/api/") -> None:
        self.app = app
        self.prefix = prefix

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if (scope["type"] != "http" or scope["method"] not in _WRITES
                or not scope["path"].startswith(self.prefix)):
            await self.app(scope, receive, send)
            return
        headers = scope["headers"]
        content_type = next((v.decode("latin-1") for k, v in headers if k == b"content-type"), None)
        if is_json_type(content_type) or (content_type or "").startswith("multipart/"):
            await self.app(scope, receive, send)
            return
        body, more, messages = b"", True, []
        while more and len(body) <= MAX_BODY:
            message = await receive()
            messages.append(message)
            if message["type"] != "http.request":
                break
            body += message.get("body", b"")
            more = message.get("more_body", False)
        if not more and body and _parses(body):
            scope = {**scope, "headers": [(k, v) for k, v in headers if k != b"content-type"]
                     + [(b"content-type", b"application/json")]}

        async def replay() -> Message:
            return messages.pop(0) if messages else await receive()

        await self.app(scope, replay, send)


def _parses(body: bytes) -> bool:
    try:
        json.loads(body)
    except ValueError:  # JSONDecodeError and UnicodeDecodeError
        return False
    return True
