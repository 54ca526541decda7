"""Test harness for the sans-I/O HTTP/2 engine: an h2 client wired to ``H2Connection``, frame builders.

``Pair`` feeds what an ``h2`` client connection produces into our engine and
the engine's output back into the client, recording the engine's listener
callbacks and the client's events.  ``frame()`` builds raw frames for what
the h2 client refuses to send; ``parse_frames()`` reads the engine's output
with ``hyperframe`` (an independent parser) so assertions see real frames.
``FrameSocket`` does the same against a live server.
"""

from __future__ import annotations

import socket
import struct
import time
from collections.abc import Callable
from typing import Any

import h2.config
import h2.connection
import h2.events
import hpack
from hyperframe.frame import Frame, GoAwayFrame, RstStreamFrame, SettingsFrame

from celeris_asgi.protocols.http2 import H2Connection, H2Settings
from celeris_asgi.protocols.http2 import frames as f

PREFACE = f.PREFACE
REQUEST = [(":method", "GET"), (":path", "/"), (":scheme", "http"), (":authority", "example.com")]


class Recorder:
    """An ``H2Listener`` that records every callback as a tuple."""

    def __init__(self) -> None:
        self.events: list[tuple[Any, ...]] = []

    def on_request(self, stream_id: int, head: Any, end_stream: bool) -> None:
        self.events.append(("request", stream_id, head, end_stream))

    def on_data(self, stream_id: int, data: bytes, end_stream: bool) -> None:
        self.events.append(("data", stream_id, data, end_stream))

    def on_stream_reset(self, stream_id: int, error_code: int) -> None:
        self.events.append(("reset", stream_id, error_code))

    def on_stream_drained(self, stream_id: int) -> None:
        self.events.append(("drained", stream_id))

    def take(self) -> list[tuple[Any, ...]]:
        events, self.events = self.events, []
        return events

    def kinds(self) -> list[str]:
        return [event[0] for event in self.events]


class Clock:
    """A hand-driven clock for the flood buckets."""

    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def frame(frame_type: int, flags: int, stream_id: int, payload: bytes = b"") -> bytes:
    """One raw frame, exactly as given (no validation: that is the point)."""
    return f.frame_header(len(payload), frame_type, flags, stream_id) + payload


def settings_payload(**values: int) -> bytes:
    ids = {
        "header_table_size": f.SETTINGS_HEADER_TABLE_SIZE,
        "enable_push": f.SETTINGS_ENABLE_PUSH,
        "max_concurrent_streams": f.SETTINGS_MAX_CONCURRENT_STREAMS,
        "initial_window_size": f.SETTINGS_INITIAL_WINDOW_SIZE,
        "max_frame_size": f.SETTINGS_MAX_FRAME_SIZE,
        "max_header_list_size": f.SETTINGS_MAX_HEADER_LIST_SIZE,
    }
    return b"".join(struct.pack(">HL", ids[name], value) for name, value in values.items())


def header_block(headers: list[tuple[str, str]] | None = None, encoder: hpack.Encoder | None = None) -> bytes:
    """An HPACK block from a fresh (or the given) encoder; strings are not validated."""
    return (encoder or hpack.Encoder()).encode(headers if headers is not None else REQUEST)


def parse_frames(data: bytes) -> list[Frame]:
    """Split engine output into hyperframe Frame objects."""
    frames = []
    pos = 0
    while pos < len(data):
        header = memoryview(data[pos : pos + 9])
        parsed, length = Frame.parse_frame_header(header)
        parsed.parse_body(memoryview(data[pos + 9 : pos + 9 + length]))
        frames.append(parsed)
        pos += 9 + length
    return frames


def goaway_code(frames: list[Frame]) -> int | None:
    codes = [fr.error_code for fr in frames if isinstance(fr, GoAwayFrame)]
    return codes[-1] if codes else None


def resets(frames: list[Frame]) -> list[tuple[int, int]]:
    return [(fr.stream_id, fr.error_code) for fr in frames if isinstance(fr, RstStreamFrame)]


class Raw:
    """Our engine driven with raw bytes only: preface + SETTINGS done, output parsed per call."""

    def __init__(self, settings: H2Settings | None = None, clock: Clock | None = None, handshake: bool = True):
        self.recorder = Recorder()
        self.clock = clock or Clock()
        self.server = H2Connection(settings or H2Settings(), self.recorder, clock=self.clock)
        self.server.initiate()
        self.initial = parse_frames(bytes(self.server.data_to_send()))
        self.encoder = hpack.Encoder()
        if handshake:
            self.send(PREFACE + frame(f.SETTINGS, 0, 0) + frame(f.SETTINGS, f.FLAG_ACK, 0))

    def send(self, data: bytes) -> list[Frame]:
        self.server.receive_data(data)
        return parse_frames(bytes(self.server.data_to_send()))

    def block(self, headers: list[tuple[str, str]] | None = None) -> bytes:
        return header_block(headers, self.encoder)

    def headers(
        self,
        stream_id: int,
        headers: list[tuple[str, str]] | None = None,
        end_stream: bool = True,
        flags: int = 0,
    ) -> list[Frame]:
        flags |= f.FLAG_END_HEADERS | (f.FLAG_END_STREAM if end_stream else 0)
        return self.send(frame(f.HEADERS, flags, stream_id, self.block(headers)))

    @property
    def closed_with(self) -> int | None:
        return self.server.error_code if self.server.closed else None


class Pair:
    """An h2 client connection and our engine, connected back to back."""

    def __init__(
        self,
        settings: H2Settings | None = None,
        client_settings: dict[int, int] | None = None,
        clock: Clock | None = None,
        auto_ack: bool = True,
    ) -> None:
        self.auto_ack = auto_ack
        self.recorder = Recorder()
        self.clock = clock or Clock()
        self.server = H2Connection(settings or H2Settings(), self.recorder, clock=self.clock)
        self.server.initiate()
        config = h2.config.H2Configuration(client_side=True, header_encoding=None)
        self.client = h2.connection.H2Connection(config)
        self.client.initiate_connection()
        if client_settings:
            self.client.update_settings(client_settings)
        self.client_events: list[h2.events.Event] = []
        self.exchange()

    def exchange(self) -> list[h2.events.Event]:
        """Shuttle bytes both ways until neither side has more to say; returns new client events."""
        new: list[h2.events.Event] = []
        for _ in range(100):
            to_server = self.client.data_to_send()
            if to_server:
                self.server.receive_data(to_server)
            to_client = bytes(self.server.data_to_send())
            if to_client:
                events = self.client.receive_data(to_client)
                new.extend(events)
                if self.auto_ack:
                    for event in events:
                        if isinstance(event, h2.events.DataReceived) and event.flow_controlled_length:
                            self.client.acknowledge_received_data(event.flow_controlled_length, event.stream_id)
            if not to_server and not to_client:
                break
        self.client_events.extend(new)
        return new

    def request(
        self,
        headers: list[tuple[str, str]] | None = None,
        body: bytes | None = None,
        stream_id: int | None = None,
    ) -> int:
        sid = stream_id if stream_id is not None else self.client.get_next_available_stream_id()
        self.client.send_headers(sid, headers or REQUEST, end_stream=body is None)
        if body is not None:
            self.client.send_data(sid, body, end_stream=True)
        return sid

    def respond(self, sid: int, body: bytes = b"ok", status: int = 200, headers: Any = ()) -> None:
        self.server.send_headers(sid, status, list(headers) or [(b"content-type", b"text/plain")])
        self.server.send_data(sid, body, end_stream=True)

    def responses(self) -> dict[int, dict[str, Any]]:
        """Per stream: response headers, body, ended and reset codes seen by the client so far."""
        out: dict[int, dict[str, Any]] = {}
        for event in self.client_events:
            sid = getattr(event, "stream_id", None)
            if sid is None:
                continue
            entry = out.setdefault(sid, {"headers": None, "body": b"", "ended": False, "reset": None, "info": []})
            if isinstance(event, h2.events.ResponseReceived):
                entry["headers"] = event.headers
            elif isinstance(event, h2.events.InformationalResponseReceived):
                entry["info"].append(event.headers)
            elif isinstance(event, h2.events.DataReceived):
                entry["body"] += event.data
            elif isinstance(event, h2.events.StreamEnded):
                entry["ended"] = True
            elif isinstance(event, h2.events.StreamReset):
                entry["reset"] = event.error_code
            elif isinstance(event, h2.events.TrailersReceived):
                entry["trailers"] = event.headers
        return out


class H2Socket:
    """A blocking h2 client on a real socket, for frame-level tests against a live server."""

    def __init__(self, port: int, settings: dict[int, int] | None = None, timeout: float = 5.0) -> None:
        import socket

        self.sock = socket.create_connection(("127.0.0.1", port), timeout=timeout)
        config = h2.config.H2Configuration(client_side=True, header_encoding=None)
        self.conn = h2.connection.H2Connection(config)
        self.conn.initiate_connection()
        if settings:
            self.conn.update_settings(settings)
        self.events: list[h2.events.Event] = []
        self.closed = False
        self.flush()

    def flush(self) -> None:
        data = self.conn.data_to_send()
        if data:
            self.sock.sendall(data)

    def request(self, path: str = "/", method: str = "GET", body: bytes | None = None, headers: Any = ()) -> int:
        sid = self.conn.get_next_available_stream_id()
        fields = [(":method", method), (":path", path), (":scheme", "http"), (":authority", "localhost")]
        self.conn.send_headers(sid, [*fields, *headers], end_stream=body is None)
        if body is not None:
            self.conn.send_data(sid, body, end_stream=True)
        self.flush()
        return sid

    def receive(self, until: Any, timeout: float = 5.0, ack: bool = True) -> list[h2.events.Event]:
        """Read until ``until(events)`` is true or the server closes; returns all events so far."""
        import time

        deadline = time.monotonic() + timeout
        while not until(self.events) and not self.closed:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise TimeoutError(f"condition not met; events: {self.events}")
            self.sock.settimeout(remaining)
            try:
                data = self.sock.recv(65536)
            except ConnectionResetError:
                data = b""
            if not data:
                self.closed = True
                break
            for event in self.conn.receive_data(data):
                self.events.append(event)
                if ack and isinstance(event, h2.events.DataReceived) and event.flow_controlled_length:
                    self.conn.acknowledge_received_data(event.flow_controlled_length, event.stream_id)
            self.flush()
        return self.events

    def ended(self, sid: int) -> Any:
        def check(events: list[h2.events.Event]) -> bool:
            return any(
                isinstance(e, h2.events.StreamEnded | h2.events.StreamReset) and e.stream_id == sid for e in events
            )

        return check

    def body(self, sid: int) -> bytes:
        return b"".join(e.data for e in self.events if isinstance(e, h2.events.DataReceived) and e.stream_id == sid)

    def of(self, kind: type, sid: int | None = None) -> list[Any]:
        return [e for e in self.events if isinstance(e, kind) and (sid is None or e.stream_id == sid)]

    def close(self) -> None:
        self.sock.close()


class FrameSocket:
    """Hand-built frames to a live server on a real socket; its frames parsed as they arrive.

    For what the ``h2`` client refuses to send (a second HEADERS without END_STREAM, DATA
    that contradicts content-length): the handshake is done, then ``send`` raw frames and
    ``read_until`` a condition on every frame received so far (``frames``).
    """

    def __init__(self, port: int, timeout: float = 5.0) -> None:
        self.sock = socket.create_connection(("127.0.0.1", port), timeout=timeout)
        self.encoder = hpack.Encoder()
        self.frames: list[Frame] = []
        self._buf = b""
        self.send(PREFACE + frame(f.SETTINGS, 0, 0))
        self.read_until(lambda frames: any(isinstance(fr, SettingsFrame) and "ACK" not in fr.flags for fr in frames))
        self.send(frame(f.SETTINGS, f.FLAG_ACK, 0))

    def send(self, data: bytes) -> None:
        self.sock.sendall(data)

    def block(self, headers: list[tuple[str, str]]) -> bytes:
        return self.encoder.encode(headers)

    def read_until(self, until: Callable[[list[Frame]], bool], timeout: float = 5.0) -> list[Frame]:
        deadline = time.monotonic() + timeout
        while not until(self.frames):
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise TimeoutError(f"condition not met; frames: {self.frames}")
            self.sock.settimeout(remaining)
            data = self.sock.recv(65536)
            if not data:
                raise ConnectionError(f"server closed; frames: {self.frames}")
            self._buf += data
            while len(self._buf) >= 9:
                end = 9 + int.from_bytes(self._buf[:3], "big")
                if len(self._buf) < end:
                    break
                self.frames.extend(parse_frames(self._buf[:end]))
                self._buf = self._buf[end:]
        return self.frames

    def close(self) -> None:
        self.sock.close()
