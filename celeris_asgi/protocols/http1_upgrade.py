"""Upgrade requests on HTTP/1.1 (RFC 9110 7.8): switching the connection, or reading on when declined.

Which Upgrade the server takes is decided by pure rules (http1_request.chosen_upgrade and
http2/upgrade.h2c_settings); a taken one hands the transport to HTTP/2 (http2/upgrade.py) or to the
WebSocket carrier (websocket_h1.py). A declined one is an ordinary request, and the connection goes
on, although httptools stops for good at the upgrade point: a fresh parser reads on.
"""

from __future__ import annotations

import asyncio
from typing import TYPE_CHECKING

import httptools

from celeris_asgi.logging import error_logger
from celeris_asgi.protocols.handoff import hand_over
from celeris_asgi.protocols.http1_phase import CLOSING
from celeris_asgi.protocols.http1_request import H2C, WEBSOCKET, chosen_upgrade
from celeris_asgi.protocols.http2.upgrade import h2c_settings, upgrade_h2c

if TYPE_CHECKING:
    from celeris_asgi.asgi_types import Headers, HTTPScope
    from celeris_asgi.cycle import Endpoint
    from celeris_asgi.protocols.http1 import HTTP1Protocol
    from celeris_asgi.settings import ServerSettings
    from celeris_asgi.state import ServerState


def upgrade_offer(
    settings: ServerSettings,
    state: ServerState,
    endpoint: Endpoint,
    version: str,
    method: str,
    upgrade: bytes,
    connection_upgrade: bool,
    headers: Headers,
    transfer_encoding: bytes | None,
) -> tuple[str, bytes] | None:
    """(H2C or WEBSOCKET, the HTTP2-Settings value for h2c) when the server takes the Upgrade, else None."""
    kind = chosen_upgrade(
        version,
        method,
        upgrade,
        connection_upgrade,
        # h2c is cleartext only: judged on the connection itself, never on proxy headers
        settings.http == "auto" and endpoint.scheme == "http" and not state.shutting_down,
        settings.websocket.enabled,
    )
    if kind == H2C:
        offered = h2c_settings(headers, transfer_encoding)
        return None if offered is None else (H2C, offered)
    return None if kind is None else (kind, b"")


def switch_connection(
    http1: HTTP1Protocol, transport: asyncio.Transport, kind: str, scope: HTTPScope, offered: bytes, rest: bytes
) -> None:
    """Hand the transport `http1` gave up to the protocol the request upgraded to; `rest` follows the head."""
    error_logger.debug(
        "Upgrade to %s: %s %s", "WebSocket" if kind == WEBSOCKET else "h2c", scope["method"], scope["path"]
    )
    if kind == WEBSOCKET:
        from celeris_asgi.protocols.websocket_h1 import WebSocketProtocol  # (needs the websockets library)

        carrier = WebSocketProtocol(http1.settings, http1.state, http1.loop, scope)
        hand_over(http1.state, http1, transport, carrier, rest)
    else:
        upgrade_h2c(http1, transport, scope, offered, rest)


def parser_after_declined_upgrade(conn: HTTP1Protocol, body_framing: bytes | None) -> httptools.HttpRequestParser:
    """A parser that reads on after a declined upgrade: the request's body (framed by `body_framing`,
    the request's own Content-Length or Transfer-Encoding field, None when it has no body still to
    come), then the requests that follow."""
    error_logger.debug("Upgrade to %r declined: served as HTTP/1.1", conn.upgrade)
    if body_framing is None:
        return httptools.HttpRequestParser(conn)
    parser = httptools.HttpRequestParser(_AfterStandInHead(conn))
    parser.feed_data(b"PUT / HTTP/1.1\r\n%s\r\n\r\n" % body_framing)
    return parser


class _AfterStandInHead:
    """The callbacks of a parser primed with a stand-in head, which puts it where the real request's
    body begins: the stand-in is swallowed; its body and every later request go to the connection."""

    __slots__ = ("conn", "stand_in")

    def __init__(self, conn: HTTP1Protocol) -> None:
        self.conn = conn
        self.stand_in = True

    def on_message_begin(self) -> None:
        if not self.stand_in:
            self.conn.on_message_begin()

    def on_url(self, url: bytes) -> None:
        if not self.stand_in:
            self.conn.on_url(url)

    def on_header(self, name: bytes, value: bytes) -> None:
        if not self.stand_in:
            self.conn.on_header(name, value)

    def on_headers_complete(self) -> None:
        if not self.stand_in:
            self.conn.on_headers_complete()

    def on_body(self, body: bytes) -> None:
        self.conn.on_body(body)

    def on_message_complete(self) -> None:
        self.stand_in = False
        self.conn.on_message_complete()


def at_upgrade_point(conn: HTTP1Protocol, rest: bytes) -> None:
    """httptools stopped at an Upgrade: hand the connection on, or read on as HTTP/1.1 if declined."""
    conn.flush()
    switch, conn.switch = conn.switch, None
    transport = conn.transport
    if switch is None:  # RFC 9110 7.8: a declined Upgrade is an ordinary request
        framing = None
        if conn.parsing is not None:  # its body is still to come (else it had none, or it was refused)
            framing = (
                b"transfer-encoding: chunked"
                if conn.transfer_encoding is not None
                else b"content-length: %d" % int(conn.content_length or b"0")
            )
        conn.parser = parser_after_declined_upgrade(conn, framing)
        if rest and transport is not None and not transport.is_closing():
            conn.data_received(rest)
    elif transport is not None:
        conn.transport = None
        conn.phase = CLOSING
        switch_connection(conn, transport, *switch, rest)
