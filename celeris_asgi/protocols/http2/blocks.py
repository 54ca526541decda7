"""Request header blocks: HPACK decoding, validation, and the decoded-request cache.

Clients send the same header block again and again (same path, same headers, indexed fields
only); a block that leaves the HPACK dynamic table unchanged decodes the same way until the
table changes, so its validated ``RequestHead`` is cached by the block's bytes and handed out
again as the very same object (the protocol caches its target split per head).
"""

from __future__ import annotations

from . import frames as f
from .hpack_codec import Decoder, HPACKError
from .settings import H2Settings
from .stream import H2ConnectionError, H2StreamError
from .validation import MalformedRequest, RequestHead, field_ok, validate_request

_ITEM_MAX = 2048  # compressed bytes of a block worth caching
_BUDGET = 65536  # decoded bytes the cache may hold per connection before it starts over


class HeaderBlocks:
    """One connection's HPACK decoder and the cache of decoded request heads."""

    __slots__ = ("_connect", "_decoder", "_heads_size", "_max_list_size", "heads")

    def __init__(self, settings: H2Settings) -> None:
        self._decoder = Decoder(settings.header_table_size, field_ok)
        self._max_list_size = settings.max_header_list_size
        self._connect = settings.enable_connect_protocol
        #: block bytes -> its validated head; the connection looks a block up here before request()
        self.heads: dict[bytes, RequestHead] = {}
        self._heads_size = 0

    def request(self, sid: int, block: bytes) -> RequestHead | None:
        """Decode and validate a request's block (not in ``heads``); None when its header list is too large (431)."""
        fields, oversized = self.decode(block)
        if oversized:
            return None
        try:
            head = validate_request(fields, self._connect, self._decoder.vetted)
        except MalformedRequest:
            raise H2StreamError(sid, f.PROTOCOL_ERROR) from None
        decoder = self._decoder
        if not decoder.changed and len(block) <= _ITEM_MAX:
            self._heads_size += len(block) + decoder.list_size
            if self._heads_size > _BUDGET:
                self.heads.clear()
                self._heads_size = len(block) + decoder.list_size
            self.heads[block] = head
        return head

    def decode(self, block: bytes) -> tuple[list[tuple[bytes, bytes]], bool]:
        """Decode a block (HPACK state must stay in step even for refused streams); (fields, oversized)."""
        try:
            fields, oversized = self._decoder.decode(block, self._max_list_size)
        except HPACKError as exc:
            raise H2ConnectionError(f.COMPRESSION_ERROR, str(exc)) from None
        if self._decoder.changed:
            self.heads.clear()
            self._heads_size = 0
        return fields, oversized

    @property
    def cached(self) -> int:
        """How many decoded heads the cache holds."""
        return len(self.heads)

    @property
    def cached_bytes(self) -> int:
        """The bytes the cache accounts for (at most its budget)."""
        return self._heads_size
