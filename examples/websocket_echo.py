"""A raw ASGI WebSocket echo: `celeris examples.websocket_echo:app`, then talk to it, for example

    python -m websockets ws://127.0.0.1:8000/

It accepts the first subprotocol the client offers, echoes text and bytes, and says goodbye with
close code 1000 when the client sends "bye". Plain HTTP requests get a short hint.
"""

from typing import Any


async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
    if scope["type"] == "lifespan":
        while True:
            message = await receive()
            if message["type"] == "lifespan.startup":
                await send({"type": "lifespan.startup.complete"})
            elif message["type"] == "lifespan.shutdown":
                await send({"type": "lifespan.shutdown.complete"})
                return
    if scope["type"] == "http":
        body = b"This is a WebSocket echo; connect with a WebSocket client.\n"
        headers = [
            (b"content-type", b"text/plain; charset=utf-8"),
            (b"content-length", b"%d" % len(body)),
            (b"upgrade", b"websocket"),
        ]
        await send({"type": "http.response.start", "status": 426, "headers": headers})
        await send({"type": "http.response.body", "body": body})
        return
    await receive()  # websocket.connect
    subprotocols = scope["subprotocols"]
    await send({"type": "websocket.accept", "subprotocol": subprotocols[0] if subprotocols else None})
    while True:
        message = await receive()
        if message["type"] == "websocket.disconnect":
            return
        if message.get("text") == "bye":
            await send({"type": "websocket.close", "code": 1000, "reason": "bye"})
            return
        await send({"type": "websocket.send", "text": message.get("text"), "bytes": message.get("bytes")})
