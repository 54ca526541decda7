"""Picks the wire protocol of a new connection: ALPN first, then the first bytes.

The HTTP/2 client preface goes to HTTP/2; while the bytes so far are still a prefix of it, wait.
An HTTP/2 preface gone wrong, or a request line that names another protocol than HTTP (h2spec's
"INVALID CONNECTION PREFACE"), is closed without a word: RFC 9113 3.4 asks for a closed connection,
and HTTP/1.1 bytes would be garbage to that client. Everything else goes to HTTP/1.1, which serves
it (leading empty lines included, RFC 9112 2.2) or answers a malformed request with 400 or 505.

With --proxy-protocol v1|v2, a peer named by --forwarded-allow-ips must send a PROXY header first:
it is read (within the header timeout) before anything else, and the protocol chosen after it shows
the header's client and server addresses. A malformed header closes the connection without an
answer (the bytes after it cannot be trusted to be HTTP). Other peers are not asked for one.
"""

from __future__ import annotations

import asyncio
import logging
import re
from typing import TYPE_CHECKING, cast

from celeris_asgi.logging import error_logger
from celeris_asgi.protocols.addresses import Addresses, client_address, describe_peer, log_closed
from celeris_asgi.protocols.handoff import hand_over
from celeris_asgi.protocols.http1 import SHUTDOWN_GRACE, HTTP1Protocol
from celeris_asgi.protocols.proxy_protocol import InvalidProxyHeader, parse_proxy_header

if TYPE_CHECKING:
    from celeris_asgi.settings import ServerSettings
    from celeris_asgi.state import ServerState

PREFACE = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"
_PREFACE_LINE = PREFACE[:16]  # b"PRI * HTTP/2.0\r\n"
# method SP target SP and a protocol name that is not HTTP/ (only a complete enough line can tell)
_OTHER_PROTOCOL = re.compile(rb"[!#$%&'*+\-.^_`|~0-9A-Za-z]+ [^ \r\n]+ (?!HTTP/)[^ \r\n]{5}")

H1, H2, WAIT, CLOSE = "h1", "h2", "wait", "close"


def sniff(data: bytes) -> str:
    """Decide from the first bytes of a connection which protocol speaks, or wait for more."""
    if data.startswith(PREFACE):
        return H2
    if PREFACE.startswith(data):
        return WAIT
    if data.startswith(_PREFACE_LINE) or _OTHER_PROTOCOL.match(data):
        return CLOSE
    return H1


def make_http2_protocol(
    settings: ServerSettings, state: ServerState, loop: asyncio.AbstractEventLoop, addresses: Addresses | None = None
) -> asyncio.Protocol:
    from celeris_asgi.protocols.http2 import HTTP2Protocol

    # A compiled HTTP2Protocol is no asyncio.Protocol subclass; uvloop and asyncio only duck-type protocols.
    return cast(asyncio.Protocol, HTTP2Protocol(settings, state, loop, addresses))


class ProtocolDetector(asyncio.Protocol):
    """The first protocol of every connection; hands the transport to the real one."""

    __slots__ = ("addresses", "buffer", "deadline", "loop", "proxy_header_due", "settings", "state", "transport")

    def __init__(self, settings: ServerSettings, state: ServerState, loop: asyncio.AbstractEventLoop) -> None:
        self.settings = settings
        self.state = state
        self.loop = loop
        self.transport: asyncio.Transport | None = None
        self.buffer = b""
        self.deadline = 0.0
        self.proxy_header_due = False  # a trusted peer's PROXY header is still to be read
        self.addresses: Addresses | None = None  # (server, client) named by the PROXY header

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.Transport, transport)
        self.deadline = self.state.now + self.settings.timeout_request_header
        self.state.connections.add(self)
        metrics = self.settings.metrics
        if metrics is not None:
            metrics.connection_opened()
        if error_logger.isEnabledFor(logging.DEBUG):
            error_logger.debug("Connection opened: %s", describe_peer(transport))
        peers = self.settings.proxy_protocol_peers
        if peers is not None and peers.trusts_peer(client_address(transport)):
            self.proxy_header_due = True  # no TLS here: config refuses --proxy-protocol with TLS
            return
        http = self.settings.http
        ssl_object = transport.get_extra_info("ssl_object")
        if ssl_object is not None:
            alpn = ssl_object.selected_alpn_protocol()
            if alpn == "h2":
                self.switch(make_http2_protocol(self.settings, self.state, self.loop), b"")
                return
            if alpn == "http/1.1" or http == "h1":
                self.switch(HTTP1Protocol(self.settings, self.state, self.loop), b"")
                return
        if http == "h1":
            self.switch(HTTP1Protocol(self.settings, self.state, self.loop), b"")

    def data_received(self, data: bytes) -> None:
        self.buffer += data
        if self.proxy_header_due and not self.read_proxy_header():
            return
        http = self.settings.http
        if http == "h1":
            buffer, self.buffer = self.buffer, b""
            self.switch(HTTP1Protocol(self.settings, self.state, self.loop, self.addresses), buffer)
            return
        verdict = sniff(self.buffer)
        if verdict == WAIT:
            return
        buffer, self.buffer = self.buffer, b""
        if verdict == H2:
            self.switch(make_http2_protocol(self.settings, self.state, self.loop, self.addresses), buffer)
        elif verdict == H1 and http != "h2":
            self.switch(HTTP1Protocol(self.settings, self.state, self.loop, self.addresses), buffer)
        else:
            error_logger.debug("Closing a connection that speaks no HTTP version this server serves.")
            if self.transport is not None:
                self.transport.close()

    def read_proxy_header(self) -> bool:
        """Take the PROXY header off the buffer: True once read, False while incomplete or refused."""
        try:
            header = parse_proxy_header(self.buffer, self.settings.proxy_protocol)
        except InvalidProxyHeader as exc:
            error_logger.debug(
                "Closing a connection with a bad PROXY header from %s: %s", describe_peer(self.transport), exc
            )
            if self.transport is not None:
                self.transport.abort()
            self.buffer = b""
            return False
        if header is None:
            return False
        self.proxy_header_due = False
        self.buffer = self.buffer[header.consumed :]
        if header.client is not None:
            self.addresses = (header.server, header.client)
        return True

    def switch(self, protocol: asyncio.Protocol, buffered: bytes) -> None:
        transport = self.transport
        if transport is None:
            return
        self.transport = None
        if error_logger.isEnabledFor(logging.DEBUG):
            chosen = "HTTP/1.1" if isinstance(protocol, HTTP1Protocol) else "HTTP/2"
            error_logger.debug("Protocol chosen: %s for %s", chosen, describe_peer(transport))
        hand_over(self.state, self, transport, protocol, buffered)

    def connection_lost(self, exc: Exception | None) -> None:
        self.state.connections.discard(self)
        log_closed(self.transport, "before any protocol was chosen")
        self.transport = None

    def check_timeouts(self, now: float) -> None:
        """A connection that never says enough to pick a protocol is closed after the header timeout.

        Only a PROXY header, a prefix of the HTTP/2 preface (or nothing) waits here; HTTP/1.x bytes
        went on at once.
        """
        if now >= self.deadline and self.transport is not None:
            self.transport.close()

    def shutdown(self) -> None:
        """Accepted just before shutdown: its request may be on the way, so allow a short grace."""
        self.deadline = min(self.deadline, self.state.now + SHUTDOWN_GRACE)
