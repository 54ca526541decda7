"""RFC 8441: WebSockets over HTTP/2 streams (extended CONNECT), driven by the h2 library as a raw client."""

from __future__ import annotations

import asyncio
import queue
import socket
import threading
import time
from collections import defaultdict
from typing import Any

import h2.config
import h2.connection
import h2.events
import h2.settings
import pytest
from websockets.extensions.permessage_deflate import ClientPerMessageDeflateFactory
from websockets.frames import Frame, Opcode
from websockets.headers import parse_extension
from websockets.protocol import Protocol, Side

from tests.test_websocket import echo, echo_loop, raises_before_or_after_accept, recording

pytestmark = pytest.mark.timeout(15)


class H2WebSocketClient:
    """An HTTP/2 connection (h2 library) whose extended-CONNECT streams each carry a WebSocket."""

    def __init__(self, port: int) -> None:
        self.sock = socket.create_connection(("127.0.0.1", port), timeout=5)
        config = h2.config.H2Configuration(client_side=True, header_encoding=None)
        self.conn = h2.connection.H2Connection(config)
        self.conn.initiate_connection()
        self.settings: dict[int, int] = {}
        self.responses: dict[int, dict[bytes, bytes]] = {}
        self.bodies: dict[int, bytes] = defaultdict(bytes)
        self.websockets: dict[int, Protocol] = {}
        self.frames: dict[int, list[Frame]] = defaultdict(list)
        self.answering: dict[int, bool] = {}
        self.ended: set[int] = set()
        self.resets: dict[int, int] = {}
        self.goaways: list[int] = []  # last-stream-ids of the GOAWAY frames received
        self.inbox = bytearray()
        self.closed = False
        self.flush()
        self.wait(lambda: self.settings)

    def flush(self) -> None:
        data = self.conn.data_to_send()
        if data:
            self.sock.sendall(data)

    def pump(self, timeout: float = 5.0) -> None:
        """Read once and handle every event (a TimeoutError when nothing arrives in time)."""
        self.sock.settimeout(timeout)
        try:
            data = self.sock.recv(65536)
        except ConnectionResetError:
            data = b""
        if not data:
            self.closed = True
            return
        for event in self.conn.receive_data(self.without_goaway(data)):
            self.handle(event)
        self.flush()

    def without_goaway(self, data: bytes) -> bytes:
        """Complete frames minus GOAWAY, which is recorded here: the h2 library takes any GOAWAY as
        the end and would refuse the PING and DATA of a graceful two-step shutdown (RFC 9113 6.8)."""
        inbox = self.inbox
        inbox += data
        frames = bytearray()
        while len(inbox) >= 9:
            end = 9 + int.from_bytes(inbox[:3], "big")
            if len(inbox) < end:
                break
            if inbox[3] == 0x7:
                self.goaways.append(int.from_bytes(inbox[9:13], "big") & 0x7FFFFFFF)
            else:
                frames += inbox[:end]
            del inbox[:end]
        return bytes(frames)

    def handle(self, event: Any) -> None:
        sid = getattr(event, "stream_id", 0)
        if isinstance(event, h2.events.RemoteSettingsChanged):
            self.settings.update({code: value.new_value for code, value in event.changed_settings.items()})
        elif isinstance(event, h2.events.ResponseReceived):
            self.responses[sid] = dict(event.headers)
            if self.responses[sid][b":status"] == b"200" and sid in self.answering:
                self.websockets[sid] = self.client_protocol(self.responses[sid])
        elif isinstance(event, h2.events.DataReceived):
            self.conn.acknowledge_received_data(event.flow_controlled_length, sid)
            ws = self.websockets.get(sid)
            if ws is None:
                self.bodies[sid] += event.data
                return
            ws.receive_data(event.data)
            self.frames[sid].extend(ws.events_received())
            if self.answering[sid]:  # pongs and the close echo, as a live peer sends them
                self.transmit(sid)
        elif isinstance(event, h2.events.StreamEnded):
            self.ended.add(sid)
            if sid in self.websockets:
                self.websockets[sid].receive_eof()
                if self.answering[sid] and sid not in self.resets:
                    self.conn.end_stream(sid)
        elif isinstance(event, h2.events.StreamReset):
            self.resets[sid] = event.error_code

    @staticmethod
    def client_protocol(response: dict[bytes, bytes]) -> Protocol:
        ws = Protocol(Side.CLIENT, max_size=None)
        offered = response.get(b"sec-websocket-extensions")
        if offered:
            for name, params in parse_extension(offered.decode()):
                assert name == "permessage-deflate"
                ws.extensions.append(ClientPerMessageDeflateFactory().process_response_params(params, []))
        return ws

    def wait(self, condition: Any, timeout: float = 5.0) -> None:
        deadline = time.monotonic() + timeout
        while not condition():
            assert not self.closed, "the server closed the connection"
            assert time.monotonic() < deadline, "timed out"
            self.pump(max(deadline - time.monotonic(), 0.01))

    def open(self, path: str = "/", headers: tuple[tuple[bytes, bytes], ...] = (), answering: bool = True) -> int:
        """Send an extended CONNECT and wait for its response head."""
        sid = self.conn.get_next_available_stream_id()
        self.answering[sid] = answering
        request = [
            (b":method", b"CONNECT"),
            (b":protocol", b"websocket"),
            (b":scheme", b"http"),
            (b":path", path.encode()),
            (b":authority", b"127.0.0.1"),
        ]
        if not any(name == b"sec-websocket-version" for name, _ in headers):
            request.append((b"sec-websocket-version", b"13"))
        self.conn.send_headers(sid, request + list(headers))
        self.flush()
        self.wait(lambda: sid in self.responses or sid in self.resets)
        return sid

    def status(self, sid: int) -> int:
        return int(self.responses[sid][b":status"])

    def transmit(self, sid: int) -> None:
        for data in self.websockets[sid].data_to_send():
            if data:
                self.send_data(sid, data)

    def send_data(self, sid: int, data: bytes) -> None:
        """DATA within the peer's windows, waiting for WINDOW_UPDATE when they are shut."""
        while data:
            room = min(self.conn.local_flow_control_window(sid), self.conn.max_outbound_frame_size)
            if room <= 0:
                self.pump()
                continue
            self.conn.send_data(sid, data[:room])
            data = data[room:]
            self.flush()

    def send(self, sid: int, message: str | bytes) -> None:
        ws = self.websockets[sid]
        if isinstance(message, str):
            ws.send_text(message.encode())
        else:
            ws.send_binary(message)
        self.transmit(sid)

    def recv(self, sid: int) -> str | bytes:
        def data_frame() -> bool:
            return any(f.opcode in (Opcode.TEXT, Opcode.BINARY) for f in self.frames[sid])

        self.wait(data_frame)
        frames = self.frames[sid]
        index = next(i for i, f in enumerate(frames) if f.opcode in (Opcode.TEXT, Opcode.BINARY))
        frame = frames.pop(index)
        return frame.data.decode() if frame.opcode is Opcode.TEXT else bytes(frame.data)

    def close_code(self, sid: int) -> int:
        self.wait(lambda: any(f.opcode is Opcode.CLOSE for f in self.frames[sid]))
        close = next(f for f in self.frames[sid] if f.opcode is Opcode.CLOSE)
        return int.from_bytes(close.data[:2], "big")

    def close(self) -> None:
        self.sock.close()


@pytest.fixture
def h2client():
    clients: list[H2WebSocketClient] = []

    def start(port: int) -> H2WebSocketClient:
        client = H2WebSocketClient(port)
        clients.append(client)
        return client

    yield start
    for client in clients:
        client.close()


# ----- handshake ---------------------------------------------------------------------------------


def test_rfc8441_3_settings_enable_connect_protocol(serve, h2client):
    server = serve(echo)
    assert h2client(server.port).settings.get(h2.settings.SettingCodes.ENABLE_CONNECT_PROTOCOL) == 1
    server = serve(echo, ws="none")
    client = h2client(server.port)
    assert client.settings.get(h2.settings.SettingCodes.ENABLE_CONNECT_PROTOCOL, 0) == 0


def test_rfc8441_5_extended_connect_carries_a_websocket_with_the_asgi_scope(serve, h2client):
    scopes: queue.Queue[dict[str, Any]] = queue.Queue()

    async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] != "websocket":
            return
        scopes.put(scope)
        await receive()
        await send({"type": "websocket.accept", "subprotocol": "chat", "headers": [(b"x-extra", b"1")]})
        await echo_loop(receive, send)

    server = serve(app, root_path="/root")
    client = h2client(server.port)
    sid = client.open("/p%20q?x=1", headers=((b"sec-websocket-protocol", b"chat, other"),))
    response = client.responses[sid]
    assert response[b":status"] == b"200"
    assert response[b"sec-websocket-protocol"] == b"chat"
    assert response[b"x-extra"] == b"1"
    assert b"sec-websocket-accept" not in response
    client.send(sid, "hello")
    assert client.recv(sid) == "hello"
    client.send(sid, b"\x00\x01")
    assert client.recv(sid) == b"\x00\x01"
    scope = scopes.get(timeout=5)
    assert scope["type"] == "websocket"
    assert scope["http_version"] == "2"
    assert scope["scheme"] == "ws"
    assert (scope["path"], scope["raw_path"], scope["query_string"]) == ("/root/p q", b"/root/p%20q", b"x=1")
    assert scope["subprotocols"] == ["chat", "other"]
    assert scope["headers"][0] == (b"host", b"127.0.0.1")
    assert scope["extensions"] == {"websocket.http.response": {}}
    assert "method" not in scope


def test_rfc8441_wrong_websocket_version_is_a_400(serve, h2client):
    server = serve(echo)
    client = h2client(server.port)
    sid = client.open(headers=((b"sec-websocket-version", b"8"),))
    assert client.status(sid) == 400


def test_close_before_accept_is_a_403_and_the_denial_response_works(serve, h2client):
    async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] != "websocket":
            return
        await receive()
        if scope["path"] == "/deny":
            await send({"type": "websocket.http.response.start", "status": 401, "headers": [(b"x-why", b"t")]})
            await send({"type": "websocket.http.response.body", "body": b"no ", "more_body": True})
            await send({"type": "websocket.http.response.body", "body": b"entry"})
        else:
            await send({"type": "websocket.close"})

    server = serve(app)
    client = h2client(server.port)
    sid = client.open("/close")
    assert client.status(sid) == 403
    sid = client.open("/deny", answering=False)
    client.wait(lambda: sid in client.ended)
    assert client.status(sid) == 401
    assert client.responses[sid][b"x-why"] == b"t"
    assert client.bodies[sid] == b"no entry"


def test_app_raising_before_accept_is_a_500_and_after_accept_a_1011(serve, h2client):
    server = serve(raises_before_or_after_accept)
    client = h2client(server.port)
    assert client.status(client.open("/before")) == 500
    sid = client.open("/after")
    client.send(sid, "x")
    assert client.close_code(sid) == 1011


def test_a_normal_request_shares_the_connection_with_websockets(serve, h2client):
    async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] == "http":
            await send({"type": "http.response.start", "status": 200, "headers": []})
            await send({"type": "http.response.body", "body": b"plain"})
        else:
            await echo(scope, receive, send)

    server = serve(app)
    client = h2client(server.port)
    first, second = client.open("/a"), client.open("/b")
    sid = client.conn.get_next_available_stream_id()
    client.conn.send_headers(
        sid,
        [(b":method", b"GET"), (b":scheme", b"http"), (b":path", b"/"), (b":authority", b"x")],
        end_stream=True,
    )
    client.flush()
    client.send(first, "one")
    client.send(second, "two")
    assert (client.recv(second), client.recv(first)) == ("two", "one")
    client.wait(lambda: sid in client.ended)
    assert client.bodies[sid] == b"plain"


# ----- messages, flow control, limits ------------------------------------------------------------------


def test_large_and_compressed_messages_respect_http2_flow_control(serve, h2client):
    server = serve(echo)
    client = h2client(server.port)
    sid = client.open(headers=((b"sec-websocket-extensions", b"permessage-deflate"),))
    assert b"permessage-deflate" in client.responses[sid][b"sec-websocket-extensions"]
    text = "compressible " * 200_000  # 2.6 MB: above every HTTP/2 window, small on the wire
    client.send(sid, text)
    assert client.recv(sid) == text
    blob = bytes(range(256)) * 12_000  # 3 MB that deflate cannot shrink much
    client.send(sid, blob)
    assert client.recv(sid) == blob


def test_message_over_ws_max_size_closes_with_1009(serve, h2client):
    server = serve(echo, ws_max_size=1000)
    client = h2client(server.port)
    sid = client.open()
    client.send(sid, "x" * 1001)
    assert client.close_code(sid) == 1009


def test_ws_max_queue_backpressure_is_http2_flow_control(serve, h2client):
    go = threading.Event()

    async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] != "websocket":
            return
        await receive()
        await send({"type": "websocket.accept"})
        await asyncio.to_thread(go.wait, 10)
        await echo_loop(receive, send)

    server = serve(app, ws_max_queue=1, h2_initial_window_size=65535, ws_per_message_deflate=False)
    client = h2client(server.port)
    sid = client.open()
    messages = [bytes([n]) * 16_000 for n in range(8)]  # 128 KB: twice the stream window
    sent = 0
    while sent < len(messages) and client.conn.local_flow_control_window(sid) >= 16_100:
        client.send(sid, messages[sent])
        sent += 1
    with pytest.raises(TimeoutError):
        client.wait(lambda: False, timeout=0.6)  # no WINDOW_UPDATE comes while the app lags
    # The server holds back the credit for what it received (the client cannot send one more
    # message) instead of reading on into its queue: the pause is seen as HTTP/2 flow control.
    assert client.conn.local_flow_control_window(sid) < 16_100
    go.set()
    for message in messages[sent:]:
        client.send(sid, message)
    assert [client.recv(sid) for _ in messages] == messages


# ----- keepalive, disconnects, shutdown ----------------------------------------------------------------


def test_keepalive_closes_a_stream_whose_peer_stops_answering_pings(serve, h2client):
    events: queue.Queue[Any] = queue.Queue()
    server = serve(recording(events), ws_ping_interval=0.2, ws_ping_timeout=0.3)
    client = h2client(server.port)
    healthy = client.open()
    silent = client.open(answering=False)
    client.wait(lambda: silent in client.ended or silent in client.resets)
    assert any(f.opcode is Opcode.PING for f in client.frames[silent])
    assert client.close_code(silent) == 1011
    assert events.get(timeout=5)["code"] == 1011
    client.send(healthy, "still here")
    assert client.recv(healthy) == "still here"


def test_client_reset_stream_reaches_the_app_as_a_1006_disconnect(serve, h2client):
    events: queue.Queue[Any] = queue.Queue()
    server = serve(recording(events))
    client = h2client(server.port)
    sid = client.open()
    client.conn.reset_stream(sid)
    client.flush()
    assert events.get(timeout=5) == {"type": "websocket.disconnect", "code": 1006, "reason": ""}


def test_client_close_handshake_over_a_stream(serve, h2client):
    events: queue.Queue[Any] = queue.Queue()
    server = serve(recording(events))
    client = h2client(server.port)
    sid = client.open()
    client.websockets[sid].send_close(4002, "later")
    client.transmit(sid)
    assert client.close_code(sid) == 4002
    client.wait(lambda: sid in client.ended)
    assert events.get(timeout=5) == {"type": "websocket.disconnect", "code": 4002, "reason": "later"}


def test_shutdown_closes_websocket_streams_with_1012(serve, h2client):
    events: queue.Queue[Any] = queue.Queue()
    server = serve(recording(events), timeout_graceful_shutdown=10)
    client = h2client(server.port)
    sid = client.open()
    client.send(sid, "x")
    assert client.recv(sid) == "x"
    started = time.monotonic()
    server.server.should_exit = True
    assert client.close_code(sid) == 1012
    client.wait(lambda: client.closed)  # the close handshake done, the server ends the connection
    assert client.goaways == [2**31 - 1, sid]
    server.thread.join(5)
    assert not server.thread.is_alive()
    assert time.monotonic() - started < 3
    assert events.get(timeout=1)["code"] == 1012
