"""Apps imported by name in subprocess tests (`celeris tests.cli_apps:NAME`, `celeris_asgi.run(...)`).

Each writes what the test needs to observe into its responses or to stderr, since the test cannot
look inside the child process.
"""

from __future__ import annotations

import asyncio
import gc
import json
import os
import sys
from typing import Any


async def _lifespan(receive: Any, send: Any, startup_failure: str | None = None) -> None:
    while True:
        message = await receive()
        if message["type"] == "lifespan.startup":
            if startup_failure is not None:
                await send({"type": "lifespan.startup.failed", "message": startup_failure})
                return
            print("lifespan: startup complete", file=sys.stderr, flush=True)
            await send({"type": "lifespan.startup.complete"})
        elif message["type"] == "lifespan.shutdown":
            print("lifespan: shutdown complete", file=sys.stderr, flush=True)
            await send({"type": "lifespan.shutdown.complete"})
            return


async def _respond(send: Any, body: bytes, status: int = 200) -> None:
    await send({"type": "http.response.start", "status": status, "headers": [(b"content-length", b"%d" % len(body))]})
    await send({"type": "http.response.body", "body": body})


async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
    """GET /sleep?S sleeps S seconds (logging when it starts and whether it finished); /env?NAME
    returns an environment variable; /gc how many objects gc.freeze() holds and the generation-0
    threshold; anything else answers "ok"."""
    if scope["type"] == "lifespan":
        await _lifespan(receive, send)
        return
    path, query = scope["path"], scope["query_string"].decode()
    if path == "/sleep":
        print(f"request: sleeping {query}", file=sys.stderr, flush=True)
        try:
            await asyncio.sleep(float(query))
        except asyncio.CancelledError:
            print("request: cancelled", file=sys.stderr, flush=True)
            raise
        await _respond(send, b"slept")
    elif path == "/env":
        await _respond(send, json.dumps(os.environ.get(query)).encode())
    elif path == "/gc":
        await _respond(send, json.dumps([gc.get_freeze_count(), gc.get_threshold()[0]]).encode())
    else:
        await _respond(send, b"ok")


async def failing_startup(scope: dict[str, Any], receive: Any, send: Any) -> None:
    """Reports lifespan.startup.failed with a message the user must see."""
    if scope["type"] == "lifespan":
        await _lifespan(receive, send, startup_failure="database at db:5432 is unreachable")


async def raising_startup(scope: dict[str, Any], receive: Any, send: Any) -> None:
    """Takes the startup event, then raises: a failed startup, not an app without lifespan."""
    if scope["type"] == "lifespan":
        await receive()
        raise RuntimeError("config file missing")
    await _respond(send, b"ok")


def factory() -> Any:
    """An app factory, for --factory."""
    return app
