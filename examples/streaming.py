"""A streaming response in raw ASGI: `celeris examples.streaming:app`, then `curl -N http://127.0.0.1:8000/`.

The server sends each part as it comes (chunked, since no Content-Length is given), and `send()`
waits while the client is slow to read, so a large stream never piles up in memory.
GET /?count=N&delay=S streams N lines, S seconds apart (defaults: 5 lines, 0.2 s).
"""

from __future__ import annotations

import asyncio
from typing import Any
from urllib.parse import parse_qs


async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
    if scope["type"] != "http":
        return
    query = parse_qs(scope["query_string"].decode("latin-1"))
    count = int(query.get("count", ["5"])[0])
    delay = float(query.get("delay", ["0.2"])[0])
    await send({"type": "http.response.start", "status": 200, "headers": [(b"content-type", b"text/plain")]})
    for number in range(1, count + 1):
        await send({"type": "http.response.body", "body": b"line %d\n" % number, "more_body": True})
        await asyncio.sleep(delay)
    await send({"type": "http.response.body", "body": b""})
