"""A large upload handled piece by piece: `celeris examples.upload:app`, then
`curl -T big.iso http://127.0.0.1:8000/`.

The body is hashed as it arrives, so memory stays flat whatever the size: the server hands the app
the body in pieces and stops reading from the client while the app is busy with one.
"""

from __future__ import annotations

import hashlib
import json
from typing import Any


async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
    if scope["type"] != "http":
        return
    digest = hashlib.sha256()
    size = 0
    pieces = 0
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            return  # the client gave up: nothing to answer
        digest.update(message["body"])
        size += len(message["body"])
        pieces += 1
        if not message["more_body"]:
            break
    body = json.dumps({"size": size, "sha256": digest.hexdigest(), "pieces": pieces}).encode()
    await send(
        {"type": "http.response.start", "status": 200, "headers": [(b"content-type", b"application/json")]}
    )
    await send({"type": "http.response.body", "body": body})
