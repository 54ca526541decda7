"""What every fuzz target shares: the server under test, the byte mutator and the checks.

The server is a real celeris Server on 127.0.0.1 port 0 in a thread of this process (so its RSS is
ours to read), serving HTTP/1.1, HTTP/2 and WebSockets on one port (`--http auto`). Its error
logger and asyncio's (which reports "Exception in callback" from the event loop) are captured: any
record at ERROR or above means something escaped a protocol callback.
"""

from __future__ import annotations

import contextlib
import itertools
import logging
import socket
import time
from collections.abc import Callable, Iterator
from typing import Any

from hypothesis import strategies as st

from tests.conftest import RunningServer, running_server

EXCHANGE_TIMEOUT = 3.0  # seconds: the longest any one read may take before the server counts as hung
QUIET = 0.05  # seconds without data after which a fuzzed connection is given up (the server may wait)
RSS_GROWTH_LIMIT_MIB = 150  # generous: the fuzzer, hypothesis and the server share this process

# Bytes that parsers treat specially: separators, line ends, signs, boundaries of integer encodings.
INTERESTING = b"\x00\x01\x7f\x80\xff\t\n\r :;,/?%=+-0179aAfF\x3f\x40\xc0\xfe"


async def app(scope: dict[str, Any], receive: Callable[..., Any], send: Callable[..., Any]) -> None:
    """Reads every request body and answers its length; echoes WebSocket messages."""
    if scope["type"] == "lifespan":
        return
    if scope["type"] == "websocket":
        assert (await receive())["type"] == "websocket.connect"
        await send({"type": "websocket.accept"})
        while (message := await receive())["type"] == "websocket.receive":
            if message.get("text") is not None:
                await send({"type": "websocket.send", "text": message["text"]})
            else:
                await send({"type": "websocket.send", "bytes": message["bytes"]})
        return
    size = 0
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            return
        size += len(message.get("body", b""))
        if not message.get("more_body"):
            break
    body = b"%d" % size
    headers = [(b"content-type", b"text/plain"), (b"content-length", b"%d" % len(body))]
    await send({"type": "http.response.start", "status": 200, "headers": headers})
    await send({"type": "http.response.body", "body": body})


class ErrorCapture(logging.Handler):
    """Keeps every ERROR record of the server's and the event loop's loggers."""

    LOGGERS = ("celeris.error", "asyncio")

    def __init__(self) -> None:
        super().__init__(logging.ERROR)
        self.records: list[logging.LogRecord] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append(record)

    def take(self) -> list[str]:
        records, self.records = self.records, []
        return [self.format(record) for record in records]

    @contextlib.contextmanager
    def attached(self) -> Iterator[ErrorCapture]:
        for name in self.LOGGERS:
            logging.getLogger(name).addHandler(self)
        try:
            yield self
        finally:
            for name in self.LOGGERS:
                logging.getLogger(name).removeHandler(self)


def rss_mib() -> float:
    """This process's resident set (the server runs in it), from /proc/self/status."""
    with open("/proc/self/status", encoding="ascii") as status:
        for line in status:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    raise RuntimeError("no VmRSS in /proc/self/status")


class FuzzServer:
    """The running server plus what the checks need: its port, its errors and the RSS baseline."""

    def __init__(self, running: RunningServer, errors: ErrorCapture) -> None:
        self.running = running
        self.port = running.port
        self.errors = errors
        self.rss_baseline = rss_mib()
        self.inputs = 0

    def check(self, probe: Callable[[int], None]) -> None:
        """After one fuzzed exchange: a valid request on a fresh connection is answered, nothing
        escaped a callback, memory stays bounded."""
        self.inputs += 1
        probe(self.port)
        errors = self.errors.take()
        assert not errors, "the server logged errors:\n" + "\n".join(errors)
        growth = rss_mib() - self.rss_baseline
        assert growth < RSS_GROWTH_LIMIT_MIB, f"RSS grew by {growth:.0f} MiB"


@contextlib.contextmanager
def fuzz_server(**settings: Any) -> Iterator[FuzzServer]:
    """A real server for one fuzz module (or one standalone target)."""
    with ErrorCapture().attached() as errors, running_server(app, **settings) as running:
        yield FuzzServer(running, errors)


def connect(port: int) -> socket.socket:
    sock = socket.create_connection(("127.0.0.1", port), timeout=EXCHANGE_TIMEOUT)
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    return sock


def send_in_pieces(sock: socket.socket, data: bytes, cuts: list[int]) -> None:
    """Send `data` in pieces cut at `cuts`; a peer that has closed ends the sending quietly."""
    edges = [0, *sorted(c for c in cuts if 0 < c < len(data)), len(data)]
    with contextlib.suppress(OSError):
        for start, end in itertools.pairwise(edges):
            sock.sendall(data[start:end])


def read_until(sock: socket.socket, done: Callable[[bytes], bool]) -> bytes:
    """Read until done(received) holds; the socket timeout bounds every wait (a hang fails)."""
    received = b""
    while not done(received):
        chunk = sock.recv(65536)
        assert chunk, f"connection closed early after {received[:200]!r}"
        received += chunk
    return received


def drain(sock: socket.socket) -> bytes:
    """Whatever the server says about fuzzed input until it closes or goes quiet (it may wait)."""
    sock.settimeout(QUIET)
    chunks = []
    deadline = time.monotonic() + EXCHANGE_TIMEOUT
    with contextlib.suppress(TimeoutError, ConnectionResetError, BrokenPipeError):
        while time.monotonic() < deadline and (chunk := sock.recv(65536)):
            chunks.append(chunk)
    return b"".join(chunks)


@st.composite
def mutated(draw: st.DrawFn, seed: bytes, max_steps: int = 8) -> bytes:
    """`seed` with a few byte-level mutations: flip a bit, insert, delete, duplicate or overwrite."""
    data = bytearray(seed)
    for _ in range(draw(st.integers(1, max_steps))):
        kind = draw(st.sampled_from(("flip", "insert", "delete", "duplicate", "overwrite")))
        pos = draw(st.integers(0, max(len(data) - 1, 0)))
        if kind == "insert" or not data:
            data[pos:pos] = draw(
                st.binary(min_size=1, max_size=8) | st.sampled_from(INTERESTING).map(lambda b: bytes([b]))
            )
        elif kind == "flip":
            data[pos] ^= 1 << draw(st.integers(0, 7))
        elif kind == "delete":
            del data[pos : pos + draw(st.integers(1, 8))]
        elif kind == "duplicate":
            data[pos:pos] = data[pos : pos + draw(st.integers(1, 32))]
        else:
            data[pos] = draw(st.sampled_from(INTERESTING))
    return bytes(data)


@st.composite
def fuzzed(draw: st.DrawFn, seeds: list[bytes]) -> tuple[bytes, list[int]]:
    """One of `seeds`, mutated, and random places to split its write (every kind of partial read)."""
    data = draw(mutated(draw(st.sampled_from(seeds))))
    cuts = draw(st.lists(st.integers(1, max(len(data), 1)), max_size=6))
    return data, cuts
