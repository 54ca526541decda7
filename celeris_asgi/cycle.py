"""The request cycle: the one place every HTTP request enters and leaves, whatever its protocol.

HTTP/1.1, HTTP/2 and the WebSocket session share what is here: one scope builder (`build_scope`),
one start (`admit` + `RequestCycle.start`: count the request, --limit-concurrency's 503, the app
task, eagerly where Python allows), one server-made answer (`error_response`, sent through the
owner like the app's own responses, so it carries the same Date/Server headers), one access-log
call (`RequestCycle.log_access`), and the ASGI rules (message order, 500 before the head and an
aborted response after it, http.disconnect, backpressure) with the response's ASGI state in one
field, `phase`, changed only by the cycle's own methods.

A wire protocol owns each cycle and derives from `CycleOwner`: it turns the cycle's calls into
bytes and feeds the request side with feed_body(), feed_eof() and feed_disconnect().
"""

from __future__ import annotations

import asyncio
import os
import stat
import sys
from collections.abc import Awaitable, Coroutine, Generator
from time import perf_counter
from typing import TYPE_CHECKING, Any, cast

from celeris_asgi.asgi_types import ASGIVersions
from celeris_asgi.logging import error_logger

if TYPE_CHECKING:
    from celeris_asgi.asgi_types import ASGIApp, Headers, HTTPScope, Message
    from celeris_asgi.metrics import Metrics
    from celeris_asgi.middleware.proxy_headers import ProxyHeaders
    from celeris_asgi.settings import ServerSettings
    from celeris_asgi.state import ServerState

ASGI_VERSIONS: ASGIVersions = {"version": "3.0", "spec_version": "2.4"}  # every scope's "asgi"
HTTP_EXTENSIONS: dict[str, Any] = {
    "http.response.trailers": {},
    "http.response.early_hint": {},
    "http.response.pathsend": {},
    "http.response.zerocopysend": {},
}
# A file body (pathsend, zerocopysend) is read and written in parts this big, so it never sits
# whole in memory and each part goes through the owner's flow control (HTTP/2 windows, TLS).
FILE_CHUNK = 256 * 1024
_DISCONNECT: dict[str, Any] = {"type": "http.disconnect"}
# Python 3.12+ can start a task eagerly: a handler that never waits runs to completion right
# away, with no trip through the event loop (and no done-callback when it finished).
EAGER_TASKS = sys.version_info >= (3, 12)
# Naming the task up front spares 3.11 formatting a fresh "Task-N" string for every request.
TASK_NAME = "celeris-request"
_Task = asyncio.Task  # compiled: a C global, not an attribute lookup on the asyncio module per request

# The response's ASGI state (RequestCycle.phase), in order; each only ever moves forward.
PENDING = 0  # no http.response.start yet
STARTED = 1  # http.response.start received; the head waits for the first body part
HEAD_SENT = 2  # the head is written (with the first body part)
TRAILERS = 3  # the body is complete; http.response.trailers still to come
COMPLETE = 4  # the whole response is handed to the owner


class CycleOwner:
    """The base of what carries a request cycle: the HTTP/1.1 connection, or the HTTP/2 connection
    for each of its streams. It turns the cycle's calls into bytes.

    A base class rather than a typing.Protocol so that, compiled, the cycle's calls into its owner
    are C calls through the class's vtable instead of Python attribute lookups; the attributes the
    cycle reads are C fields for the same reason. A subclass written in Python (a test's recording
    owner) overrides the methods as usual.

    The write_* methods return True when the caller must `await drain(cycle)` before going on (the
    transport is above its high-water mark, or an HTTP/2 window is closed).

    Optional fast path for file bodies (http.response.pathsend / zerocopysend); an owner without it
    gets the file in FILE_CHUNK parts through write_head/write_body:

        async def send_file(self, cycle: RequestCycle, fd: int, offset: int, count: int) -> bool

    Called once the head is written (cycle.phase is HEAD_SENT, the owner was told more_body=True),
    maybe after other body parts. Either write exactly `count` bytes of the open file `fd` from
    `offset` as body bytes (e.g. drain the transport, then loop.sendfile), add them to
    cycle.response_bytes and return True; or write nothing and return False when it cannot (TLS,
    chunked framing, ...): the cycle then falls back to the chunked loop. Raise ClientDisconnected
    if the peer goes away; an OSError from the file is the app's error (the cycle aborts the
    response). The cycle ends the body itself, with an empty last write_body.
    """

    __slots__ = ("loop", "metrics", "settings", "state")

    def __init__(self, settings: ServerSettings, state: ServerState, loop: asyncio.AbstractEventLoop) -> None:
        self.settings = settings
        self.state = state
        self.loop = loop
        self.metrics: Metrics | None = settings.metrics  # None with metrics off: one check per counted event

    def write_head(self, cycle: RequestCycle, status: int, headers: Headers, body: bytes, more_body: bool) -> bool:
        """The head with the first body part (maybe empty)."""
        raise NotImplementedError

    def write_body(self, cycle: RequestCycle, body: bytes, more_body: bool) -> bool:
        """A later body part."""
        raise NotImplementedError

    def write_trailers(self, cycle: RequestCycle, headers: Headers) -> bool:
        """Trailer fields; the response is complete once cycle.phase is COMPLETE."""
        raise NotImplementedError

    def write_informational(self, cycle: RequestCycle, status: int, headers: Headers) -> None:
        """A 1xx response (100 Continue, 103 Early Hints)."""
        raise NotImplementedError

    async def drain(self, cycle: RequestCycle) -> None:
        """Wait until writing may go on."""
        raise NotImplementedError

    def body_consumed(self, cycle: RequestCycle, nbytes: int) -> None:
        """The app took nbytes of request body (0: it waits for more): reopen windows, resume reading."""
        raise NotImplementedError

    def abort_response(self, cycle: RequestCycle) -> None:
        """The app failed after the head went out: end this response abruptly."""
        raise NotImplementedError

    def cycle_done(self, cycle: RequestCycle) -> None:
        """The app call returned (or was refused): free the request's slot, move to the next request."""
        raise NotImplementedError


class Endpoint:
    """Who is on each end of one connection, fixed when it is accepted: the scope's server, client
    and scheme, and the proxy-header rules when the peer is a trusted proxy (judged once)."""

    __slots__ = ("client", "extensions", "proxy", "scheme", "server")

    def __init__(
        self,
        server: tuple[str, int] | None,
        client: tuple[str, int] | None,
        scheme: str,
        proxy: ProxyHeaders | None,
        extensions: dict[str, Any] | None = None,
    ) -> None:
        self.server = server
        self.client = client
        self.scheme = scheme
        self.proxy = proxy if proxy is not None and proxy.trusts_peer(client) else None
        # The scope's extensions: HTTP_EXTENSIONS plus this connection's own (the `tls` one), merged
        # once here so a request shares one dict whatever it carries.
        self.extensions = {**HTTP_EXTENSIONS, **extensions} if extensions else HTTP_EXTENSIONS


# Every http scope has these keys; the values are placeholders that build_scope replaces (root_path
# only when set). A copy of this dict with its values set cost 0.6k instructions less per request
# than a dict display, compiled and pure: the copy takes the key table as it is, the display inserts
# each key into a new dict.
_SCOPE_TEMPLATE: HTTPScope = {
    "type": "http",
    "asgi": ASGI_VERSIONS,
    "http_version": "1.1",
    "server": None,
    "client": None,
    "scheme": "http",
    "method": "GET",
    "root_path": "",
    "path": "/",
    "raw_path": b"/",
    "query_string": b"",
    "headers": [],
    "state": {},
    "extensions": HTTP_EXTENSIONS,
}


def build_scope(
    settings: ServerSettings,
    state: ServerState,
    endpoint: Endpoint,
    http_version: str,
    method: str,
    path: str,
    raw_path: bytes,
    query_string: bytes,
    headers: Headers,
    proxy_headers: bool = True,
) -> HTTPScope:
    """The ASGI http scope of one request; path and raw_path are the target's, before root_path.

    proxy_headers=False: the caller saw that no header name holds "forwarded", so a trusted proxy's
    rules (which read only such fields) would leave the scope as it is: they are not run.
    """
    root_path = settings.root_path
    app_state = state.app_state  # compiled: a C dict, copied without a method call
    scope = _SCOPE_TEMPLATE.copy()
    if root_path:  # (the template's is empty)
        scope["root_path"] = root_path
        path = root_path + path
        raw_path = root_path.encode("ascii") + raw_path
    scope["http_version"] = http_version
    scope["server"] = endpoint.server
    scope["client"] = endpoint.client
    scope["scheme"] = endpoint.scheme
    scope["method"] = method
    scope["path"] = path
    scope["raw_path"] = raw_path
    scope["query_string"] = query_string
    scope["headers"] = headers
    scope["state"] = app_state.copy()
    scope["extensions"] = endpoint.extensions
    proxy = endpoint.proxy
    if proxy is not None and proxy_headers:
        return proxy.rewrite(scope)
    return scope


def admit(state: ServerState, settings: ServerSettings) -> bool:
    """Count a request; False (logged) when --limit-concurrency requests already run: answer 503."""
    state.total_requests += 1
    limit = settings.limit_concurrency
    if limit is not None and len(state.tasks) >= limit:
        error_logger.warning("Exceeded concurrency limit.")
        return False
    return True


def start_app_task(
    state: ServerState, coro: Coroutine[Any, Any, None], loop: asyncio.AbstractEventLoop, eager: bool = False
) -> asyncio.Task[None] | None:
    """Run an app call as a task tracked in state.tasks (for shutdown and --limit-concurrency).

    The coroutine removes its own task from state.tasks in its finally (the caller keeps the
    returned task for that): cheaper than a done-callback, which is one more loop handle
    scheduled and run per request. None when an eager start already finished the call.
    """
    if loop.get_task_factory() is not None:  # the app's own factory (tracing, eager) decides
        task = loop.create_task(coro)
    elif eager and EAGER_TASKS:
        task = _Task(coro, loop=loop, eager_start=True)  # type: ignore[call-arg]
        if task.done():
            return None
    else:
        task = _Task(coro, loop=loop, name=TASK_NAME)
    state.tasks.add(task)
    return task


_PLAIN_TEXT = (b"content-type", b"text/plain; charset=utf-8")
_CONNECTION_CLOSE = (b"connection", b"close")


def error_response(status: int, reason: str) -> tuple[Headers, bytes]:
    """The headers and body of an answer the server makes itself (400, 408, 413, 500, 503, ...).

    The owner writes it like an app's response, so the default headers (Date, Server) come with it.
    """
    body = reason.encode("latin-1", "replace")
    return [_PLAIN_TEXT, (b"content-length", b"%d" % len(body)), _CONNECTION_CLOSE], body


class ClientDisconnected(OSError):
    """send() after the client went away (ASGI spec 2.4 asks for an OSError subclass)."""


class FileSendError(RuntimeError):
    """A pathsend/zerocopysend file that cannot be served (missing, not a regular file, shrunk)."""


class Ready:
    """An awaitable that is already done: what RequestCycle.send returns when nothing waits.

    Awaiting it runs no coroutine: `await` takes its iterator, which is exhausted from the start.
    """

    __slots__ = ()

    def __await__(self) -> Generator[None, None, None]:
        return _EXHAUSTED


# `await` only calls next() on what __await__ returns: an iterator that has ended ends it at once.
_EXHAUSTED = cast("Generator[None, None, None]", iter(()))
READY = Ready()


class RequestCycle:
    """One request/response exchange; its owner creates one per request (pooled objects may come later)."""

    __slots__ = (
        "body",
        "body_complete",
        "disconnected",
        "eof_delivered",
        "expect_continue",
        "owner",
        "phase",
        "response_bytes",
        "response_headers",
        "scope",
        "start_time",
        "status",
        "task",
        "trailers_expected",
        "waiter",
    )

    def __init__(
        self,
        scope: HTTPScope,
        owner: CycleOwner,
        expect_continue: bool = False,
        body_complete: bool = False,
        start_time: float = 0.0,
    ) -> None:
        self.prepare(scope, owner, expect_continue, body_complete, start_time)

    def prepare(
        self, scope: HTTPScope, owner: CycleOwner, expect_continue: bool, body_complete: bool, start_time: float
    ) -> None:
        """The constructor's work, which a subclass's constructor calls as a C method (compiled),
        where super().__init__() was a Python call that built its arguments into a tuple."""
        self.scope = scope
        self.owner = owner
        self.body = b""
        self.body_complete = body_complete  # a request without a body: the first receive() need not wait
        self.eof_delivered = False
        self.disconnected = False
        self.expect_continue = expect_continue
        self.waiter: asyncio.Future[None] | None = None
        self.phase = PENDING
        self.trailers_expected = False
        self.status = 0
        self.response_headers: Headers = []
        self.response_bytes = 0
        self.start_time = start_time  # perf_counter() at the head when the owner times requests, else 0.0
        self.task: asyncio.Task[None] | None = None

    # ----- the response's state, for owners ------------------------------------------------

    @property
    def response_started(self) -> bool:
        return self.phase != PENDING

    @property
    def head_sent(self) -> bool:
        return self.phase >= HEAD_SENT

    @property
    def response_complete(self) -> bool:
        return self.phase == COMPLETE

    # ----- start, answer, log ----------------------------------------------------------------

    def start(self, eager: bool = False) -> None:
        """Count the request and run the app, or answer 503 over --limit-concurrency."""
        owner = self.owner
        settings = owner.settings
        metrics = owner.metrics
        state = owner.state
        if not admit(state, settings):
            self.respond_error(503, "Service Unavailable")
            owner.cycle_done(self)
            if metrics is not None:
                metrics.request_finished(self.scope["http_version"], self.scope["method"], 503, 0.0)
            return
        if metrics is not None and not self.start_time:
            self.start_time = perf_counter()  # the owner sets it at the head when it times requests
        self.task = start_app_task(state, self.run(settings.app), owner.loop, eager=eager)

    def respond_error(self, status: int, reason: str) -> None:
        """Answer with a server-made response (see error_response) if nothing was sent yet."""
        if self.disconnected or self.phase >= HEAD_SENT:
            return
        metrics = self.owner.metrics
        if metrics is not None:
            metrics.server_response(status)
        headers, body = error_response(status, reason)
        self.phase = COMPLETE
        self.status = status
        self.response_headers = headers
        self.owner.write_head(self, status, headers, body, False)
        self.wake()

    def log_access(self) -> None:
        """One access-log line for a response that started (call when the exchange is over)."""
        if self.phase != PENDING:
            owner = self.owner
            duration = perf_counter() - self.start_time
            owner.settings.access_log.log(
                self.scope,  # type: ignore[arg-type]
                self.status,
                self.response_headers,
                self.response_bytes,
                duration,
            )

    # ----- fed by the owner ----------------------------------------------------------------

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

    def take_body(self) -> int:
        """Drop the unread request body (the owner credits its flow-control window); returns its size."""
        size = len(self.body)
        self.body = b""
        return size

    # ----- the ASGI side -------------------------------------------------------------------

    async def run(self, app: ASGIApp) -> None:
        """Call the app and enforce the end-of-request rules whatever it does; count it with metrics on.

        The count is taken here rather than in a wrapping coroutine: a second coroutine per request
        cost as much as the counting itself (valgrind, benchmarks.metrics_inprocess).
        """
        try:
            if self.disconnected:  # refused (or gone) before the app ran: nothing of it reaches the app
                return
            await app(self.scope, self.receive, self.send)
        except ClientDisconnected:
            pass
        except BaseException as exc:
            if not self.disconnected:
                error_logger.error("Exception in ASGI application", exc_info=exc)
            metrics = self.owner.metrics
            if metrics is not None:
                metrics.app_exception()
            self.app_failed()
            if isinstance(exc, KeyboardInterrupt | SystemExit):
                raise
        else:
            if self.disconnected:
                pass
            elif self.phase == PENDING:
                error_logger.error("ASGI callable returned without starting response.")
                self.respond_error(500, "Internal Server Error")
            elif self.phase != COMPLETE:
                error_logger.error("ASGI callable returned without completing response.")
                self.owner.abort_response(self)
        finally:
            owner = self.owner
            metrics = owner.metrics
            if metrics is not None:
                scope = self.scope
                duration = perf_counter() - self.start_time
                metrics.request_finished(scope["http_version"], scope["method"], self.status, duration)
            owner.cycle_done(self)
            owner.state.tasks.discard(self.task)

    def app_failed(self) -> None:
        """The app raised: a 500 if the head is not out yet, else the response is aborted."""
        if self.phase < HEAD_SENT:
            self.respond_error(500, "Internal Server Error")
        elif self.phase != COMPLETE:
            self.owner.abort_response(self)

    async def receive(self) -> Message:
        if self.expect_continue:
            self.expect_continue = False
            if self.phase == PENDING:
                self.owner.write_informational(self, 100, [])
        if self.disconnected or self.phase == COMPLETE:
            return _DISCONNECT
        if self.eof_delivered:
            # The whole body was delivered: the next event is the client leaving or the response ending.
            while not (self.disconnected or self.phase == COMPLETE):
                await self.wait()
            return _DISCONNECT
        if not self.body and not self.body_complete:
            self.owner.body_consumed(self, 0)
            await self.wait()
            if self.disconnected or self.phase == COMPLETE:
                return _DISCONNECT
        body = self.body
        self.body = b""
        if body:
            self.owner.body_consumed(self, len(body))
        if self.body_complete:
            self.eof_delivered = True
            return {"type": "http.request", "body": body, "more_body": False}
        return {"type": "http.request", "body": body, "more_body": True}

    async def wait(self) -> None:
        """Until the owner feeds something or the response ends."""
        self.waiter = self.owner.loop.create_future()
        try:
            await self.waiter
        finally:
            self.waiter = None

    def send(self, message: Message) -> Awaitable[None]:
        """The app's send(). A plain call that returns an awaitable, not a coroutine function: the
        common messages are handled here and give back READY, which is done at once, so a request
        creates no send coroutine; only a drain or a file body returns a coroutine to await."""
        msg = message if type(message) is dict else dict(message)  # a Mapping that is not a dict: once
        kind = msg["type"]
        phase = self.phase
        owner = self.owner
        if kind == "http.response.body":
            if phase == PENDING:
                raise RuntimeError("Expected ASGI message 'http.response.start', but got 'http.response.body'.")
            if phase >= TRAILERS:
                raise RuntimeError("Unexpected ASGI message 'http.response.body' sent, after response completed.")
            if self.disconnected:
                raise ClientDisconnected("The client disconnected.")
            body = msg.get("body", b"")
            more_body = msg.get("more_body", False)
            if phase == STARTED:
                # The phase moves only once the head is written: an invalid header raises here, and
                # the app then still gets its 500.
                wait = owner.write_head(self, self.status, self.response_headers, body, more_body)
            else:
                wait = owner.write_body(self, body, more_body)
            if more_body:
                self.phase = HEAD_SENT
            elif self.trailers_expected:
                self.phase = TRAILERS
            else:
                self.phase = COMPLETE
                self.wake()  # a receive() waiting for http.disconnect gets it now
            return owner.drain(self) if wait else READY
        if kind == "http.response.start":
            if phase != PENDING:
                raise RuntimeError("Unexpected ASGI message 'http.response.start' sent, after response started.")
            if self.disconnected:
                raise ClientDisconnected("The client disconnected.")
            self.status = msg["status"]
            self.response_headers = list(msg.get("headers", ()))
            self.trailers_expected = bool(msg.get("trailers", False))
            self.phase = STARTED
            return READY
        if kind == "http.response.trailers":
            if phase != TRAILERS and not (phase == HEAD_SENT and self.trailers_expected):
                raise RuntimeError("Unexpected ASGI message 'http.response.trailers' sent.")
            if self.disconnected:
                raise ClientDisconnected("The client disconnected.")
            if not msg.get("more_trailers", False):
                self.phase = COMPLETE
                self.wake()  # a receive() waiting for http.disconnect gets it now
            wait = owner.write_trailers(self, list(msg.get("headers", ())))
            return owner.drain(self) if wait else READY
        if kind == "http.response.early_hint":
            if phase != PENDING:
                raise RuntimeError("Unexpected ASGI message 'http.response.early_hint' sent, after response started.")
            owner.write_informational(self, 103, [(b"link", link) for link in msg.get("links", ())])
            return READY
        if kind == "http.response.pathsend" or kind == "http.response.zerocopysend":
            if phase == PENDING or phase >= TRAILERS:
                raise RuntimeError(f"Unexpected ASGI message {kind!r} sent, before the start or after the body.")
            if kind == "http.response.pathsend":
                return self.send_path(msg["path"])
            return self.send_zerocopy(msg)
        raise RuntimeError(f"Unexpected ASGI message type {kind!r}.")

    # ----- file bodies (the pathsend and zerocopysend extensions) ----------------------------

    async def send_path(self, path: str) -> None:
        """http.response.pathsend: the whole file at `path` is the rest of the body."""
        if not os.path.isabs(path):
            raise FileSendError(f"http.response.pathsend needs an absolute path, got {path!r}.")
        try:
            # O_NONBLOCK: opening a FIFO must not hang the worker; it is refused below.
            fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC)
        except OSError as exc:
            raise FileSendError(f"http.response.pathsend cannot open {path!r}: {exc.strerror}.") from None
        try:
            size = os.fstat(fd)
            if not stat.S_ISREG(size.st_mode):
                kind = "a directory" if stat.S_ISDIR(size.st_mode) else "not a regular file"
                raise FileSendError(f"http.response.pathsend {path!r} is {kind}.")
            await self.send_file(fd, 0, size.st_size, False, path)
        finally:
            os.close(fd)

    async def send_zerocopy(self, message: Message) -> None:
        """http.response.zerocopysend: `count` bytes (default: to its end) of an open file from
        `offset` (default: its position, which then moves past them)."""
        file = message["file"]
        fd = file if isinstance(file, int) else file.fileno()
        offset = message.get("offset")
        count = message.get("count")
        try:
            position = os.lseek(fd, 0, os.SEEK_CUR) if offset is None else offset
            if count is None:
                count = max(os.fstat(fd).st_size - position, 0)
        except OSError as exc:
            raise FileSendError(f"http.response.zerocopysend cannot use file {file!r}: {exc.strerror}.") from None
        await self.send_file(fd, position, count, message.get("more_body", False), f"fd {fd}")
        if offset is None:
            os.lseek(fd, position + count, os.SEEK_SET)

    async def send_file(self, fd: int, offset: int, count: int, more_body: bool, name: str) -> None:
        """Send `count` bytes of `fd` from `offset` as body parts (the owner's send_file fast path
        when it has one), then end the body unless more_body; the ASGI rules are send()'s."""
        send = self.send
        send_file = getattr(self.owner, "send_file", None)
        if send_file is not None and count:
            if self.phase == STARTED:
                await send({"type": "http.response.body", "body": b"", "more_body": True})
            if await send_file(self, fd, offset, count):
                await send({"type": "http.response.body", "body": b"", "more_body": more_body})
                return
        end = offset + count
        while True:
            try:
                part = os.pread(fd, min(FILE_CHUNK, end - offset), offset) if offset < end else b""
            except OSError as exc:
                raise FileSendError(f"Reading {name} failed: {exc.strerror}.") from None
            offset += len(part)
            if not part and offset < end:
                raise FileSendError(f"{name} ended {end - offset} bytes early (truncated while it was sent?).")
            last = offset >= end
            await send({"type": "http.response.body", "body": part, "more_body": more_body or not last})
            if last:
                return
