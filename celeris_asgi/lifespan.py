"""ASGI lifespan: startup before the first connection, shutdown after the last, state shared with requests."""

from __future__ import annotations

import asyncio
from typing import TYPE_CHECKING, Any

from celeris_asgi.logging import error_logger

if TYPE_CHECKING:
    from celeris_asgi.asgi_types import ASGIApp, LifespanScope, Message


class LifespanFailed(Exception):
    """The app reported `lifespan.startup.failed` (or raised during startup with lifespan "on")."""


class Lifespan:
    """Runs the app's lifespan protocol in its own task.

    With lifespan "auto" an app that raises on the lifespan scope before it received the startup
    event is taken as one that does not support it; with "on", or once it has received the event
    (it speaks lifespan, and its startup crashed), that is a startup failure.
    """

    def __init__(self, app: ASGIApp, mode: str, state: dict[str, Any]) -> None:
        self.app = app
        self.mode = mode
        self.state = state
        self.receive_queue: asyncio.Queue[Message] = asyncio.Queue()
        self.startup_event = asyncio.Event()
        self.shutdown_event = asyncio.Event()
        self.startup_failed = False
        self.shutdown_failed = False
        self.error_message = ""
        self.unsupported = False
        self.startup_received = False
        self.task: asyncio.Task[None] | None = None

    async def startup(self) -> None:
        """Send lifespan.startup and wait for the answer; raise LifespanFailed if startup failed."""
        if self.mode == "off":
            return
        error_logger.info("Waiting for application startup.")
        self.task = asyncio.get_running_loop().create_task(self._main())
        await self.receive_queue.put({"type": "lifespan.startup"})
        await self.startup_event.wait()
        if self.startup_failed:
            raise LifespanFailed(self.error_message or "Application startup failed.")
        if not self.unsupported:
            error_logger.info("Application startup complete.")

    async def shutdown(self) -> None:
        """Send lifespan.shutdown and wait for it (when startup ran and the app supports lifespan)."""
        if self.mode == "off" or self.task is None or self.unsupported or self.startup_failed:
            return
        error_logger.info("Waiting for application shutdown.")
        await self.receive_queue.put({"type": "lifespan.shutdown"})
        await self.shutdown_event.wait()
        if self.shutdown_failed:
            error_logger.error("Application shutdown failed: %s", self.error_message or "no message")
        else:
            error_logger.info("Application shutdown complete.")

    async def _main(self) -> None:
        scope: LifespanScope = {
            "type": "lifespan",
            "asgi": {"version": "3.0", "spec_version": "2.0"},
            "state": self.state,
        }
        try:
            await self.app(scope, self.receive, self.send)
        except BaseException as exc:
            if self.startup_event.is_set() and not self.shutdown_event.is_set():
                self.shutdown_failed = True
                self.error_message = f"{type(exc).__name__}: {exc}"
                error_logger.error("Exception in 'lifespan' protocol", exc_info=exc)
            elif not self.startup_event.is_set():
                if self.mode == "auto" and not self.startup_received:
                    self.unsupported = True
                    error_logger.info("ASGI 'lifespan' protocol appears unsupported.")
                else:
                    self.startup_failed = True
                    self.error_message = f"{type(exc).__name__}: {exc}"
                    error_logger.error("Exception in 'lifespan' protocol", exc_info=exc)
            if isinstance(exc, asyncio.CancelledError | KeyboardInterrupt | SystemExit):
                raise
        finally:
            self.startup_event.set()
            self.shutdown_event.set()

    async def receive(self) -> Message:
        message = await self.receive_queue.get()
        self.startup_received = True
        return message

    async def send(self, message: Message) -> None:
        kind = message["type"]
        if kind == "lifespan.startup.complete":
            self.startup_event.set()
        elif kind == "lifespan.startup.failed":
            self.startup_failed = True
            self.error_message = message.get("message", "")
            self.startup_event.set()
        elif kind == "lifespan.shutdown.complete":
            self.shutdown_event.set()
        elif kind == "lifespan.shutdown.failed":
            self.shutdown_failed = True
            self.error_message = message.get("message", "")
            self.shutdown_event.set()
        else:
            raise RuntimeError(f"Unexpected ASGI lifespan message {kind!r}.")
