"""HTTP/1.1 -> HTTP/2 cleartext upgrade (RFC 7540 section 3.2): the upgrading request becomes stream 1.

``h2c_settings`` decides, from a parsed HTTP/1.1 head, whether to upgrade;
``upgrade_h2c`` hands the transport to a new ``HTTP2Protocol``.  The request
body (Content-Length only; chunked requests are not upgraded) arrives after
the head on the wire and is read by the HTTP/2 side, with backpressure, before
the client preface.
"""

from __future__ import annotations

import asyncio
from typing import TYPE_CHECKING, cast

from celeris_asgi.headers import STATUS_LINES
from celeris_asgi.protocols.handoff import hand_over

from .frames import decode_http2_settings
from .protocol import HTTP2Protocol
from .settings import checked_settings
from .stream import H2ConnectionError

if TYPE_CHECKING:
    from celeris_asgi.asgi_types import Headers, HTTPScope
    from celeris_asgi.protocols.http1 import HTTP1Protocol

_HOP_BY_HOP = frozenset({b"connection", b"upgrade", b"http2-settings"})


def _valid_settings(value: bytes) -> bool:
    """Whether ``value`` decodes to settings a SETTINGS frame could carry; anything else declines the
    upgrade (the request is served as HTTP/1.1), since after the 101 it could only end the connection."""
    try:
        checked_settings(decode_http2_settings(value))
    except (ValueError, H2ConnectionError):
        return False
    return True


def h2c_settings(headers: Headers, transfer_encoding: bytes | None) -> bytes | None:
    """The HTTP2-Settings value when an `Upgrade: h2c` request may switch, else None (serve it as HTTP/1.1).

    RFC 7540 3.2 and 3.2.1: exactly one valid HTTP2-Settings, named in Connection with `Upgrade`;
    the body must come with a Content-Length (a chunked one is served as HTTP/1.1).
    """
    if transfer_encoding is not None:
        return None
    settings = []
    tokens: set[bytes] = set()
    for name, value in headers:
        if name == b"http2-settings":
            settings.append(value)
        elif name == b"connection":
            tokens.update(token.strip().lower() for token in value.split(b","))
        elif name == b"content-length" and not value.isdigit():
            return None
    if len(settings) != 1 or not {b"upgrade", b"http2-settings"} <= tokens:
        return None
    return settings[0] if _valid_settings(settings[0]) else None


def upgrade_h2c(
    http1: HTTP1Protocol, transport: asyncio.Transport, scope: HTTPScope, settings: bytes, rest: bytes
) -> None:
    """Switch the connection ``http1`` gave up to HTTP/2; ``rest`` are the bytes after the head."""
    length = int(http1.content_length or b"0")
    limit = http1.settings.limit_request_body
    if http1.expect_continue and length and (limit is None or length <= limit):
        interim = STATUS_LINES[100] + b"\r\n"
        transport.write(interim)  # RFC 9110 10.1.1: the client waits for it to send the body
        if http1.metrics is not None:
            http1.metrics.bytes_sent(len(interim))
    scope["headers"] = [field for field in scope["headers"] if field[0] not in _HOP_BY_HOP]
    protocol = HTTP2Protocol(http1.settings, http1.state, http1.loop, http1.addresses)

    def start(transport: asyncio.Transport, rest: bytes) -> None:
        protocol.upgrade(transport, scope, settings, rest)

    # A compiled HTTP2Protocol is no asyncio.Protocol subclass; uvloop and asyncio only duck-type protocols.
    hand_over(http1.state, http1, transport, cast(asyncio.Protocol, protocol), rest, start)
