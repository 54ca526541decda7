"""Picks the wire protocol of a new connection: ALPN first, then the first bytes.

The HTTP/2 client preface goes to HTTP/2; anything that looks like an HTTP/1.x request line goes to
HTTP/1.1 (which answers malformed requests with a 400). Bytes that are neither are answered by
closing: a 400 in HTTP/1.1 syntax would be garbage to an HTTP/2 client.
"""

from __future__ import annotations

import asyncio
import re
from typing import Any

from celeris_asgi.logging import error_logger
from celeris_asgi.protocols.http1 import SHUTDOWN_GRACE, HTTP1Protocol

PREFACE = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"
# A request line in progress: method token, a space, a target without spaces, then " HTTP/".
_METHOD = re.compile(rb"[!#$%&'*+\-.^_`|~0-9A-Za-z]{1,32}")
_TARGET = re.compile(rb"[^\s]*")
_REQUEST_LINE = re.compile(rb"^[!#$%&'*+\-.^_`|~0-9A-Za-z]+ [^\r\n]* HTTP/")
_SNIFF_LIMIT = 64 * 1024

H1, H2, WAIT, CLOSE = "h1", "h2", "wait", "close"


def sniff(data: bytes, limit_request_line: int) -> str:
    """Decide from the first bytes of a connection which protocol speaks, or wait for more."""
    if data.startswith(PREFACE):
        return H2
    if PREFACE.startswith(data):
        return WAIT
    line_end = data.find(b"\n")
    if line_end >= 0:
        return H1 if _REQUEST_LINE.match(data, 0, line_end + 1) else CLOSE
    if len(data) > min(limit_request_line + 64, _SNIFF_LIMIT):
        return H1  # long enough to be refused by HTTP/1.1 as a 414
    return WAIT if _could_become_request_line(data) else CLOSE


def _could_become_request_line(data: bytes) -> bool:
    """True while `data` is still the start of `METHOD SP target SP HTTP/x.y`."""
    method, space, rest = data.partition(b" ")
    if not _METHOD.fullmatch(method):
        return not space and not method
    if not space:
        return True
    target, space, version = rest.partition(b" ")
    if not _TARGET.fullmatch(target):
        return False
    return not space or b"HTTP/".startswith(version[:5])


def http2_available(config: Any) -> bool:
    return config.http in ("auto", "h2")


def make_http2_protocol(config: Any, state: Any, loop: asyncio.AbstractEventLoop) -> asyncio.Protocol:
    from celeris_asgi.protocols.http2 import HTTP2Protocol

    return HTTP2Protocol(config.settings, state, loop)


class ProtocolDetector(asyncio.Protocol):
    """The first protocol of every connection; hands the transport to the real one."""

    __slots__ = ("buffer", "config", "deadline", "loop", "state", "transport")

    def __init__(self, config: Any, state: Any, loop: asyncio.AbstractEventLoop) -> None:
        self.config = config
        self.state = state
        self.loop = loop
        self.transport: asyncio.Transport | None = None
        self.buffer = b""

    def connection_made(self, transport: asyncio.BaseTransport) -> None:  # type: ignore[override]
        self.transport = transport  # type: ignore[assignment]
        self.deadline = self.state.now + self.config.timeout_request_header
        self.state.connections.add(self)
        ssl_object = transport.get_extra_info("ssl_object")
        if ssl_object is not None:
            alpn = ssl_object.selected_alpn_protocol()
            if alpn == "h2":
                self.switch(make_http2_protocol(self.config, self.state, self.loop), b"")
                return
            if alpn == "http/1.1" or self.config.http == "h1":
                self.switch(HTTP1Protocol(self.config, self.state, self.loop), b"")
                return
        if self.config.http == "h1":
            self.switch(HTTP1Protocol(self.config, self.state, self.loop), b"")

    def data_received(self, data: bytes) -> None:
        self.buffer += data
        verdict = sniff(self.buffer, self.config.limit_request_line)
        if verdict == WAIT:
            return
        buffer, self.buffer = self.buffer, b""
        if verdict == H2 and http2_available(self.config):
            self.switch(make_http2_protocol(self.config, self.state, self.loop), buffer)
        elif verdict == H1 and self.config.http != "h2":
            self.switch(HTTP1Protocol(self.config, self.state, self.loop), buffer)
        else:
            error_logger.debug("Closing a connection that speaks neither HTTP/1.1 nor HTTP/2.")
            if self.transport is not None:
                self.transport.close()

    def switch(self, protocol: asyncio.Protocol, buffered: bytes) -> None:
        transport = self.transport
        if transport is None:
            return
        self.state.connections.discard(self)
        self.transport = None
        transport.set_protocol(protocol)
        protocol.connection_made(transport)
        if buffered:
            protocol.data_received(buffered)

    def connection_lost(self, exc: Exception | None) -> None:
        self.state.connections.discard(self)
        self.transport = None

    def check_timeouts(self, now: float) -> None:
        """A connection that never says enough to pick a protocol is closed after the header timeout.

        A stalled HTTP/1.x request line gets HTTP/1.1's 408 first, like stalled headers do.
        """
        if now >= self.deadline and self.transport is not None:
            buffer = self.buffer
            if buffer and self.config.http != "h2" and not PREFACE.startswith(buffer):
                protocol = HTTP1Protocol(self.config, self.state, self.loop)
                self.buffer = b""
                self.switch(protocol, buffer)
                protocol.refuse(408, "Request header timeout")
                return
            self.transport.close()

    def shutdown(self) -> None:
        """Accepted just before shutdown: its request may be on the way, so allow a short grace."""
        self.deadline = min(self.deadline, self.state.now + SHUTDOWN_GRACE)
