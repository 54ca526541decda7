"""TLS on each accepted connection, started by celeris instead of by `create_server(ssl=...)`.

A listener built with `ssl=` runs the handshake inside the event loop and tells no protocol when it
fails, so a failed handshake could be neither counted nor logged; and it starts TLS on the first
byte, while a PROXY header (--proxy-protocol) comes in clear text before the ClientHello. So a TLS
listener is a plain TCP server whose first protocol, TLSAcceptor, does what create_server does
inside: it hands the socket's transport to the loop's own SSL protocol (uvloop's class on uvloop,
which its transports feed without a Python call per read; asyncio's otherwise), with a
ProtocolDetector as the protocol inside TLS (it picks HTTP/2 or HTTP/1.1 by ALPN once the handshake
is done) and a waiter whose failure is counted. The handshake timeout, the close_notify shutdown and
everything after the handshake are the SSL protocol's, as before.

From a peer trusted with --proxy-protocol, TLSAcceptor first reads the PROXY header (within the
header timeout); the bytes read past it, often the ClientHello, are fed to the SSL protocol.
"""

from __future__ import annotations

import asyncio
import logging
import ssl
from asyncio.sslproto import SSLProtocol
from collections.abc import Callable
from functools import partial
from typing import TYPE_CHECKING, cast

from celeris_asgi.logging import error_logger
from celeris_asgi.protocols.addresses import Addresses, client_address, describe_peer, log_closed
from celeris_asgi.protocols.detect import ProtocolDetector, read_proxy_header
from celeris_asgi.protocols.http1 import SHUTDOWN_GRACE

if TYPE_CHECKING:
    from celeris_asgi.settings import ServerSettings
    from celeris_asgi.state import ServerState

SSLProtocolFactory = Callable[..., asyncio.BufferedProtocol]


def ssl_protocol_class(loop: asyncio.AbstractEventLoop) -> SSLProtocolFactory:
    """The SSL protocol that `loop.create_server(ssl=...)` would use: uvloop's own on uvloop."""
    try:
        import uvloop.loop
    except ImportError:  # pragma: no cover - uvloop is a dependency wherever it builds
        return SSLProtocol
    if isinstance(loop, uvloop.loop.Loop):
        uvloop_ssl_protocol: SSLProtocolFactory = uvloop.loop.SSLProtocol  # not in uvloop's stubs
        return uvloop_ssl_protocol
    return SSLProtocol


class TLSListener:
    """What every connection of one TLS listener shares; built once when the server starts."""

    __slots__ = ("context", "loop", "settings", "ssl_protocol", "state")

    def __init__(
        self, context: ssl.SSLContext, settings: ServerSettings, state: ServerState, loop: asyncio.AbstractEventLoop
    ) -> None:
        self.context = context
        self.settings = settings
        self.state = state
        self.loop = loop
        self.ssl_protocol = ssl_protocol_class(loop)

    def accept(self) -> TLSAcceptor:
        """The protocol factory of the listener."""
        return TLSAcceptor(self)

    def start_tls(self, transport: asyncio.Transport, buffered: bytes, addresses: Addresses | None) -> None:
        """Run the handshake on `transport`; `buffered` are bytes already read after a PROXY header."""
        loop = self.loop
        waiter = loop.create_future()
        ssl_protocol = self.ssl_protocol(
            loop, ProtocolDetector(self.settings, self.state, loop, addresses), self.context, waiter, server_side=True
        )
        waiter.add_done_callback(partial(self.handshake_done, transport))
        transport.set_protocol(ssl_protocol)
        ssl_protocol.connection_made(transport)
        view = memoryview(buffered)
        while view:
            buffer = memoryview(ssl_protocol.get_buffer(len(view)))
            size = min(len(buffer), len(view))
            buffer[:size] = view[:size]
            ssl_protocol.buffer_updated(size)
            view = view[size:]

    def handshake_done(self, transport: asyncio.Transport, waiter: asyncio.Future[None]) -> None:
        """Count and log a failed handshake: a TLS error (plain HTTP, a client that refused the
        certificate) or the handshake timeout. A peer that hung up before finishing (a TCP health
        check, a port scan) is only logged."""
        exc = waiter.exception()
        if exc is None:
            return
        metrics = self.settings.metrics
        if metrics is not None and isinstance(exc, ssl.SSLError | ConnectionAbortedError):
            metrics.tls_handshake_failed()
        if error_logger.isEnabledFor(logging.DEBUG):
            error_logger.debug("TLS handshake failed with %s: %r", describe_peer(transport), exc)


class TLSAcceptor(asyncio.Protocol):
    """The first protocol of a TLS listener's connection: starts TLS, after the PROXY header of a
    trusted peer."""

    __slots__ = ("buffer", "deadline", "listener", "transport")

    def __init__(self, listener: TLSListener) -> None:
        self.listener = listener
        self.transport: asyncio.Transport | None = None  # set while a PROXY header is awaited
        self.buffer = b""
        self.deadline = 0.0

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        listener = self.listener
        transport = cast(asyncio.Transport, transport)
        peers = listener.settings.proxy_protocol_peers
        if peers is None or not peers.trusts_peer(client_address(transport)):
            listener.start_tls(transport, b"", None)
            return
        self.transport = transport
        self.deadline = listener.state.now + listener.settings.timeout_request_header
        listener.state.connections.add(self)

    def data_received(self, data: bytes) -> None:
        transport = self.transport
        if transport is None:
            return
        self.buffer += data
        header = read_proxy_header(self.buffer, self.listener.settings.proxy_protocol, transport)
        if header is None:
            return
        self.transport = None
        self.listener.state.connections.discard(self)
        self.listener.start_tls(transport, self.buffer[header.consumed :], header.addresses)

    def connection_lost(self, exc: Exception | None) -> None:
        self.listener.state.connections.discard(self)
        log_closed(self.transport, "before the PROXY header")
        self.transport = None

    def check_timeouts(self, now: float) -> None:
        """A PROXY header that does not complete within the header timeout closes the connection."""
        if now >= self.deadline and self.transport is not None:
            self.transport.close()

    def shutdown(self) -> None:
        """Accepted just before shutdown: its header may be on the way, so allow a short grace."""
        self.deadline = min(self.deadline, self.listener.state.now + SHUTDOWN_GRACE)
