"""Request header validation for HTTP/2 (RFC 9113 section 8.2 and 8.3).

A request that breaks these rules is malformed: a stream error of type
PROTOCOL_ERROR, never a connection error.  The result of a valid block is an
immutable ``RequestHead`` so a repeated header block can reuse it as is.
"""

from __future__ import annotations

import re
from typing import NamedTuple


class MalformedRequest(ValueError):
    """A malformed request or trailer block (RFC 9113 8.1.1): reset the stream with PROTOCOL_ERROR."""


class RequestHead(NamedTuple):
    """The validated head of one request; ``headers`` has ``host`` first when ``:authority`` was sent."""

    method: bytes
    scheme: bytes | None
    authority: bytes | None
    path: bytes | None
    protocol: bytes | None
    headers: tuple[tuple[bytes, bytes], ...]
    content_length: int | None


# RFC 9110 token characters, lowercase only (RFC 9113 8.2.1: uppercase names are malformed).
_NAME_RE = re.compile(rb"[!#$%&'*+\-.^_`|~0-9a-z]+")
_METHOD_RE = re.compile(rb"[!#$%&'*+\-.^_`|~0-9A-Za-z]+")
# RFC 9113 8.2.1: no NUL, CR or LF anywhere, no leading or trailing whitespace.
_BAD_VALUE_RE = re.compile(rb"[\x00\r\n]|\A[ \t]|[ \t]\Z")
_CONNECTION_SPECIFIC = frozenset({b"connection", b"keep-alive", b"proxy-connection", b"transfer-encoding", b"upgrade"})
_PSEUDO = frozenset({b":method", b":scheme", b":authority", b":path", b":protocol"})
# Regular fields that passed _check_field: browsers repeat most of their fields on every request
# (user-agent, accept, cookie...), and the header-block cache cannot help once paths vary.
_CHECKED: set[tuple[bytes, bytes]] = set()
_CHECKED_MAX = 1024  # entries before the set starts over
_CHECKED_ITEM_MAX = 512  # bytes of a value worth remembering


def _check_field(name: bytes, value: bytes) -> None:
    if not _NAME_RE.fullmatch(name):
        raise MalformedRequest(f"invalid header name {name!r}")
    if _BAD_VALUE_RE.search(value):
        raise MalformedRequest(f"invalid value for header {name!r}")
    if name in _CONNECTION_SPECIFIC:
        raise MalformedRequest(f"connection-specific header {name!r}")
    if name == b"te" and value != b"trailers":
        raise MalformedRequest("te header other than 'trailers'")


def _content_length(current: int | None, value: bytes) -> int:
    if not value.isdigit():
        raise MalformedRequest("invalid content-length")
    length = int(value)
    if current is not None and current != length:
        raise MalformedRequest("conflicting content-length values")
    return length


def validate_request(fields: list[tuple[bytes, bytes]], connect_protocol: bool) -> RequestHead:
    """Check a decoded request block and split it into pseudo-headers and ASGI headers."""
    pseudo: dict[bytes, bytes] = {}
    regular: list[tuple[bytes, bytes]] = []
    content_length = None
    host = None
    for field in fields:
        name, value = field
        if name[:1] == b":":
            if regular:
                raise MalformedRequest("pseudo-header after a regular header")
            if name not in _PSEUDO or (name == b":protocol" and not connect_protocol):
                raise MalformedRequest(f"unknown pseudo-header {name!r}")
            if name in pseudo:
                raise MalformedRequest(f"duplicate pseudo-header {name!r}")
            if _BAD_VALUE_RE.search(value):
                raise MalformedRequest(f"invalid value for {name!r}")
            pseudo[name] = value
            continue
        if field not in _CHECKED:
            _check_field(name, value)
            if len(value) <= _CHECKED_ITEM_MAX:
                if len(_CHECKED) >= _CHECKED_MAX:
                    _CHECKED.clear()
                _CHECKED.add(field)
        if name == b"content-length":
            content_length = _content_length(content_length, value)
        elif name == b"host":
            host = value
        regular.append(field)
    method = pseudo.get(b":method")
    if method is None or not _METHOD_RE.fullmatch(method):
        raise MalformedRequest("missing or invalid :method")
    scheme = pseudo.get(b":scheme")
    authority = pseudo.get(b":authority")
    path = pseudo.get(b":path")
    protocol = pseudo.get(b":protocol")
    if method == b"CONNECT" and protocol is None:
        # RFC 9113 8.5: plain CONNECT names only the authority.
        if scheme is not None or path is not None or not authority:
            raise MalformedRequest("CONNECT needs :authority and no :scheme or :path")
    else:
        if protocol is not None and method != b"CONNECT":
            raise MalformedRequest(":protocol is only allowed with CONNECT")
        if not scheme or not path:
            raise MalformedRequest("missing :scheme or :path")
        if path[:1] != b"/" and not (path == b"*" and method == b"OPTIONS") and scheme in (b"http", b"https"):
            raise MalformedRequest("invalid :path")
    if authority is not None:
        if host is not None and host != authority:
            raise MalformedRequest("host header differs from :authority")
        # ASGI: :authority becomes the host header, first, replacing any host header.
        headers = ((b"host", authority), *(f for f in regular if f[0] != b"host"))
    else:
        headers = tuple(regular)
    return RequestHead(method, scheme, authority, path, protocol, headers, content_length)


def validate_trailers(fields: list[tuple[bytes, bytes]]) -> None:
    """Trailers carry no pseudo-headers and follow the same field rules (RFC 9113 8.1)."""
    for name, value in fields:
        if name[:1] == b":":
            raise MalformedRequest("pseudo-header in trailers")
        _check_field(name, value)
