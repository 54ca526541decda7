"""A small raw-socket HTTP/1.1 client for tests that must see the exact bytes and the close.

httpx hides what these tests check (pipelining, framing, `connection: close`, whether the server
closed), so they speak to the server over a plain socket and parse the answers here.
"""

from __future__ import annotations

import socket
import time
from dataclasses import dataclass, field


@dataclass
class RawResponse:
    status: int
    headers: list[tuple[bytes, bytes]]
    body: bytes = b""
    chunked: bool = False
    trailers: list[tuple[bytes, bytes]] = field(default_factory=list)

    def header(self, name: bytes) -> bytes | None:
        """The first value of `name` (case-insensitive), or None."""
        for key, value in self.headers:
            if key == name.lower():
                return value
        return None

    def header_names(self) -> list[bytes]:
        return [key for key, _ in self.headers]


def parse_responses(raw: bytes, no_body: frozenset[int] = frozenset()) -> tuple[list[RawResponse], bytes]:
    """Split `raw` into complete responses; returns them and the unparsed rest.

    `no_body` lists the response indexes that answer a HEAD request (no body whatever the headers).
    """
    responses: list[RawResponse] = []
    rest = raw
    while rest:
        head, sep, after = rest.partition(b"\r\n\r\n")
        if not sep:
            break
        lines = head.split(b"\r\n")
        status = int(lines[0].split(b" ", 2)[1])
        headers = []
        for line in lines[1:]:
            name, _, value = line.partition(b":")
            headers.append((name.strip().lower(), value.strip()))
        response = RawResponse(status, headers)
        length = response.header(b"content-length")
        if status < 200 or status in (204, 304) or len(responses) in no_body:
            pass
        elif (response.header(b"transfer-encoding") or b"").lower() == b"chunked":
            response.chunked = True
            body, after, complete = _parse_chunked(after, response)
            if not complete:
                break
            response.body = body
        elif length is not None:
            if len(after) < int(length):
                break
            response.body, after = after[: int(length)], after[int(length) :]
        else:
            response.body, after = after, b""
        responses.append(response)
        rest = after
    return responses, rest


def _parse_chunked(data: bytes, response: RawResponse) -> tuple[bytes, bytes, bool]:
    body = b""
    while True:
        line, sep, data = data.partition(b"\r\n")
        if not sep:
            return body, data, False
        size = int(line.split(b";")[0], 16)
        if size == 0:
            while True:
                trailer, sep, data = data.partition(b"\r\n")
                if not sep:
                    return body, data, False
                if not trailer:
                    return body, data, True
                name, _, value = trailer.partition(b":")
                response.trailers.append((name.strip().lower(), value.strip()))
        if len(data) < size + 2:
            return body, data, False
        body += data[:size]
        data = data[size + 2 :]


def read_until_close(sock: socket.socket, timeout: float = 3.0) -> tuple[bytes, bool]:
    """Read until the peer closes or `timeout` passes; returns (bytes, whether it closed)."""
    chunks = []
    deadline = time.monotonic() + timeout
    while True:
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            return b"".join(chunks), False
        sock.settimeout(remaining)
        try:
            chunk = sock.recv(65536)
        except TimeoutError:
            return b"".join(chunks), False
        except ConnectionResetError:
            return b"".join(chunks), True
        if not chunk:
            return b"".join(chunks), True
        chunks.append(chunk)


def read_responses(
    sock: socket.socket, count: int, timeout: float = 3.0, no_body: frozenset[int] = frozenset()
) -> list[RawResponse]:
    """Read until `count` complete responses arrived (or fail after `timeout`)."""
    data = b""
    deadline = time.monotonic() + timeout
    while True:
        responses, _ = parse_responses(data, no_body)
        if len(responses) >= count:
            return responses
        remaining = deadline - time.monotonic()
        assert remaining > 0, f"expected {count} responses, got {data[:300]!r}"
        sock.settimeout(remaining)
        chunk = sock.recv(65536)
        assert chunk, f"closed after {len(responses)} of {count} responses: {data[:300]!r}"
        data += chunk


def first_response(port: int, data: bytes, timeout: float = 5.0) -> RawResponse:
    """Send `data` on a new connection; the first complete response, as soon as it is in (the server
    may keep the connection open: nothing waits for a close)."""
    with connect(port, timeout) as sock:
        sock.sendall(data)
        return read_responses(sock, 1, timeout)[0]


def connect(port: int, timeout: float = 3.0) -> socket.socket:
    return socket.create_connection(("127.0.0.1", port), timeout=timeout)


def exchange(port: int, data: bytes, timeout: float = 3.0) -> tuple[bytes, bool]:
    """Send `data` on a new connection; read until the server closes. Returns (bytes, closed)."""
    with connect(port, timeout) as sock:
        sock.sendall(data)
        return read_until_close(sock, timeout)
