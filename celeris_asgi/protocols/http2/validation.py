"""Request header validation for HTTP/2 (RFC 9113 section 8.2 and 8.3).

A request that breaks these rules is malformed: a stream error of type
PROTOCOL_ERROR, never a connection error.  The result of a valid block is a
``RequestHead`` that a repeated header block may reuse as is.

One pass over the decoded fields, no regular expressions: compiled (see
validation.pxd) the checks are C loops over the bytes; regular fields that
passed once are remembered, since browsers repeat most of them on every request.
"""

from __future__ import annotations


class MalformedRequest(ValueError):
    """A malformed request or trailer block (RFC 9113 8.1.1): reset the stream with PROTOCOL_ERROR."""


class RequestHead:
    """The validated head of one request; ``headers`` has ``host`` first when ``:authority`` was sent.

    Not to be changed once built (but for ``target``, derived from it): a repeated header block hands
    out the same head again.
    """

    __slots__ = ("authority", "content_length", "headers", "method", "path", "protocol", "scheme", "target")

    def __init__(
        self,
        method: bytes,
        scheme: bytes | None,
        authority: bytes | None,
        path: bytes | None,
        protocol: bytes | None,
        headers: tuple[tuple[bytes, bytes], ...],
        content_length: int | None,
    ) -> None:
        self.method = method
        self.scheme = scheme
        self.authority = authority
        self.path = path
        self.protocol = protocol
        self.headers = headers
        self.content_length = content_length
        #: The protocol's split of ``path`` for the scope, made once per head (None until then).
        self.target: tuple[str, str, bytes, bytes] | None = None


def _char_table(chars: bytes) -> bytes:
    """A 256-byte membership table: byte ``c`` is 1 when ``c`` is in ``chars``."""
    return bytes(c in chars for c in range(256))


_DIGITS_ALPHA_LOWER = b"0123456789abcdefghijklmnopqrstuvwxyz"
_TCHAR_SYMBOLS = b"!#$%&'*+-.^_`|~"
# RFC 9110 token characters, lowercase only for names (RFC 9113 8.2.1: uppercase names are malformed).
_NAME_CHARS = _char_table(_TCHAR_SYMBOLS + _DIGITS_ALPHA_LOWER)
_METHOD_CHARS = _char_table(_TCHAR_SYMBOLS + _DIGITS_ALPHA_LOWER + _DIGITS_ALPHA_LOWER.upper())
_CONNECTION_SPECIFIC = frozenset({b"connection", b"keep-alive", b"proxy-connection", b"transfer-encoding", b"upgrade"})
# Regular fields that passed _check_field: browsers repeat most of their fields on every request
# (user-agent, accept, cookie...), and the header-block cache cannot help once paths vary.
_CHECKED: set[tuple[bytes, bytes]] = set()
_CHECKED_MAX = 1024  # entries before the set starts over
_CHECKED_ITEM_MAX = 512  # bytes of a value worth remembering


def _is_token(data: bytes, chars: bytes) -> bool:
    """``data`` is non-empty and made only of the bytes a ``_char_table`` admits."""
    if not data:
        return False
    text = data
    table = chars
    for i in range(len(data)):  # noqa: SIM110 -- compiled, a C loop; all() would make a generator
        if not table[text[i]]:
            return False
    return True


def _is_clean_value(value: bytes) -> bool:
    """RFC 9113 8.2.1: no NUL, CR or LF anywhere, no leading or trailing space or tab."""
    if not value:
        return True
    first = value[0]
    last = value[len(value) - 1]
    if first == 0x20 or first == 0x09 or last == 0x20 or last == 0x09:
        return False
    return not (b"\r" in value or b"\n" in value or b"\0" in value)


def field_ok(name: bytes, value: bytes) -> bool:
    """Whether a regular field obeys RFC 9113 8.2: a lowercase token name, a clean value, not
    connection-specific (and te only as "trailers").  A pure function: the HPACK decoder runs it
    once per table entry (see hpack_codec.Decoder's ``vetted``)."""
    if not _is_token(name, _NAME_CHARS) or not _is_clean_value(value) or name in _CONNECTION_SPECIFIC:
        return False
    return name != b"te" or value == b"trailers"


def _check_field(name: bytes, value: bytes) -> None:
    if not field_ok(name, value):
        raise MalformedRequest(f"invalid or connection-specific header {name!r}")


def _remember(field: tuple[bytes, bytes]) -> None:
    """Check a regular field not in ``_CHECKED``, and remember it when it passed."""
    value = field[1]
    _check_field(field[0], value)
    if len(value) <= _CHECKED_ITEM_MAX:
        if len(_CHECKED) >= _CHECKED_MAX:
            _CHECKED.clear()
        _CHECKED.add(field)


def _content_length(current: int | None, value: bytes) -> int:
    if not value.isdigit():
        raise MalformedRequest("invalid content-length")
    length = int(value)
    if current is not None and current != length:
        raise MalformedRequest("conflicting content-length values")
    return length


def validate_request(
    fields: list[tuple[bytes, bytes]], connect_protocol: bool, vetted: bytearray | None = None
) -> RequestHead:
    """Check a decoded request block and split it into pseudo-headers and ASGI headers.

    ``vetted[i]`` (the decoder's) is 1 when ``fields[i]`` came from a table entry that passed
    ``field_ok``: its checks are done.

    ASGI headers: ``:authority`` becomes the ``host`` header, first, in place of any host field
    (which must then agree with it); the other fields keep their order and repeats.
    """
    method = scheme = authority = path = protocol = None
    headers: list[tuple[bytes, bytes]] = []
    regular = False  # a regular field was seen: no pseudo-header may follow
    content_length = None
    for i in range(len(fields)):
        field = fields[i]
        name = field[0]
        value = field[1]
        if name and name[0] == 0x3A:  # ":"
            if regular:
                raise MalformedRequest("pseudo-header after a regular header")
            if not _is_clean_value(value):
                raise MalformedRequest(f"invalid value for {name!r}")
            if name == b":path":
                duplicate = path is not None
                path = value
            elif name == b":method":
                duplicate = method is not None
                method = value
            elif name == b":scheme":
                duplicate = scheme is not None
                scheme = value
            elif name == b":authority":
                duplicate = authority is not None
                authority = value
            elif name == b":protocol" and connect_protocol:
                duplicate = protocol is not None
                protocol = value
            else:
                raise MalformedRequest(f"unknown pseudo-header {name!r}")
            if duplicate:
                raise MalformedRequest(f"duplicate pseudo-header {name!r}")
            continue
        if not regular:
            regular = True
            if authority is not None:
                headers.append((b"host", authority))
        if (vetted is None or not vetted[i]) and field not in _CHECKED:
            _remember(field)
        if name == b"content-length":
            content_length = _content_length(content_length, value)
        elif name == b"host" and authority is not None:
            if value != authority:
                raise MalformedRequest("host header differs from :authority")
            continue  # :authority stands in for it
        headers.append(field)
    if not regular and authority is not None:
        headers.append((b"host", authority))
    if method is None or not _is_token(method, _METHOD_CHARS):
        raise MalformedRequest("missing or invalid :method")
    if method == b"CONNECT" and protocol is None:
        # RFC 9113 8.5: plain CONNECT names only the authority.
        if scheme is not None or path is not None or not authority:
            raise MalformedRequest("CONNECT needs :authority and no :scheme or :path")
    else:
        if protocol is not None and method != b"CONNECT":
            raise MalformedRequest(":protocol is only allowed with CONNECT")
        if not scheme or not path:
            raise MalformedRequest("missing :scheme or :path")
        if path[0] != 0x2F and not (path == b"*" and method == b"OPTIONS") and scheme in (b"http", b"https"):
            raise MalformedRequest("invalid :path")
    return RequestHead(method, scheme, authority, path, protocol, tuple(headers), content_length)


def validate_trailers(fields: list[tuple[bytes, bytes]]) -> None:
    """Trailers carry no pseudo-headers and follow the same field rules (RFC 9113 8.1)."""
    for name, value in fields:
        if name[:1] == b":":
            raise MalformedRequest("pseudo-header in trailers")
        _check_field(name, value)
