"""Preencoded response bytes: status lines, the cached Date header, and header validation.

The hot path concatenates these constants instead of formatting per response; the Date
value is refreshed once a second by the server's clock tick, never per request.
"""

from __future__ import annotations

import re
import time
from email.utils import formatdate
from http import HTTPStatus

_TOKEN = re.compile(rb"^[!#$%&'*+\-.^_`|~0-9A-Za-z]+$")
# A field value may hold visible characters, obs-text, spaces and tabs; never CR, LF or NUL.
_INVALID_VALUE = re.compile(rb"[\x00-\x08\x0a-\x1f\x7f]")


def _reason(status: int) -> bytes:
    try:
        return HTTPStatus(status).phrase.encode("latin-1")
    except ValueError:
        return b""


STATUS_LINES: dict[int, bytes] = {
    status: b"HTTP/1.1 %d %s\r\n" % (status, _reason(status)) for status in range(100, 600)
}


def status_line(status: int) -> bytes:
    """The preencoded `HTTP/1.1 NNN Reason` line; raises for a status outside 100-599."""
    try:
        return STATUS_LINES[status]
    except (KeyError, TypeError):
        raise RuntimeError(f"Invalid HTTP status code {status!r} in response.") from None


# How HTTP/1.1 treats a response header name; PLAIN ones are copied as they are.
PLAIN, CONTENT_LENGTH, TRANSFER_ENCODING, CONNECTION = 0, 1, 2, 3
_SPECIAL_NAMES = {b"content-length": CONTENT_LENGTH, b"transfer-encoding": TRANSFER_ENCODING, b"connection": CONNECTION}
_CACHE_LIMIT = 4096
# Names and values already checked, remembered (bounded) so a well-behaved app pays a lookup.
name_kinds: dict[bytes, int] = {}
checked_values: set[bytes] = set()


def header_name_kind(name: bytes) -> int:
    """Validate a response header name (a token) and say how HTTP/1.1 must treat it."""
    kind = name_kinds.get(name)
    if kind is not None:
        return kind
    if not isinstance(name, bytes) or not _TOKEN.match(name):
        raise RuntimeError(f"Invalid HTTP header name {name!r} in response.")
    kind = _SPECIAL_NAMES.get(name.lower(), PLAIN)
    if len(name_kinds) < _CACHE_LIMIT:
        name_kinds[name] = kind
    return kind


def check_header_value(value: bytes) -> None:
    """Reject a value an app could use for response splitting (CR, LF, NUL, other controls)."""
    if value in checked_values:
        return
    if not isinstance(value, bytes) or _INVALID_VALUE.search(value):
        raise RuntimeError(f"Invalid HTTP header value {value!r} in response.")
    if len(value) <= 256 and len(checked_values) < _CACHE_LIMIT:
        checked_values.add(value)


def validate_header(name: bytes, value: bytes) -> None:
    """Reject header names and values an app could use for response splitting."""
    header_name_kind(name)
    check_header_value(value)


def is_token(value: bytes) -> bool:
    """True for an RFC 9110 token (method names, header names)."""
    return _TOKEN.match(value) is not None


class DefaultHeaders:
    """The headers every response carries (Server, Date, --header), kept as one preencoded block.

    `block` is `server + date + extra` as HTTP/1.1 bytes; `pairs` the same as (name, value) tuples
    for HTTP/2. `tick()` rebuilds both only when the wall-clock second changes.
    """

    __slots__ = ("_second", "block", "date_enabled", "extra", "pairs", "server")

    def __init__(self, server_header: bool, date_header: bool, extra: list[tuple[bytes, bytes]]) -> None:
        overridden = {name.lower() for name, _ in extra}
        self.server: list[tuple[bytes, bytes]] = (
            [(b"server", b"celeris")] if server_header and b"server" not in overridden else []
        )
        self.date_enabled = date_header and b"date" not in overridden
        self.extra = list(extra)
        self._second = -1
        self.block = b""
        self.pairs: list[tuple[bytes, bytes]] = []
        self.tick()

    def tick(self, now: float | None = None) -> None:
        """Refresh the Date value when the second changed; cheap to call often."""
        now = time.time() if now is None else now
        second = int(now)
        if second == self._second:
            return
        self._second = second
        pairs = list(self.server)
        if self.date_enabled:
            pairs.append((b"date", formatdate(second, usegmt=True).encode("ascii")))
        pairs.extend(self.extra)
        self.pairs = pairs
        self.block = b"".join(b"%s: %s\r\n" % (name, value) for name, value in pairs)
