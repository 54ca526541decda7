"""HPACK (RFC 7541): a specialised decoder for request header blocks and a stateless encoder.

The decoder is written for the server hot path: static-table hits return the
shared static tuple, no logging, no per-field objects beyond the (name, value)
tuple, and it reports whether a block changed the dynamic table so the
connection may reuse the decoded result of a repeated block (a block that
changed nothing decodes the same way until the table changes again).  Given a
field check, it runs the check once per table entry and marks each decoded
field that came from an entry that passed (``vetted``), so a client that
indexes its headers has them validated once per connection, not per request.  It is
tested against the ``hpack`` package as an oracle and RFC 7541 Appendix C.

The encoder never inserts into the dynamic table (literal without indexing,
or never-indexed for credentials), so each field's encoding depends on no
connection state and is cached process-wide.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable

from hpack.table import HeaderTable

from .huffman import HuffmanError, huffman_decode, huffman_encode, huffman_encoded_length

STATIC_TABLE: tuple[tuple[bytes, bytes], ...] = HeaderTable.STATIC_TABLE
_STATIC_LEN = len(STATIC_TABLE)
_ENTRY_OVERHEAD = 32
_MAX_INT_BYTES = 5  # continuation octets accepted for one integer: up to 2**35, plenty for any field


class HPACKError(ValueError):
    """A header block that cannot be decoded: a COMPRESSION_ERROR for the connection."""


def _decode_integer(data: bytes, pos: int, mask: int) -> tuple[int, int]:
    """Decode an integer whose prefix (already masked out of ``data[pos]``) was all ones."""
    value = mask
    shift = 0
    end = len(data)
    for _ in range(_MAX_INT_BYTES):
        if pos >= end:
            raise HPACKError("truncated integer")
        byte = data[pos]
        pos += 1
        value += (byte & 0x7F) << shift
        if not byte & 0x80:
            return value, pos
        shift += 7
    raise HPACKError("integer too large")


_STATIC_VETTED: dict[Callable[[bytes, bytes], bool], bytes] = {}


def _static_vetted(check: Callable[[bytes, bytes], bool] | None) -> bytes:
    """Which static-table entries pass ``check`` (1 each), computed once per check function."""
    if check is None:
        return bytes(_STATIC_LEN)
    vetted = _STATIC_VETTED.get(check)
    if vetted is None:
        vetted = _STATIC_VETTED[check] = bytes(bool(check(name, value)) for name, value in STATIC_TABLE)
    return vetted


class Decoder:
    """One connection's HPACK decoder (the peer's encoder context)."""

    __slots__ = (
        "_check",
        "_dynamic",
        "_dynamic_vetted",
        "_pos",
        "_size",
        "_static_vetted",
        "changed",
        "list_size",
        "max_allowed_table_size",
        "max_table_size",
        "vetted",
    )

    def __init__(self, max_allowed_table_size: int = 4096, check: Callable[[bytes, bytes], bool] | None = None) -> None:
        #: Our SETTINGS_HEADER_TABLE_SIZE: the peer may not size the table above it.
        self.max_allowed_table_size = max_allowed_table_size
        self.max_table_size = max_allowed_table_size
        self._dynamic: list[tuple[bytes, bytes]] = []  # oldest first; index 62 is the last item
        self._check = check
        self._static_vetted = _static_vetted(check)
        self._dynamic_vetted = bytearray()  # 1 per _dynamic entry that passed check
        #: For field i of the last decode(): vetted[i] is 1 when it came from a table entry that passed
        #: check, else 0 (the buffer is reused, so it may run on past the last field).
        self.vetted = bytearray()
        self._size = 0
        self._pos = 0  # where the last string literal ended
        #: True when the last decode() changed the dynamic table (size or contents).
        self.changed = False
        #: RFC 9113 size (names + values + 32 per field) of the last decoded block.
        self.list_size = 0

    @property
    def table_size(self) -> int:
        """The dynamic table's RFC 7541 4.1 size (what the peer's encoder must agree on)."""
        return self._size

    def _evict(self, limit: int) -> None:
        dynamic = self._dynamic
        while self._size > limit:
            name, value = dynamic.pop(0)
            del self._dynamic_vetted[0]
            self._size -= len(name) + len(value) + _ENTRY_OVERHEAD

    def _add(self, field: tuple[bytes, bytes]) -> None:
        size = len(field[0]) + len(field[1]) + _ENTRY_OVERHEAD
        if size > self.max_table_size:
            self._dynamic.clear()
            self._dynamic_vetted.clear()
            self._size = 0
            return
        self._evict(self.max_table_size - size)
        self._dynamic.append(field)
        self._dynamic_vetted.append(self._check is not None and self._check(field[0], field[1]))
        self._size += size

    def _lookup(self, index: int) -> tuple[bytes, bytes]:
        if index <= _STATIC_LEN:
            if index == 0:
                raise HPACKError("index 0")
            return STATIC_TABLE[index - 1]
        offset = index - _STATIC_LEN
        if offset > len(self._dynamic):
            raise HPACKError(f"index {index} out of range")
        return self._dynamic[-offset]

    def _string(self, data: bytes, pos: int) -> bytes:
        """The string literal at ``pos``, Huffman-decoded straight from the block; ``self._pos`` moves past it."""
        if pos >= len(data):
            raise HPACKError("truncated string")
        first = data[pos]
        length = first & 0x7F
        pos += 1
        if length == 0x7F:
            length, pos = _decode_integer(data, pos, 0x7F)
        end = pos + length
        if end > len(data):
            raise HPACKError("truncated string")
        self._pos = end
        if not first & 0x80:
            return data[pos:end]
        try:
            return huffman_decode(data, pos, end)
        except HuffmanError as exc:
            raise HPACKError(str(exc)) from None

    def decode(self, data: bytes, max_list_size: int) -> tuple[list[tuple[bytes, bytes]], bool]:
        """Decode one complete header block.

        Returns the fields and whether their RFC 9113 list size exceeded
        ``max_list_size``.  Past the limit decoding continues (the table must stay
        in step with the peer's encoder) but fields are no longer collected, so
        the work and memory are bounded by the compressed block, never by what it
        expands to (the HPACK bomb).
        """
        headers: list[tuple[bytes, bytes]] = []
        append = headers.append
        vetted = self.vetted  # overwritten in place: clearing it would free and regrow its buffer per block
        static = STATIC_TABLE
        static_vetted = self._static_vetted
        dynamic = self._dynamic
        list_size = 0
        oversized = False
        changed = False
        pos = 0
        end = len(data)
        while pos < end:
            byte = data[pos]
            if byte & 0x80:  # indexed field
                index = byte & 0x7F
                pos += 1
                if index == 0x7F:
                    index, pos = _decode_integer(data, pos, 0x7F)
                if 0 < index <= _STATIC_LEN:
                    field = static[index - 1]
                    mark = static_vetted[index - 1]
                else:
                    offset = index - _STATIC_LEN
                    if index == 0 or offset > len(dynamic):
                        raise HPACKError(f"index {index} out of range")
                    field = dynamic[len(dynamic) - offset]
                    mark = self._dynamic_vetted[len(dynamic) - offset]
            elif byte & 0xE0 == 0x20:  # dynamic table size update
                if headers or list_size:
                    raise HPACKError("table size update after the first field")
                size = byte & 0x1F
                pos += 1
                if size == 0x1F:
                    size, pos = _decode_integer(data, pos, 0x1F)
                if size > self.max_allowed_table_size:
                    raise HPACKError(f"table size {size} above the advertised limit")
                self.max_table_size = size
                self._evict(size)
                changed = True
                continue
            else:  # literal: with incremental indexing (01), without indexing (0000), never indexed (0001)
                prefix = 0x3F if byte & 0x40 else 0x0F
                index = byte & prefix
                pos += 1
                if index == prefix:
                    index, pos = _decode_integer(data, pos, prefix)
                if index:
                    name = self._lookup(index)[0]
                else:
                    name = self._string(data, pos)
                    pos = self._pos
                value = self._string(data, pos)
                pos = self._pos
                field = (name, value)
                mark = 0  # checked by the caller, as any new field
                if byte & 0x40:
                    self._add(field)
                    changed = True
            list_size += len(field[0]) + len(field[1]) + _ENTRY_OVERHEAD
            if list_size > max_list_size:
                oversized = True
                headers.clear()
            if not oversized:
                count = len(headers)
                if count < len(vetted):
                    vetted[count] = mark
                else:
                    vetted.append(mark)
                append(field)
        self.changed = changed
        self.list_size = list_size
        return headers, oversized


# ---------------------------------------------------------------------------------------------------
# Encoder

_STATIC_NAME_INDEX: dict[bytes, int] = {}
for _i, (_name, _value) in enumerate(STATIC_TABLE, 1):
    _STATIC_NAME_INDEX.setdefault(_name, _i)
_STATIC_FULL_INDEX: dict[tuple[bytes, bytes], int] = {field: i for i, field in enumerate(STATIC_TABLE, 1) if field[1]}

#: Credentials are sent never-indexed so intermediaries do not index them either (RFC 7541 7.1.3).
_SENSITIVE = frozenset({b"authorization", b"proxy-authorization", b"set-cookie", b"cookie"})

# One field cache per check function, so a field is trusted only by the check that passed it.
_FIELD_CACHES: dict[Callable[[bytes, bytes], None] | None, dict[tuple[bytes, bytes], bytes]] = {}
_FIELD_CACHE_MAX = 4096
_FIELD_CACHE_ITEM_MAX = 1024  # encoded bytes: bigger (usually one-off) fields are encoded each time
_BLOCK_CACHE_ITEM_MAX = 2048
_BLOCK_CACHES: dict[Callable[[bytes, bytes], None] | None, dict[tuple[tuple[bytes, bytes], ...], bytes]] = {}
_BLOCK_CACHE_MAX = 1024
_BLOCK_CACHE_FIELDS = 16
_STATUS_CACHE: dict[int, bytes] = {}


def _encode_integer(value: int, prefix_bits: int, first: int) -> bytes:
    limit = (1 << prefix_bits) - 1
    if value < limit:
        return bytes((first | value,))
    out = bytearray((first | limit,))
    value -= limit
    while value >= 0x80:
        out.append((value & 0x7F) | 0x80)
        value >>= 7
    out.append(value)
    return bytes(out)


def _encode_string(data: bytes) -> bytes:
    huffman_length = huffman_encoded_length(data)
    if huffman_length < len(data):
        return _encode_integer(huffman_length, 7, 0x80) + huffman_encode(data)
    return _encode_integer(len(data), 7, 0) + data


def encode_field(name: bytes, value: bytes) -> bytes:
    """One response field, without touching the dynamic table (stateless, cacheable)."""
    static = _STATIC_FULL_INDEX.get((name, value))
    if static is not None:
        return _encode_integer(static, 7, 0x80)
    first = 0x10 if name in _SENSITIVE else 0x00
    name_index = _STATIC_NAME_INDEX.get(name)
    if name_index is not None:
        return _encode_integer(name_index, 4, first) + _encode_string(value)
    return bytes((first,)) + _encode_string(name) + _encode_string(value)


def encode_status(status: int) -> bytes:
    """The :status field for ``status`` (cached per code)."""
    encoded = _STATUS_CACHE.get(status)
    if encoded is None:
        encoded = _STATUS_CACHE[status] = encode_field(b":status", str(status).encode("ascii"))
    return encoded


#: Connection-specific fields have no place in HTTP/2 (RFC 9113 8.2.2): dropped from responses.
_CONNECTION_SPECIFIC = frozenset({b"connection", b"keep-alive", b"proxy-connection", b"transfer-encoding", b"upgrade"})


class Encoder:
    """One connection's HPACK encoder: stateless blocks, plus the table-size signal RFC 7541 4.2 needs.

    ``check(name, value)`` runs once per distinct field (on a cache miss) and may
    raise to refuse it; names are lowercased and connection-specific fields dropped.
    """

    __slots__ = (
        "_blocks",
        "_cache",
        "_check",
        "_head_block",
        "_head_defaults",
        "_head_status",
        "_prefix",
        "_table_size",
    )

    def __init__(self, check: Callable[[bytes, bytes], None] | None = None) -> None:
        self._table_size = 4096
        self._prefix = b""
        self._check = check
        self._cache = _FIELD_CACHES.setdefault(check, {})
        self._blocks = _BLOCK_CACHES.setdefault(check, {})
        # The last (status, defaults) and their encoding (see _head).
        self._head_status: int | None = None
        self._head_defaults: Iterable[tuple[bytes, bytes]] = ()
        self._head_block = b""

    def set_peer_table_size(self, size: int) -> None:
        """Follow the peer's SETTINGS_HEADER_TABLE_SIZE.

        We never index, so when the peer shrinks its limit below our table size we
        announce a size of 0 once, at the start of the next block.
        """
        if size < self._table_size:
            self._table_size = 0
            self._prefix = b"\x20"

    def _miss(self, name: bytes, value: bytes) -> bytes:
        if self._check is not None:
            self._check(name, value)
        name = name.lower()
        if name in _CONNECTION_SPECIFIC:
            return b""
        return encode_field(name, value)

    def _fields(self, headers: Iterable[tuple[bytes, bytes]]) -> bytes:
        cache = self._cache
        parts = []
        for name, value in headers:
            key = (name, value)
            encoded = cache.get(key)
            if encoded is None:
                encoded = self._miss(name, value)
                if len(encoded) <= _FIELD_CACHE_ITEM_MAX:
                    if len(cache) >= _FIELD_CACHE_MAX:
                        cache.clear()
                    cache[key] = encoded
            parts.append(encoded)
        return b"".join(parts)

    def _block(self, headers: Iterable[tuple[bytes, bytes]]) -> bytes:
        """A run of fields, cached whole when the same header list repeats (the common case)."""
        try:
            key = tuple(headers)
            block = self._blocks.get(key)
        except TypeError:  # [name, value] lists: fine for ASGI, just not hashable
            return self._fields(headers)
        if block is None:
            block = self._fields(key)
            if len(key) <= _BLOCK_CACHE_FIELDS and len(block) <= _BLOCK_CACHE_ITEM_MAX:
                if len(self._blocks) >= _BLOCK_CACHE_MAX:
                    self._blocks.clear()
                self._blocks[key] = block
        return block

    def _head(self, status: int | None, defaults: Iterable[tuple[bytes, bytes]]) -> bytes:
        """``:status`` and the default fields, encoded.

        The last pair is kept, recognised by the identity of the defaults list: the server
        builds a new one each second and never changes it, and most responses share a status.
        """
        if defaults is self._head_defaults and status == self._head_status:
            return self._head_block
        block = self._block(defaults) if defaults else b""
        if status is not None:
            block = encode_status(status) + block
        self._head_status = status
        self._head_defaults = defaults
        self._head_block = block
        return block

    def encode(
        self,
        status: int | None,
        headers: Iterable[tuple[bytes, bytes]],
        defaults: Iterable[tuple[bytes, bytes]] = (),
    ) -> bytes:
        """A header block: ``:status`` (None for trailers), then ``defaults``, then ``headers``."""
        block = self._block(headers)
        if status is not None or defaults:
            block = self._head(status, defaults) + block
        if self._prefix:
            block = self._prefix + block
            self._prefix = b""
        return block
