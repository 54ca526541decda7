"""WebSockets over HTTP/1.1 (RFC 6455) on a live server: websockets clients, raw frames, frameworks."""

from __future__ import annotations

import asyncio
import base64
import os
import queue
import socket
import ssl
import threading
import time
from typing import Any

import pytest
import trustme
from fastapi import FastAPI, WebSocket
from starlette.applications import Starlette
from starlette.routing import WebSocketRoute
from websockets.asyncio.client import connect as async_connect
from websockets.exceptions import ConnectionClosed, InvalidStatus
from websockets.frames import Frame, Opcode
from websockets.protocol import Protocol, Side
from websockets.sync.client import connect as sync_connect

from celeris_asgi.protocols import websocket as websocket_module
from tests.apps import until_set
from tests.conftest import raw_exchange, response_status
from tests.rawhttp import first_response
from tests.test_cli import one_error_line, run_cli

pytestmark = pytest.mark.timeout(15)


# ----- helpers -------------------------------------------------------------------------------


def connect(server: Any, path: str = "/", **kwargs: Any) -> Any:
    """The websockets sync client on the test server, with short timeouts and no proxy lookup."""
    kwargs.setdefault("open_timeout", 5)
    kwargs.setdefault("close_timeout", 5)
    kwargs.setdefault("proxy", None)
    return sync_connect(f"ws://127.0.0.1:{server.port}{path}", **kwargs)


def upgrade_request(path: bytes = b"/", extra: bytes = b"", key: bytes | None = None) -> bytes:
    key = base64.b64encode(os.urandom(16)) if key is None else key
    return (
        b"GET %s HTTP/1.1\r\nHost: 127.0.0.1\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
        b"Sec-WebSocket-Key: %s\r\nSec-WebSocket-Version: 13\r\n%s\r\n" % (path, key, extra)
    )


class RawClient:
    """A hand-driven WebSocket client: sends any frame (even invalid ones) and parses what comes back."""

    def __init__(self, port: int, trailing: bytes = b"") -> None:
        self.sock = socket.create_connection(("127.0.0.1", port), timeout=5)
        self.sock.sendall(upgrade_request() + trailing)
        data = b""
        while b"\r\n\r\n" not in data:
            chunk = self.sock.recv(65536)
            assert chunk, f"closed during the handshake: {data!r}"
            data += chunk
        self.head, _, rest = data.partition(b"\r\n\r\n")
        assert self.head.startswith(b"HTTP/1.1 101 "), self.head
        self.parser = Protocol(Side.CLIENT)
        self.parser.receive_data(rest)

    def send(self, opcode: Opcode, data: bytes, fin: bool = True, mask: bool = True) -> None:
        self.sock.sendall(Frame(opcode, data, fin).serialize(mask=mask, extensions=[]))

    def read_frame(self) -> Frame:
        events = self.parser.events_received()
        while not events:
            chunk = self.sock.recv(65536)
            assert chunk, "the server closed the connection"
            self.parser.receive_data(chunk)
            events = self.parser.events_received()
        return events[0]

    def read_until_eof(self, timeout: float = 5.0) -> list[Frame]:
        """Every frame the server sends until it closes the TCP connection."""
        self.sock.settimeout(timeout)
        frames = list(self.parser.events_received())
        while True:
            try:
                chunk = self.sock.recv(65536)
            except ConnectionResetError:
                chunk = b""
            if not chunk:
                self.parser.receive_eof()
                return frames
            self.parser.receive_data(chunk)
            frames.extend(self.parser.events_received())

    def close(self) -> None:
        self.sock.close()


def close_code(frames: list[Frame]) -> int:
    closes = [frame for frame in frames if frame.opcode is Opcode.CLOSE]
    assert closes, f"no close frame in {frames}"
    return int.from_bytes(closes[-1].data[:2], "big")


async def echo_loop(receive: Any, send: Any) -> None:
    """Echoes every message until the client goes away."""
    while True:
        message = await receive()
        if message["type"] == "websocket.disconnect":
            return
        await send({"type": "websocket.send", "text": message.get("text"), "bytes": message.get("bytes")})


async def echo(scope: dict[str, Any], receive: Any, send: Any) -> None:
    """Accepts, then echoes every message until the client goes away."""
    if scope["type"] != "websocket":
        return
    await receive()
    await send({"type": "websocket.accept"})
    await echo_loop(receive, send)


async def raises_before_or_after_accept(scope: dict[str, Any], receive: Any, send: Any) -> None:
    """Raises before accepting, or on /after right after accepting and one message."""
    if scope["type"] != "websocket":
        return
    await receive()
    if scope["path"] == "/after":
        await send({"type": "websocket.accept"})
        await receive()
    raise RuntimeError("boom")


def recording(events: queue.Queue[Any]) -> Any:
    """An echo app that also reports its disconnect message to the test thread."""

    async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] != "websocket":
            return
        await receive()
        await send({"type": "websocket.accept"})
        while True:
            message = await receive()
            if message["type"] == "websocket.disconnect":
                events.put(message)
                return
            await send({"type": "websocket.send", "text": message.get("text"), "bytes": message.get("bytes")})

    return app


# ----- handshake and scope -------------------------------------------------------------------


def test_asgi_2_4_websocket_scope(serve):
    scopes: queue.Queue[tuple[dict[str, Any], dict[str, Any]]] = queue.Queue()

    async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] == "lifespan":
            await receive()
            scope["state"]["shared"] = "yes"
            await send({"type": "lifespan.startup.complete"})
            await receive()
            await send({"type": "lifespan.shutdown.complete"})
            return
        state_given = dict(scope["state"])
        scope["state"]["mine"] = True  # a shallow copy: must not leak into the server's state
        scopes.put((scope, state_given))
        await receive()
        await send({"type": "websocket.close"})

    server = serve(app, root_path="/root")
    with pytest.raises(InvalidStatus):
        connect(server, "/p%20q?x=1", subprotocols=["a", "b"])
    scope, state_given = scopes.get(timeout=5)
    assert scope["type"] == "websocket"
    assert scope["asgi"] == {"version": "3.0", "spec_version": "2.4"}
    assert scope["http_version"] == "1.1"
    assert scope["scheme"] == "ws"
    assert scope["path"] == "/root/p q"
    assert scope["raw_path"] == b"/root/p%20q"
    assert scope["root_path"] == "/root"
    assert scope["query_string"] == b"x=1"
    assert (b"sec-websocket-protocol", b"a, b") in scope["headers"]
    assert scope["subprotocols"] == ["a", "b"]
    assert scope["client"][0] == "127.0.0.1"
    assert scope["server"] == ("127.0.0.1", server.port)
    assert state_given == {"shared": "yes"}
    assert scope["state"] == {"shared": "yes", "mine": True}
    with pytest.raises(InvalidStatus):  # the next connection is given the lifespan state, unchanged
        connect(server)
    assert scopes.get(timeout=5)[1] == {"shared": "yes"}
    assert scope["extensions"] == {"websocket.http.response": {}}
    assert "method" not in scope


def test_accept_with_subprotocol_and_extra_headers(serve):
    async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] != "websocket":
            return
        await receive()
        await send({"type": "websocket.accept", "subprotocol": "b", "headers": [(b"x-extra", b"1")]})
        await send({"type": "websocket.send", "text": "hi"})
        await send({"type": "websocket.close"})

    server = serve(app)
    with connect(server, subprotocols=["a", "b"]) as ws:
        assert ws.subprotocol == "b"
        assert ws.response.status_code == 101
        assert ws.response.headers["x-extra"] == "1"
        assert ws.response.headers["server"] == "celeris"
        assert ws.recv(timeout=5) == "hi"


def test_echo_text_binary_and_large_messages(serve):
    server = serve(echo)
    with connect(server, max_size=None) as ws:
        ws.send("héllo")
        assert ws.recv(timeout=5) == "héllo"
        ws.send(b"\x00\xff")
        assert ws.recv(timeout=5) == b"\x00\xff"
        big = os.urandom(3 * 1024 * 1024)  # incompressible, several socket buffers long both ways
        ws.send(big)
        assert ws.recv(timeout=10) == big


def test_asyncio_client_concurrent_connections(serve):
    server = serve(echo)

    async def one(n: int) -> list[str]:
        async with async_connect(f"ws://127.0.0.1:{server.port}/", proxy=None, open_timeout=5) as ws:
            got = []
            for i in range(50):
                await ws.send(f"{n}-{i}")
                got.append(await ws.recv())
            return got

    async def main() -> list[list[str]]:
        return await asyncio.gather(*(one(n) for n in range(5)))

    results = asyncio.run(main())
    assert results == [[f"{n}-{i}" for i in range(50)] for n in range(5)]


def test_frames_sent_with_the_upgrade_request_reach_the_app(serve):
    server = serve(echo)
    frame = Frame(Opcode.TEXT, b"early").serialize(mask=True, extensions=[])
    client = RawClient(server.port, trailing=frame)
    try:
        frame = client.read_frame()
        assert frame.opcode is Opcode.TEXT and frame.data == b"early"
    finally:
        client.close()


@pytest.mark.parametrize(
    ("request_bytes", "status"),
    [
        (upgrade_request(key=b"not-base64!"), 400),
        (upgrade_request().replace(b"Version: 13", b"Version: 12"), 400),
    ],
    ids=["bad-key", "bad-version"],
)
def test_rfc6455_4_2_1_invalid_opening_handshake_is_refused(serve, request_bytes, status):
    server = serve(echo)
    assert response_status(raw_exchange(server.port, request_bytes)) == status


def test_wss_over_tls_has_scheme_wss(serve, tmp_path):
    ca = trustme.CA()
    leaf = ca.issue_cert("127.0.0.1")
    cert, key = tmp_path / "cert.pem", tmp_path / "key.pem"
    leaf.cert_chain_pems[0].write_to_path(cert)
    leaf.private_key_pem.write_to_path(key)
    schemes: queue.Queue[str] = queue.Queue()

    async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] == "websocket":
            schemes.put(scope["scheme"])
            await echo(scope, receive, send)

    server = serve(app, ssl_certfile=str(cert), ssl_keyfile=str(key))
    context = ssl.create_default_context()
    ca.configure_trust(context)
    url = f"wss://127.0.0.1:{server.port}/"
    with sync_connect(url, ssl=context, proxy=None, open_timeout=5, max_size=None) as ws:
        big = os.urandom(1024 * 1024)
        ws.send(big)
        assert ws.recv(timeout=5) == big
    assert schemes.get(timeout=5) == "wss"


# ----- the app's answers before accepting -------------------------------------------------------


def test_close_before_accept_is_a_403(serve):
    async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] == "websocket":
            await receive()
            await send({"type": "websocket.close", "code": 1008})

    server = serve(app)
    with pytest.raises(InvalidStatus) as info:
        connect(server)
    assert info.value.response.status_code == 403


def test_denial_response_extension(serve):
    async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] != "websocket":
            return
        await receive()
        streamed = scope["path"] == "/streamed"
        headers = [(b"content-type", b"text/plain"), (b"x-why", b"token")]
        await send({"type": "websocket.http.response.start", "status": 401, "headers": headers})
        await send({"type": "websocket.http.response.body", "body": b"no ", "more_body": streamed})
        if streamed:
            await send({"type": "websocket.http.response.body", "body": b"entry"})

    server = serve(app)
    for path, body in (("/", b"no "), ("/streamed", b"no entry")):
        with pytest.raises(InvalidStatus) as info:
            connect(server, path)
        response = info.value.response
        assert response.status_code == 401
        assert response.headers["x-why"] == "token"
        assert response.body == body


def test_app_raising_before_accept_is_a_500_and_after_accept_a_1011(serve):
    server = serve(raises_before_or_after_accept)
    with pytest.raises(InvalidStatus) as info:
        connect(server, "/before")
    assert info.value.response.status_code == 500
    with connect(server, "/after") as ws:
        ws.send("x")
        with pytest.raises(ConnectionClosed) as closed:
            ws.recv(timeout=5)
        assert closed.value.rcvd.code == 1011


def test_app_returning_without_an_answer_is_a_500_and_after_accept_a_1000(serve):
    async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] == "websocket":
            await receive()
            if scope["path"] == "/accepted":
                await send({"type": "websocket.accept"})

    server = serve(app)
    with pytest.raises(InvalidStatus) as info:
        connect(server)
    assert info.value.response.status_code == 500
    with connect(server, "/accepted") as ws, pytest.raises(ConnectionClosed) as closed:
        ws.recv(timeout=5)
    assert closed.value.rcvd.code == 1000


# ----- close handshake ---------------------------------------------------------------------------


def test_rfc6455_7_close_with_the_apps_code_and_reason(serve):
    async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] == "websocket":
            await receive()
            await send({"type": "websocket.accept"})
            await send({"type": "websocket.close", "code": 4001, "reason": "bye now"})
            assert (await receive())["type"] == "websocket.disconnect"

    server = serve(app)
    with connect(server) as ws, pytest.raises(ConnectionClosed) as closed:
        ws.recv(timeout=5)
    assert (closed.value.rcvd.code, closed.value.rcvd.reason) == (4001, "bye now")


def test_client_close_code_and_reason_reach_the_app(serve):
    events: queue.Queue[Any] = queue.Queue()
    server = serve(recording(events))
    with connect(server) as ws:
        ws.send("x")
        ws.recv(timeout=5)
        ws.close(4002, "later")
    assert events.get(timeout=5) == {"type": "websocket.disconnect", "code": 4002, "reason": "later"}


def test_abrupt_client_disconnect_is_a_1006_and_send_then_raises_oserror(serve):
    outcome: queue.Queue[Any] = queue.Queue()

    async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] != "websocket":
            return
        await receive()
        await send({"type": "websocket.accept"})
        outcome.put(await receive())
        try:
            await send({"type": "websocket.send", "text": "too late"})
        except OSError:
            outcome.put("oserror")

    server = serve(app)
    RawClient(server.port).close()
    assert outcome.get(timeout=5) == {"type": "websocket.disconnect", "code": 1006, "reason": ""}
    assert outcome.get(timeout=5) == "oserror"


# ----- frames: fragmentation, UTF-8, protocol errors, size --------------------------------------------


def test_fragmented_messages_are_reassembled(serve):
    server = serve(echo, ws_max_size=2 * 1024 * 1024)
    with connect(server, max_size=None) as ws:
        parts = ["é" * 300 + str(i) for i in range(2000)]  # ~1.2 MB of text in 2000 small fragments
        ws.send(parts)
        assert ws.recv(timeout=10) == "".join(parts)
        ws.send([b"a", b"b", b"c"])
        assert ws.recv(timeout=5) == b"abc"


def test_utf8_sequence_split_across_fragments(serve):
    server = serve(echo)
    client = RawClient(server.port)
    try:
        client.send(Opcode.TEXT, b"caf\xc3", fin=False)
        client.send(Opcode.CONT, b"\xa9!", fin=True)
        frame = client.read_frame()
        assert frame.opcode is Opcode.TEXT and frame.data.decode() == "café!"
    finally:
        client.close()


def test_rfc6455_8_1_invalid_utf8_fails_fast_with_1007(serve):
    events: queue.Queue[Any] = queue.Queue()
    server = serve(recording(events))
    client = RawClient(server.port)
    try:
        client.send(Opcode.TEXT, b"ok", fin=False)
        client.send(Opcode.CONT, b"\xc3\x28", fin=False)  # invalid already: no need to wait for FIN
        assert close_code(client.read_until_eof()) == 1007
    finally:
        client.close()
    assert events.get(timeout=5)["code"] == 1007
    client = RawClient(server.port)
    try:
        client.send(Opcode.TEXT, b"\xff")
        assert close_code(client.read_until_eof()) == 1007
    finally:
        client.close()


@pytest.mark.parametrize(
    "frame_args",
    [
        {"opcode": Opcode.TEXT, "data": b"unmasked", "mask": False},
        {"opcode": Opcode.CONT, "data": b"no message to continue"},
    ],
    ids=["unmasked-client-frame", "orphan-continuation"],
)
def test_rfc6455_protocol_errors_close_with_1002(serve, frame_args):
    server = serve(echo)
    client = RawClient(server.port)
    try:
        client.send(**frame_args)
        assert close_code(client.read_until_eof()) == 1002
    finally:
        client.close()


def test_message_over_ws_max_size_closes_with_1009(serve):
    events: queue.Queue[Any] = queue.Queue()
    server = serve(recording(events), ws_max_size=1024)
    with connect(server) as ws:
        ws.send("x" * 1024)
        assert ws.recv(timeout=5) == "x" * 1024
        with pytest.raises(ConnectionClosed) as closed:
            # The limit is on the whole message, not one fragment. The server's close can reach
            # the client before it sends the final empty fragment, so send may raise as well.
            ws.send(["x" * 600, "x" * 600])
            ws.recv(timeout=5)
    assert closed.value.rcvd.code == 1009
    assert events.get(timeout=5)["code"] == 1009


@pytest.mark.parametrize("deflate", [True, False])
def test_per_message_deflate_follows_the_setting(serve, deflate):
    server = serve(echo, ws_per_message_deflate=deflate)
    with connect(server) as ws:
        extensions = ws.response.headers.get("sec-websocket-extensions", "")
        assert ("permessage-deflate" in extensions) is deflate
        text = "compress me " * 50_000
        ws.send(text)
        assert ws.recv(timeout=5) == text


# ----- flow control, keepalive ----------------------------------------------------------------


def test_ws_max_queue_pauses_reading_while_the_app_lags(serve):
    """With ws_max_queue=2 and an app that does not receive yet, the server stops reading: 4 MiB of
    messages cannot all go out (a small client send buffer; the server's receive window stops growing
    once it stops reading: about 0.5 MiB goes out), where an unbounded queue takes them all at once."""
    go = threading.Event()

    async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] != "websocket":
            return
        await receive()
        await send({"type": "websocket.accept"})
        await until_set(go)
        await echo_loop(receive, send)

    server = serve(app, ws_max_queue=2)
    payloads = [os.urandom(64 * 1024) for _ in range(64)]
    sock = socket.create_connection(("127.0.0.1", server.port), timeout=5)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 64 * 1024)
    with connect(server, sock=sock, compression=None, max_size=None) as ws:
        sender = threading.Thread(target=lambda: [ws.send(p) for p in payloads], daemon=True)
        sender.start()
        sender.join(0.5)  # a negative: the sends must NOT all complete while the app lags
        assert sender.is_alive(), "every message went out: the server kept reading into its queue"
        go.set()
        assert [ws.recv(timeout=5) for _ in payloads] == payloads
        sender.join(5)


def test_send_waits_for_a_slow_reader_and_timeout_send_drops_one_that_never_reads(serve):
    outcome: queue.Queue[Any] = queue.Queue()

    async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] != "websocket":
            return
        await receive()
        await send({"type": "websocket.accept"})
        chunk = os.urandom(256 * 1024)
        sent = 0
        try:
            while True:
                await send({"type": "websocket.send", "bytes": chunk})
                sent += 1
        except OSError:
            outcome.put(sent)

    server = serve(app, timeout_send=1, ws_per_message_deflate=False)
    client = RawClient(server.port)  # reads nothing
    try:
        sent = outcome.get(timeout=8)
        assert sent < 400  # send() waited on the full socket buffers instead of queueing 100 MB
    finally:
        client.close()


def test_keepalive_closes_a_peer_that_stops_answering_pings(serve):
    events: queue.Queue[Any] = queue.Queue()
    server = serve(recording(events), ws_ping_interval=0.2, ws_ping_timeout=0.3)
    with connect(server, ping_interval=None) as healthy:  # its library answers our pings by itself
        client = RawClient(server.port)  # never reads, never answers
        try:
            started = time.monotonic()
            frames = client.read_until_eof()
            assert time.monotonic() - started < 4
            assert any(frame.opcode is Opcode.PING for frame in frames)
            assert close_code(frames) == 1011
        finally:
            client.close()
        assert events.get(timeout=5)["code"] == 1011
        healthy.send("still here")
        assert healthy.recv(timeout=5) == "still here"


# ----- shutdown ------------------------------------------------------------------------------------


def test_shutdown_closes_open_websockets_with_1012(serve):
    events: queue.Queue[Any] = queue.Queue()
    server = serve(recording(events), timeout_graceful_shutdown=10)
    with connect(server) as ws:
        ws.send("x")
        ws.recv(timeout=5)
        started = time.monotonic()
        server.server.should_exit = True
        with pytest.raises(ConnectionClosed) as closed:
            ws.recv(timeout=5)
        server.thread.join(5)
        assert not server.thread.is_alive()
        assert time.monotonic() - started < 2
    assert closed.value.rcvd.code == 1012
    assert events.get(timeout=1)["code"] == 1012


def test_shutdown_never_hangs_on_a_peer_that_ignores_the_close(serve):
    server = serve(echo, timeout_graceful_shutdown=1)
    client = RawClient(server.port)
    try:
        started = time.monotonic()
        server.server.should_exit = True
        server.thread.join(5)
        assert not server.thread.is_alive()
        assert time.monotonic() - started < 3
        assert close_code(client.read_until_eof()) == 1012
    finally:
        client.close()


# ----- --ws none, frameworks ------------------------------------------------------------------------


async def http_or_ws(scope: dict[str, Any], receive: Any, send: Any) -> None:
    if scope["type"] == "http":
        await send({"type": "http.response.start", "status": 200, "headers": [(b"content-length", b"4")]})
        await send({"type": "http.response.body", "body": b"http"})
    elif scope["type"] == "websocket":
        await echo(scope, receive, send)


def test_ws_none_serves_upgrade_requests_as_plain_http(serve):
    server = serve(http_or_ws, ws="none")
    response = first_response(server.port, upgrade_request())
    assert (response.status, response.body) == (200, b"http")


def test_without_the_websockets_library_upgrades_are_plain_http(serve, monkeypatch):
    monkeypatch.setattr(websocket_module, "ServerProtocol", None)
    server = serve(http_or_ws)
    response = first_response(server.port, upgrade_request())
    assert (response.status, response.body) == (200, b"http")


def test_ws_websockets_without_the_library_is_one_error_line_and_ws_auto_still_serves(cli, tmp_path):
    # A `websockets` package first on sys.path that fails to import, as if the library were missing.
    (tmp_path / "websockets").mkdir()
    (tmp_path / "websockets" / "__init__.py").write_text("raise ImportError('websockets is not installed')\n")
    env = {"PYTHONPATH": os.pathsep.join(filter(None, [str(tmp_path), os.environ.get("PYTHONPATH")]))}
    result = run_cli("tests.cli_apps:app", "--port", "0", "--ws", "websockets", env=env)
    assert result.returncode == 2
    line = one_error_line(result)
    assert line.startswith("celeris: error: --ws websockets needs the websockets library"), line
    assert "pip install" in line
    process = cli("tests.cli_apps:app", "--port", "0", "--ws", "auto", env=env)
    response = first_response(process.port, upgrade_request())
    assert (response.status, response.body) == (200, b"ok")


def test_starlette_websocket_endpoint(serve):
    async def shout(websocket: WebSocket) -> None:
        await websocket.accept(subprotocol="v1")
        async for text in websocket.iter_text():
            await websocket.send_text(text.upper())

    server = serve(Starlette(routes=[WebSocketRoute("/shout", shout)]))
    with connect(server, "/shout", subprotocols=["v1"]) as ws:
        assert ws.subprotocol == "v1"
        ws.send("hey")
        assert ws.recv(timeout=5) == "HEY"
    with pytest.raises(InvalidStatus) as info:
        connect(server, "/nowhere")
    assert info.value.response.status_code == 403


def test_fastapi_websocket_endpoint(serve):
    app = FastAPI()

    @app.websocket("/items/{item_id}")
    async def items(websocket: WebSocket, item_id: int, q: str | None = None) -> None:
        await websocket.accept()
        data = await websocket.receive_json()
        await websocket.send_json({"item": item_id, "q": q, "data": data})
        await websocket.close(code=4000, reason="done")

    server = serve(app)
    with connect(server, "/items/7?q=x") as ws:
        ws.send('{"a": [1, 2]}')
        assert ws.recv(timeout=5) == '{"item":7,"q":"x","data":{"a":[1,2]}}'
        with pytest.raises(ConnectionClosed) as closed:
            ws.recv(timeout=5)
        assert (closed.value.rcvd.code, closed.value.rcvd.reason) == (4000, "done")
    with pytest.raises(InvalidStatus) as info:
        connect(server, "/items/not-a-number")
    assert info.value.response.status_code == 403
