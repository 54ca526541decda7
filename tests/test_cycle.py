"""The request cycle driven directly by a recording owner: the ASGI rules in milliseconds, no socket.

Every protocol reaches the app through RequestCycle, so message order, the 500-before-the-head vs
abort-after-it rule, http.disconnect, trailers, backpressure and --limit-concurrency are checked
here once, against the owner contract (cycle.CycleOwner) rather than through HTTP/1.1 or HTTP/2.
"""

from __future__ import annotations

import asyncio
import functools
import logging
import os
from collections.abc import Callable, Coroutine
from types import MappingProxyType
from typing import Any

import pytest

from celeris_asgi.asgi_types import Headers, Message
from celeris_asgi.config import Config
from celeris_asgi.cycle import COMPLETE, FILE_CHUNK, CycleOwner, Endpoint, RequestCycle, build_scope
from celeris_asgi.headers import DefaultHeaders
from celeris_asgi.settings import ServerSettings
from celeris_asgi.state import ServerState

pytestmark = pytest.mark.timeout(10)


def in_loop(test: Callable[..., Coroutine[Any, Any, None]]) -> Callable[..., None]:
    """Run an async test on a fresh event loop (the suite has no asyncio plugin)."""

    @functools.wraps(test)
    def run(*args: Any, **kwargs: Any) -> None:
        asyncio.run(test(*args, **kwargs))

    return run


async def _unused_app(scope: Any, receive: Any, send: Any) -> None:
    raise AssertionError("the recording owner runs the app it is given")


def make_settings(**overrides: Any) -> ServerSettings:
    config = Config(_unused_app, access_log=False, log_config=None, **overrides)
    config.loaded_app = _unused_app
    return ServerSettings.from_config(config)


class RecordingOwner(CycleOwner):
    """A CycleOwner that records every call; `paused` makes writes ask the cycle to drain."""

    def __init__(self, settings: ServerSettings | None = None) -> None:
        super().__init__(
            settings or make_settings(), ServerState(DefaultHeaders(True, True, [])), asyncio.get_running_loop()
        )
        self.calls: list[tuple[Any, ...]] = []
        self.paused = False
        self.drained = asyncio.Event()
        self.done = asyncio.Event()

    def write_head(self, cycle: RequestCycle, status: int, headers: Headers, body: bytes, more_body: bool) -> bool:
        self.calls.append(("head", status, list(headers), body, more_body))
        return self.paused

    def write_body(self, cycle: RequestCycle, body: bytes, more_body: bool) -> bool:
        self.calls.append(("body", body, more_body))
        return self.paused

    def write_trailers(self, cycle: RequestCycle, headers: Headers) -> bool:
        self.calls.append(("trailers", list(headers)))
        return False

    def write_informational(self, cycle: RequestCycle, status: int, headers: Headers) -> None:
        self.calls.append(("informational", status))

    async def drain(self, cycle: RequestCycle) -> None:
        self.calls.append(("drain",))
        await self.drained.wait()

    def body_consumed(self, cycle: RequestCycle, nbytes: int) -> None:
        self.calls.append(("consumed", nbytes))

    def abort_response(self, cycle: RequestCycle) -> None:
        self.calls.append(("abort",))

    def cycle_done(self, cycle: RequestCycle) -> None:
        self.calls.append(("done",))
        self.done.set()

    def kinds(self) -> list[str]:
        return [call[0] for call in self.calls]


def make_cycle(owner: RecordingOwner, **kwargs: Any) -> RequestCycle:
    endpoint = Endpoint(("127.0.0.1", 8000), ("127.0.0.1", 5000), "http", None)
    scope = build_scope(owner.settings, owner.state, endpoint, "1.1", "GET", "/", b"/", b"", [])
    return RequestCycle(scope, owner, **kwargs)


async def run_app(app: Any, **kwargs: Any) -> RecordingOwner:
    owner = RecordingOwner()
    cycle = make_cycle(owner, **kwargs)
    await asyncio.wait_for(cycle.run(app), 5)
    return owner


@in_loop
async def test_a_complete_response_is_head_then_done() -> None:
    async def app(scope: Any, receive: Any, send: Any) -> None:
        await send({"type": "http.response.start", "status": 200, "headers": [(b"x", b"1")]})
        await send({"type": "http.response.body", "body": b"ok"})

    owner = await run_app(app)
    assert owner.calls == [("head", 200, [(b"x", b"1")], b"ok", False), ("done",)]


@in_loop
async def test_messages_that_are_mappings_but_not_dicts_are_served() -> None:
    """send() reads dict messages directly (compiled: C dict access) and takes any other Mapping too."""

    async def app(scope: Any, receive: Any, send: Any) -> None:
        await send(MappingProxyType({"type": "http.response.start", "status": 201, "headers": [(b"x", b"1")]}))
        await send(MappingProxyType({"type": "http.response.body", "body": b"ok"}))

    owner = await run_app(app)
    assert owner.calls == [("head", 201, [(b"x", b"1")], b"ok", False), ("done",)]


@in_loop
async def test_an_exception_before_the_head_becomes_a_500_with_the_server_made_answer(
    caplog: pytest.LogCaptureFixture,
) -> None:
    async def app(scope: Any, receive: Any, send: Any) -> None:
        await send({"type": "http.response.start", "status": 200})
        raise ValueError("boom")

    with caplog.at_level(logging.ERROR, logger="celeris.error"):
        owner = await run_app(app)
    head = owner.calls[0]
    assert head[:2] == ("head", 500)
    assert (b"connection", b"close") in head[2] and head[3] == b"Internal Server Error"
    assert owner.kinds() == ["head", "done"]
    assert [r.message for r in caplog.records].count("Exception in ASGI application") == 1


@in_loop
async def test_an_exception_after_the_head_aborts_the_response() -> None:
    async def app(scope: Any, receive: Any, send: Any) -> None:
        await send({"type": "http.response.start", "status": 200})
        await send({"type": "http.response.body", "body": b"part", "more_body": True})
        raise ValueError("boom")

    owner = await run_app(app)
    assert owner.kinds() == ["head", "abort", "done"]


@in_loop
async def test_an_invalid_header_found_while_writing_the_head_still_gets_a_500() -> None:
    class RefusingOwner(RecordingOwner):
        def write_head(self, cycle: RequestCycle, status: int, headers: Headers, body: bytes, more: bool) -> bool:
            if status == 200:
                raise RuntimeError("Invalid HTTP header value")
            return super().write_head(cycle, status, headers, body, more)

    async def app(scope: Any, receive: Any, send: Any) -> None:
        await send({"type": "http.response.start", "status": 200, "headers": [(b"x", b"a\r\nb")]})
        await send({"type": "http.response.body", "body": b"ok"})

    owner = RefusingOwner()
    await asyncio.wait_for(make_cycle(owner).run(app), 5)
    assert owner.calls[0][:2] == ("head", 500)


@pytest.mark.parametrize(
    ("messages", "error"),
    [
        ([{"type": "http.response.body", "body": b"x"}], "Expected ASGI message 'http.response.start'"),
        ([{"type": "http.response.start", "status": 200}] * 2, "after response started"),
        (
            [
                {"type": "http.response.start", "status": 200},
                {"type": "http.response.body"},
                {"type": "http.response.body"},
            ],
            "after response completed",
        ),
        ([{"type": "http.response.start", "status": 200}, {"type": "http.response.trailers"}], "trailers"),
        ([{"type": "http.response.start", "status": 200}, {"type": "http.response.early_hint"}], "early_hint"),
        ([{"type": "no.such.message"}], "Unexpected ASGI message type"),
    ],
    ids=["body-before-start", "start-twice", "body-after-complete", "trailers-unannounced", "hint-late", "unknown"],
)
@in_loop
async def test_messages_out_of_order_raise_in_the_app(messages: list[Message], error: str) -> None:
    raised: list[str] = []

    async def app(scope: Any, receive: Any, send: Any) -> None:
        try:
            for message in messages:
                await send(message)
        except RuntimeError as exc:
            raised.append(str(exc))
            raise

    await run_app(app)
    assert len(raised) == 1 and error in raised[0]


@in_loop
async def test_returning_without_a_response_is_a_500() -> None:
    async def app(scope: Any, receive: Any, send: Any) -> None:
        return None

    owner = await run_app(app)
    assert owner.calls[0][:2] == ("head", 500)


@in_loop
async def test_returning_mid_response_aborts() -> None:
    async def app(scope: Any, receive: Any, send: Any) -> None:
        await send({"type": "http.response.start", "status": 200})
        await send({"type": "http.response.body", "body": b"a", "more_body": True})

    owner = await run_app(app)
    assert owner.kinds() == ["head", "abort", "done"]


@in_loop
async def test_trailers_complete_the_response() -> None:
    async def app(scope: Any, receive: Any, send: Any) -> None:
        await send({"type": "http.response.start", "status": 200, "trailers": True})
        await send({"type": "http.response.body", "body": b"a"})
        await send({"type": "http.response.trailers", "headers": [(b"grpc-status", b"0")]})

    owner = await run_app(app)
    assert owner.kinds() == ["head", "trailers", "done"]


@in_loop
async def test_body_parts_then_end_of_body_then_disconnect() -> None:
    owner = RecordingOwner()
    cycle = make_cycle(owner)
    received: list[Message] = []

    async def app(scope: Any, receive: Any, send: Any) -> None:
        while True:
            message = await receive()
            received.append(message)
            if message["type"] == "http.disconnect":
                return

    task = asyncio.ensure_future(cycle.run(app))
    await asyncio.sleep(0)  # the app now waits in receive()
    cycle.feed_body(b"ab")
    await asyncio.sleep(0)
    cycle.feed_body(b"c")
    cycle.feed_eof()
    await asyncio.sleep(0)
    cycle.feed_disconnect()
    await asyncio.wait_for(task, 5)
    assert received == [
        {"type": "http.request", "body": b"ab", "more_body": True},
        {"type": "http.request", "body": b"c", "more_body": False},
        {"type": "http.disconnect"},
    ]
    assert ("consumed", 2) in owner.calls and ("consumed", 1) in owner.calls


@in_loop
async def test_send_after_disconnect_raises_an_oserror() -> None:
    raised: list[BaseException] = []

    async def app(scope: Any, receive: Any, send: Any) -> None:
        assert (await receive())["type"] == "http.disconnect"
        try:
            await send({"type": "http.response.start", "status": 200})
        except OSError as exc:
            raised.append(exc)
            raise

    owner = RecordingOwner()
    cycle = make_cycle(owner)
    task = asyncio.ensure_future(cycle.run(app))
    await asyncio.sleep(0)
    cycle.feed_disconnect()
    await asyncio.wait_for(task, 5)
    assert len(raised) == 1
    assert owner.kinds() == ["consumed", "done"]  # waiting for body, then nothing written for a client that left


@in_loop
async def test_expect_continue_sends_100_on_the_first_receive_only() -> None:
    async def app(scope: Any, receive: Any, send: Any) -> None:
        await receive()
        await send({"type": "http.response.start", "status": 204})
        await send({"type": "http.response.body"})

    owner = await run_app(app, expect_continue=True, body_complete=True)
    assert owner.kinds() == ["informational", "head", "done"]


@in_loop
async def test_a_paused_owner_makes_send_wait_for_drain() -> None:
    owner = RecordingOwner()
    owner.paused = True
    cycle = make_cycle(owner)
    sent = asyncio.Event()

    async def app(scope: Any, receive: Any, send: Any) -> None:
        await send({"type": "http.response.start", "status": 200})
        await send({"type": "http.response.body", "body": b"a", "more_body": True})
        sent.set()
        await send({"type": "http.response.body", "body": b"b"})

    task = asyncio.ensure_future(cycle.run(app))
    await asyncio.sleep(0)
    assert not sent.is_set() and owner.kinds() == ["head", "drain"]
    owner.drained.set()
    await asyncio.wait_for(task, 5)
    assert owner.kinds() == ["head", "drain", "body", "drain", "done"]


@in_loop
async def test_over_the_concurrency_limit_the_cycle_answers_503_without_running_the_app() -> None:
    owner = RecordingOwner(make_settings(limit_concurrency=1))
    blocker = asyncio.ensure_future(asyncio.Event().wait())
    owner.state.tasks.add(blocker)  # one request already in flight
    cycle = make_cycle(owner, body_complete=True)
    cycle.start()
    blocker.cancel()
    assert owner.calls[0][:2] == ("head", 503)
    assert owner.kinds() == ["head", "done"] and owner.state.total_requests == 1


@in_loop
@pytest.mark.parametrize("eager", [False, True])
async def test_a_task_factory_the_app_set_on_the_loop_runs_every_request(eager: bool) -> None:
    """The cycle makes its tasks itself where no factory is set, but never bypasses one that is."""

    async def app(scope: Any, receive: Any, send: Any) -> None:
        await send({"type": "http.response.start", "status": 204})
        await send({"type": "http.response.body"})

    config = Config(app, access_log=False, log_config=None)
    config.loaded_app = app
    owner = RecordingOwner(ServerSettings.from_config(config))
    made: list[Any] = []

    def factory(loop: asyncio.AbstractEventLoop, coro: Any, **kwargs: Any) -> asyncio.Task[Any]:
        made.append(coro)
        return asyncio.Task(coro, loop=loop, **kwargs)

    owner.loop.set_task_factory(factory)
    cycle = make_cycle(owner, body_complete=True)
    cycle.start(eager)
    assert len(made) == 1
    await asyncio.wait_for(owner.done.wait(), 5)
    assert owner.calls[0][:2] == ("head", 204) and owner.kinds() == ["head", "done"]


@in_loop
async def test_build_scope_joins_root_path_and_copies_state() -> None:
    owner = RecordingOwner(make_settings(root_path="/api"))
    owner.state.app_state["db"] = "conn"
    endpoint = Endpoint(("127.0.0.1", 8000), ("10.0.0.1", 1234), "https", None)
    scope = build_scope(owner.settings, owner.state, endpoint, "2", "POST", "/x", b"/x", b"a=1", [(b"h", b"v")])
    assert scope["path"] == "/api/x" and scope["raw_path"] == b"/api/x" and scope["root_path"] == "/api"
    assert scope["scheme"] == "https" and scope["client"] == ("10.0.0.1", 1234) and scope["http_version"] == "2"
    assert scope["state"] == {"db": "conn"} and scope["state"] is not owner.state.app_state


# ----- file bodies: http.response.pathsend and http.response.zerocopysend --------------------


def body_of(owner: RecordingOwner) -> bytes:
    """The response body the owner was given, head part included."""
    return b"".join(call[3] if call[0] == "head" else call[1] for call in owner.calls if call[0] in ("head", "body"))


def path_app(path: str) -> Any:
    async def app(scope: Any, receive: Any, send: Any) -> None:
        await send({"type": "http.response.start", "status": 200})
        await send({"type": "http.response.pathsend", "path": path})

    return app


@in_loop
async def test_pathsend_is_declared_and_sends_the_file_in_bounded_parts(tmp_path: Any) -> None:
    content = os.urandom(FILE_CHUNK * 2 + 1000)
    (tmp_path / "f").write_bytes(content)
    owner = RecordingOwner()
    cycle = make_cycle(owner)
    assert "http.response.pathsend" in cycle.scope["extensions"]
    assert "http.response.zerocopysend" in cycle.scope["extensions"]
    await asyncio.wait_for(cycle.run(path_app(str(tmp_path / "f"))), 5)
    assert owner.kinds() == ["head", "body", "body", "done"]
    assert [len(call[3] if call[0] == "head" else call[1]) for call in owner.calls[:3]] == [
        FILE_CHUNK,
        FILE_CHUNK,
        1000,
    ]
    assert [call[-1] for call in owner.calls[:3]] == [True, True, False]
    assert body_of(owner) == content and cycle.phase == COMPLETE


@in_loop
async def test_pathsend_waits_for_the_owner_to_drain_between_parts(tmp_path: Any) -> None:
    (tmp_path / "f").write_bytes(b"x" * (FILE_CHUNK + 1))
    owner = RecordingOwner()
    owner.paused = True
    task = asyncio.ensure_future(make_cycle(owner).run(path_app(str(tmp_path / "f"))))
    await asyncio.sleep(0.01)
    assert owner.kinds() == ["head", "drain"]  # the second part waits for the window to reopen
    owner.drained.set()
    await asyncio.wait_for(task, 5)
    assert owner.kinds() == ["head", "drain", "body", "drain", "done"]


@in_loop
async def test_an_empty_file_is_an_empty_body(tmp_path: Any) -> None:
    (tmp_path / "f").write_bytes(b"")
    owner = await run_app(path_app(str(tmp_path / "f")))
    assert owner.calls == [("head", 200, [], b"", False), ("done",)]


@pytest.mark.parametrize(
    ("name", "error"),
    [("missing", "cannot open"), ("dir", "is a directory"), ("relative", "needs an absolute path")],
)
@in_loop
async def test_an_unusable_path_is_a_500_logged_once(
    tmp_path: Any, caplog: pytest.LogCaptureFixture, name: str, error: str
) -> None:
    (tmp_path / "dir").mkdir()
    path = "relative/file" if name == "relative" else str(tmp_path / name)
    with caplog.at_level(logging.ERROR, logger="celeris.error"):
        owner = await run_app(path_app(path))
    assert owner.calls[0][:2] == ("head", 500) and owner.kinds() == ["head", "done"]
    errors = [record for record in caplog.records if record.levelno >= logging.ERROR]
    assert len(errors) == 1 and errors[0].exc_info is not None and error in str(errors[0].exc_info[1])


@in_loop
async def test_a_file_truncated_while_it_is_sent_aborts_the_response(tmp_path: Any) -> None:
    path = tmp_path / "f"
    path.write_bytes(b"x" * (FILE_CHUNK * 3))

    class TruncatingOwner(RecordingOwner):
        def write_head(self, cycle: RequestCycle, status: int, headers: Headers, body: bytes, more: bool) -> bool:
            os.truncate(path, FILE_CHUNK + 10)
            return super().write_head(cycle, status, headers, body, more)

    owner = TruncatingOwner()
    await asyncio.wait_for(make_cycle(owner).run(path_app(str(path))), 5)
    assert owner.kinds() == ["head", "body", "abort", "done"]
    assert len(body_of(owner)) == FILE_CHUNK + 10


@in_loop
async def test_pathsend_before_the_start_raises_in_the_app(tmp_path: Any) -> None:
    raised: list[str] = []

    async def app(scope: Any, receive: Any, send: Any) -> None:
        try:
            await send({"type": "http.response.pathsend", "path": str(tmp_path)})
        except RuntimeError as exc:
            raised.append(str(exc))
            raise

    owner = await run_app(app)
    assert "Unexpected ASGI message 'http.response.pathsend'" in raised[0] and owner.calls[0][:2] == ("head", 500)


@in_loop
async def test_zerocopysend_takes_offset_count_and_more_body_and_moves_the_position(tmp_path: Any) -> None:
    (tmp_path / "f").write_bytes(b"0123456789")

    with open(tmp_path / "f", "rb") as file:
        file.seek(2)

        async def app(scope: Any, receive: Any, send: Any) -> None:
            await send({"type": "http.response.start", "status": 200})
            await send({"type": "http.response.zerocopysend", "file": file, "count": 3, "more_body": True})
            await send({"type": "http.response.zerocopysend", "file": file.fileno(), "offset": 8, "more_body": True})
            await send({"type": "http.response.zerocopysend", "file": file, "more_body": True})  # position to end
            await send({"type": "http.response.body", "body": b"!"})

        owner = await run_app(app)
    assert body_of(owner) == b"23489" + b"56789" + b"!"


@pytest.mark.parametrize("takes_it", [True, False], ids=["fast-path", "declined"])
@in_loop
async def test_an_owner_with_send_file_gets_the_whole_range_after_the_head(tmp_path: Any, takes_it: bool) -> None:
    (tmp_path / "f").write_bytes(b"abcdef")

    class SendfileOwner(RecordingOwner):
        async def send_file(self, cycle: RequestCycle, fd: int, offset: int, count: int) -> bool:
            self.calls.append(("send_file", os.pread(fd, count, offset), takes_it))
            return takes_it

    owner = SendfileOwner()
    await asyncio.wait_for(make_cycle(owner).run(path_app(str(tmp_path / "f"))), 5)
    assert owner.calls[:2] == [("head", 200, [], b"", True), ("send_file", b"abcdef", takes_it)]
    assert owner.calls[2:] == [("body", b"" if takes_it else b"abcdef", False), ("done",)]
