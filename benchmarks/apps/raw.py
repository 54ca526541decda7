"""The benchmark routes as a bare ASGI callable: the floor of what a server costs per request."""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable
from typing import Any

Scope = dict[str, Any]
Message = dict[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]

TEXT = [(b"content-type", b"text/plain; charset=utf-8")]
JSON = [(b"content-type", b"application/json")]


async def _respond(send: Send, status: int, headers: list[tuple[bytes, bytes]], body: bytes) -> None:
    """Send a complete response; content-length is set so every server frames it the same way."""
    await send(
        {
            "type": "http.response.start",
            "status": status,
            "headers": [*headers, (b"content-length", str(len(body)).encode())],
        }
    )
    await send({"type": "http.response.body", "body": body})


async def _lifespan(receive: Receive, send: Send) -> None:
    """Acknowledge startup and shutdown so no server logs a lifespan warning during a run."""
    while True:
        message = await receive()
        if message["type"] == "lifespan.startup":
            await send({"type": "lifespan.startup.complete"})
        elif message["type"] == "lifespan.shutdown":
            await send({"type": "lifespan.shutdown.complete"})
            return


async def app(scope: Scope, receive: Receive, send: Send) -> None:
    """Route by path with plain string checks: the app should cost as little as possible."""
    if scope["type"] == "lifespan":
        await _lifespan(receive, send)
        return
    if scope["type"] != "http":
        return
    path: str = scope["path"]
    if path == "/":
        await _respond(send, 200, TEXT, b"Hello, world!")
    elif path == "/json":
        # Serialised per request, as a framework would, so raw and Starlette do the same work.
        body = json.dumps({"message": "Hello, world!"}, separators=(",", ":")).encode()
        await _respond(send, 200, JSON, body)
    elif path.startswith("/user/"):
        parts = path.split("/")
        if len(parts) == 5 and parts[3] == "post":
            await _respond(send, 200, TEXT, f"User {parts[2]}, post {parts[4]}".encode())
        else:
            await _respond(send, 404, TEXT, b"Not Found")
    elif path == "/echo":
        size = 0
        more = True
        while more:
            message = await receive()
            if message["type"] == "http.disconnect":
                return
            size += len(message.get("body", b""))
            more = message.get("more_body", False)
        await _respond(send, 200, TEXT, str(size).encode())
    else:
        await _respond(send, 404, TEXT, b"Not Found")
