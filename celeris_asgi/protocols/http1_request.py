"""The HTTP/1.1 request rules llhttp leaves to the server, as plain functions (RFC 9110, RFC 9112).

httptools (llhttp) parses the syntax. What it lets through but the RFCs forbid, and what this server
does not serve, is decided here: the version, the Host field, the body's framing (Transfer-Encoding,
Content-Length, HTTP/1.0), the method, the request-target forms, field-value whitespace and which
Upgrade to take. A rule that fails raises RequestError with the status its RFC names; the connection
(http1.py) answers it. No state and no socket: tests/test_http1_rules.py drives them as tables.
"""

from __future__ import annotations

import re

import httptools

from celeris_asgi.protocols.target import split_origin_form


class RequestError(Exception):
    """A request the server must refuse; carries the HTTP status to answer with."""

    def __init__(self, status: int, reason: str) -> None:
        super().__init__(reason)
        self.status = status
        self.reason = reason


# ----- fields ---------------------------------------------------------------------------------------

OWS = b" \t"  # RFC 9110 5.5: optional whitespace around a field value is not part of it


def field_value(value: bytes) -> bytes:
    """A field value without its trailing OWS (llhttp drops the leading OWS and keeps the trailing)."""
    return value.rstrip(OWS)


_HOST_VALUE = re.compile(rb"^[A-Za-z0-9\-._~!$&'()*+,;=:\[\]%]*$")
GOOD_HOSTS: set[bytes] = set()  # Host values check_host accepted (bounded): a repeated one costs a lookup
_GOOD_HOSTS_MAX = 1024


def check_host(value: bytes) -> None:
    """RFC 9110 7.2 / RFC 3986 3.2.2: a Host value is a reg-name or IP literal with an optional port."""
    if not _HOST_VALUE.match(value):
        raise RequestError(400, "Invalid Host header")
    if len(GOOD_HOSTS) < _GOOD_HOSTS_MAX:
        GOOD_HOSTS.add(value)


# ----- the head as a whole ----------------------------------------------------------------------------


def check_head(version: str, transfer_encoding: bytes | None, host_count: int) -> None:
    """The version, the body's framing and the Host count: RFC 9112 2.3, 6.1, 6.3 and 3.2.

    `transfer_encoding` is every Transfer-Encoding field joined with commas. A usual HTTP/1.1
    request (no Transfer-Encoding, one Host) passes every check, so callers may skip the call then.
    """
    if version != "1.1" and version != "1.0":
        raise RequestError(505, "HTTP version not supported")
    if transfer_encoding is not None:
        if version == "1.0":
            raise RequestError(400, "Transfer-Encoding is not allowed in HTTP/1.0")  # RFC 9112 6.1
        codings = [coding.strip().lower() for coding in transfer_encoding.split(b",")]
        if codings[-1] != b"chunked" or codings.count(b"chunked") > 1:
            raise RequestError(400, "Request body length cannot be determined")  # RFC 9112 6.3(4)
        if len(codings) > 1:
            raise RequestError(501, "Unsupported transfer coding")
    if version == "1.1" and host_count != 1:  # RFC 9112 3.2: exactly one Host in HTTP/1.1
        raise RequestError(400, "Missing Host header" if not host_count else "Duplicate Host header")


def check_declared_length(content_length: bytes, limit: int | None) -> None:
    """RFC 9110 10.1.1: a body declared over --limit-request-body is refused before any 100 Continue."""
    if limit is not None and int(content_length) > limit:
        raise RequestError(413, "Request body too large")


def has_no_body(transfer_encoding: bytes | None, content_length: bytes | None) -> bool:
    """RFC 9112 6.3: neither Transfer-Encoding nor a non-zero Content-Length means no body."""
    return transfer_encoding is None and (content_length is None or content_length == b"0")


# ----- method and target --------------------------------------------------------------------------------

# request_method's answers for the usual methods, which the connection looks up before calling it
METHODS = {m.encode(): m for m in ("GET", "HEAD", "POST", "PUT", "DELETE", "PATCH", "OPTIONS", "TRACE")}


def request_method(raw: bytes) -> str:
    """The method as the scope's str; CONNECT (a tunnel) is not served over HTTP/1.1 (RFC 9110 9.3.6)."""
    method = METHODS.get(raw)
    if method is not None:
        return method
    if raw == b"CONNECT":
        raise RequestError(405, "CONNECT is not supported over HTTP/1.1")
    return raw.decode("ascii")  # llhttp let only a token through


def request_target(target: bytes, method: str) -> tuple[str, bytes, bytes]:
    """The scope's (path, raw_path, query_string) of a request-target (RFC 9112 3.2).

    origin-form is the usual case (and cached, see target.py); a fragment is dropped; absolute-form
    keeps its path and query; the asterisk-form is `*` alone, for OPTIONS only (3.2.4).
    """
    try:
        if target[:1] == b"/":
            if b"#" not in target:
                return split_origin_form(target)
            path, _, query = target.partition(b"#")[0].partition(b"?")
        elif target[:1] == b"*":
            if target != b"*" or method != "OPTIONS":
                raise RequestError(400, "The asterisk-form target is for OPTIONS only")
            path, query = b"*", b""
        else:
            try:
                parsed = httptools.parse_url(target)
            except httptools.HttpParserInvalidURLError:
                raise RequestError(400, "Invalid request target") from None
            path, query = parsed.path or b"/", parsed.query or b""
        decoded, raw_path, _ = split_origin_form(path)
    except UnicodeDecodeError:
        raise RequestError(400, "Invalid characters in request target") from None
    return decoded, raw_path, query


# ----- Upgrade ------------------------------------------------------------------------------------------

H2C, WEBSOCKET = "h2c", "websocket"


def chosen_upgrade(
    version: str, method: str, upgrade: bytes, connection_upgrade: bool, h2c_allowed: bool, websocket_allowed: bool
) -> str | None:
    """Which protocol an `Upgrade` request switches to (H2C, WEBSOCKET), or None: serve it as HTTP/1.1.

    `upgrade` is the lower-cased Upgrade value; `connection_upgrade` whether Connection names
    `upgrade` (llhttp's should_upgrade). RFC 9110 7.8: Upgrade in an HTTP/1.0 request is ignored, and
    an Upgrade the server does not take is an ordinary request; RFC 6455 4.1: only a GET opens a
    WebSocket, so any other method with `Upgrade: websocket` is a plain request. h2c checks its own Connection tokens
    (see http2/upgrade.h2c_settings).
    """
    if version != "1.1":
        return None
    if upgrade == b"h2c":
        return H2C if h2c_allowed else None
    if upgrade == b"websocket" and method == "GET" and connection_upgrade and websocket_allowed:
        return WEBSOCKET
    return None


def parser_error_answer(exc: httptools.HttpParserError) -> tuple[int, str]:
    """The answer to a request llhttp could not parse: 505 for an HTTP version it does not serve, else 400."""
    if isinstance(exc, httptools.HttpParserInvalidMethodError):
        return 400, "Invalid HTTP method"
    message = str(exc)
    if "HTTP version" in message:
        return 505, "HTTP version not supported"
    return 400, f"Invalid HTTP request: {message}"
