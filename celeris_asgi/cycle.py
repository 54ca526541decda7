"""The per-request ASGI cycle shared by HTTP/1.1 and HTTP/2: scope, receive(), send().

The ASGI rules (message order, 500 on an early exception, http.disconnect, backpressure) live here
once; a wire protocol only turns the calls below into bytes. The protocol side implements:

    write_head(cycle, status, headers, body, more_body) -> bool   first body part with the head
    write_body(cycle, body, more_body) -> bool                    later body parts
    write_trailers(cycle, headers) -> bool                        ends a response that announced trailers
    write_informational(cycle, status, headers) -> None           1xx (100 Continue, 103 Early Hints)
    drain(cycle) -> Awaitable[None]                               waits until writing may go on
    body_consumed(cycle, nbytes) -> None                          the app took body bytes (flow control)
    abort(cycle) -> None                                          the app failed mid-response
    cycle_done(cycle) -> None                                     the app returned (pipelining, logs)

The write_* methods return True when the caller must `await drain(cycle)` before going on (the
transport is above its high-water mark, or an HTTP/2 window is closed). The protocol feeds the
request side with feed_body(), feed_eof() and feed_disconnect().
"""

from __future__ import annotations

import asyncio
import sys
from collections.abc import Coroutine
from typing import Any

from celeris_asgi.logging import error_logger

_DISCONNECT: dict[str, Any] = {"type": "http.disconnect"}
# Python 3.12+ can start a task eagerly: a handler that never waits runs to completion right
# away, with no trip through the event loop (and no done-callback when it finished).
EAGER_TASKS = sys.version_info >= (3, 12)


def start_app_task(
    state: Any, coro: Coroutine[Any, Any, None], loop: asyncio.AbstractEventLoop, eager: bool = False
) -> asyncio.Task[None] | None:
    """Run an app call as a task tracked in state.tasks (for shutdown and --limit-concurrency).

    The coroutine removes its own task from state.tasks in its finally (the caller keeps the
    returned task for that): cheaper than a done-callback, which is one more loop handle
    scheduled and run per request. None when an eager start already finished the call.
    """
    if eager and EAGER_TASKS:
        task = asyncio.Task(coro, loop=loop, eager_start=True)  # type: ignore[call-arg]
        if task.done():
            return None
    else:
        task = loop.create_task(coro)
    state.tasks.add(task)
    return task


def over_concurrency_limit(state: Any, limit: int | None) -> bool:
    """True (and logged) when --limit-concurrency requests already run: the caller answers 503."""
    if limit is not None and len(state.tasks) >= limit:
        error_logger.warning("Exceeded concurrency limit.")
        return True
    return False


class ClientDisconnected(OSError):
    """send() after the client went away (ASGI spec 2.4 asks for an OSError subclass)."""


class RequestCycle:
    """One request/response exchange; the protocol creates one per request."""

    __slots__ = (
        "body",
        "body_complete",
        "conn",
        "disconnected",
        "eof_delivered",
        "expect_continue",
        "head_sent",
        "response_bytes",
        "response_complete",
        "response_headers",
        "response_started",
        "scope",
        "start_time",
        "status",
        "task",
        "trailers_expected",
        "waiter",
    )

    def __init__(self, scope: dict[str, Any], conn: Any, expect_continue: bool, start_time: float) -> None:
        self.scope = scope
        self.conn = conn
        self.body = b""
        self.body_complete = False
        self.eof_delivered = False
        self.disconnected = False
        self.expect_continue = expect_continue
        self.waiter: asyncio.Future[None] | None = None
        self.response_started = False
        self.response_complete = False
        self.head_sent = False
        self.trailers_expected = False
        self.status = 0
        self.response_headers: list[tuple[bytes, bytes]] = []
        self.response_bytes = 0
        self.start_time = start_time
        self.task: asyncio.Task[None] | None = None  # set by the protocol once the app task exists

    # ----- fed by the protocol -------------------------------------------------------------

    def wake(self) -> None:
        """Resume a receive() that waits for body bytes, the end of the body, or a disconnect."""
        waiter = self.waiter
        if waiter is not None and not waiter.done():
            waiter.set_result(None)

    def feed_body(self, data: bytes) -> None:
        self.body += data
        self.wake()

    def feed_eof(self) -> None:
        self.body_complete = True
        self.wake()

    def feed_disconnect(self) -> None:
        self.disconnected = True
        self.wake()

    # ----- the ASGI side -------------------------------------------------------------------

    async def run(self, app: Any) -> None:
        """Call the app and enforce the end-of-request rules whatever it does."""
        try:
            if self.disconnected:  # refused (or gone) before the app ran: nothing of it reaches the app
                return
            await app(self.scope, self.receive, self.send)
        except ClientDisconnected:
            pass
        except BaseException as exc:
            if not self.disconnected:
                error_logger.error("Exception in ASGI application", exc_info=exc)
            if not self.head_sent:
                self.send_error_response(500)
            elif not self.response_complete:
                self.conn.abort(self)
            if isinstance(exc, KeyboardInterrupt | SystemExit):
                raise
        else:
            if self.disconnected:
                pass
            elif not self.response_started:
                error_logger.error("ASGI callable returned without starting response.")
                self.send_error_response(500)
            elif not self.response_complete:
                error_logger.error("ASGI callable returned without completing response.")
                self.conn.abort(self)
        finally:
            self.conn.cycle_done(self)
            self.conn.state.tasks.discard(self.task)

    def send_error_response(self, status: int) -> None:
        """A plain-text error response written by the server itself (500, 503, ...)."""
        if self.disconnected:
            return
        phrase = {500: b"Internal Server Error", 503: b"Service Unavailable"}.get(status, b"Error")
        self.response_started = True
        self.status = status
        self.response_headers = [
            (b"content-type", b"text/plain; charset=utf-8"),
            (b"content-length", b"%d" % len(phrase)),
            (b"connection", b"close"),
        ]
        self.response_complete = True
        self.head_sent = True
        self.conn.write_head(self, status, self.response_headers, phrase, False)

    async def receive(self) -> dict[str, Any]:
        if self.expect_continue:
            self.expect_continue = False
            if not self.response_started:
                self.conn.write_informational(self, 100, [])
        if self.disconnected or self.response_complete:
            return _DISCONNECT
        if self.eof_delivered:
            # The whole body was delivered: the next event is the client leaving or the response ending.
            while not (self.disconnected or self.response_complete):
                self.waiter = asyncio.get_running_loop().create_future()
                try:
                    await self.waiter
                finally:
                    self.waiter = None
            return _DISCONNECT
        if not self.body and not self.body_complete:
            self.waiter = asyncio.get_running_loop().create_future()
            self.conn.body_consumed(self, 0)
            try:
                await self.waiter
            finally:
                self.waiter = None
            if self.disconnected or self.response_complete:
                return _DISCONNECT
        body = self.body
        self.body = b""
        if body:
            self.conn.body_consumed(self, len(body))
        if self.body_complete:
            self.eof_delivered = True
            return {"type": "http.request", "body": body, "more_body": False}
        return {"type": "http.request", "body": body, "more_body": True}

    async def send(self, message: dict[str, Any]) -> None:
        kind = message["type"]
        if kind == "http.response.body":
            if not self.response_started:
                raise RuntimeError("Expected ASGI message 'http.response.start', but got 'http.response.body'.")
            if self.response_complete:
                raise RuntimeError("Unexpected ASGI message 'http.response.body' sent, after response completed.")
            if self.disconnected:
                raise ClientDisconnected("The client disconnected.")
            body = message.get("body", b"")
            more_body = message.get("more_body", False)
            if self.head_sent:
                wait = self.conn.write_body(self, body, more_body)
            else:
                wait = self.conn.write_head(self, self.status, self.response_headers, body, more_body)
                self.head_sent = True
            if not more_body and not self.trailers_expected:
                self.response_complete = True
                self.wake()  # a receive() waiting for http.disconnect gets it now
            if wait:
                await self.conn.drain(self)
        elif kind == "http.response.start":
            if self.response_started:
                raise RuntimeError("Unexpected ASGI message 'http.response.start' sent, after response started.")
            if self.disconnected:
                raise ClientDisconnected("The client disconnected.")
            self.status = message["status"]
            self.response_headers = list(message.get("headers", ()))
            self.trailers_expected = bool(message.get("trailers", False))
            self.response_started = True
        elif kind == "http.response.trailers":
            if not self.trailers_expected or not self.head_sent or self.response_complete:
                raise RuntimeError("Unexpected ASGI message 'http.response.trailers' sent.")
            if self.disconnected:
                raise ClientDisconnected("The client disconnected.")
            if not message.get("more_trailers", False):
                self.response_complete = True
                self.wake()  # a receive() waiting for http.disconnect gets it now
            if self.conn.write_trailers(self, list(message.get("headers", ()))):
                await self.conn.drain(self)
        elif kind == "http.response.early_hint":
            if self.response_started:
                raise RuntimeError("Unexpected ASGI message 'http.response.early_hint' sent, after response started.")
            self.conn.write_informational(self, 103, [(b"link", link) for link in message.get("links", ())])
        else:
            raise RuntimeError(f"Unexpected ASGI message type {kind!r}.")
