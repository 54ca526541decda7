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


_valid_names: set[bytes] = set()


def validate_header(name: bytes, value: bytes) -> None:
    """Reject header names and values an app could use for response splitting.

    Names already seen valid are remembered (bounded), so a well-behaved app pays one set lookup.
    """
    if name not in _valid_names:
        if not isinstance(name, bytes) or not _TOKEN.match(name):
            raise RuntimeError(f"Invalid HTTP header name {name!r} in response.")
        if len(_valid_names) < 4096:
            _valid_names.add(name)
    if not isinstance(value, bytes) or _INVALID_VALUE.search(value):
        raise RuntimeError(f"Invalid HTTP header value {value!r} in response.")


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
