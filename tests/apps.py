"""Small ASGI apps the tests share."""

from __future__ import annotations

import asyncio
import json
import threading
from typing import Any


async def until_set(event: threading.Event) -> None:
    """Hold an app (on the server's loop) until the test thread sets `event`.

    Polls instead of waiting in an executor thread: a cancelled app must not leave a thread blocked
    in event.wait() for the server's shutdown to join.
    """
    while not event.is_set():
        await asyncio.sleep(0.005)


async def hello(scope: dict[str, Any], receive: Any, send: Any) -> None:
    """200 "Hello" with an explicit Content-Length."""
    if scope["type"] != "http":
        return
    await send({"type": "http.response.start", "status": 200, "headers": [(b"content-type", b"text/plain")]})
    await send({"type": "http.response.body", "body": b"Hello"})


async def echo(scope: dict[str, Any], receive: Any, send: Any) -> None:
    """Echoes the request body; reports the scope (minus headers and state) in x-scope."""
    if scope["type"] != "http":
        return
    body = b""
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            return
        body += message["body"]
        if not message["more_body"]:
            break
    info = {k: v for k, v in scope.items() if k in ("method", "path", "query_string", "http_version", "scheme")}
    info["query_string"] = scope["query_string"].decode()
    await send(
        {
            "type": "http.response.start",
            "status": 200,
            "headers": [(b"content-type", b"application/octet-stream"), (b"x-scope", json.dumps(info).encode())],
        }
    )
    await send({"type": "http.response.body", "body": body})


async def scope_json(scope: dict[str, Any], receive: Any, send: Any) -> None:
    """Returns the JSON-able part of the scope as the body."""
    if scope["type"] != "http":
        return
    view = {
        key: (value.decode("latin-1") if isinstance(value, bytes) else value)
        for key, value in scope.items()
        if key not in ("headers", "state", "extensions", "asgi")
    }
    view["headers"] = [[k.decode("latin-1"), v.decode("latin-1")] for k, v in scope["headers"]]
    view["asgi"] = scope["asgi"]
    body = json.dumps(view).encode()
    await send({"type": "http.response.start", "status": 200, "headers": [(b"content-type", b"application/json")]})
    await send({"type": "http.response.body", "body": body})
