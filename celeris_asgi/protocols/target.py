"""The request target (origin-form) split into the ASGI path, raw_path and query_string.

Shared by HTTP/1.1 and HTTP/2. Clients ask for the same few targets over and over, so the split
and percent-decoding are remembered (bounded) and a repeated target costs one dict lookup.
"""

from __future__ import annotations

from urllib.parse import unquote

_CACHE: dict[bytes, tuple[str, bytes, bytes]] = {}
_CACHE_MAX = 1024
_CACHE_ITEM_MAX = 256  # bytes: long (often unique) targets are not worth keeping


def split_origin_form(target: bytes) -> tuple[str, bytes, bytes]:
    """(path, raw_path, query_string) of `/path?query`; UnicodeDecodeError for a non-ASCII path."""
    cached = _CACHE.get(target)
    if cached is not None:
        return cached
    raw_path, _, query = target.partition(b"?")
    path = raw_path.decode("ascii")
    if "%" in path:
        path = unquote(path)
    result = (path, raw_path, query)
    if len(target) <= _CACHE_ITEM_MAX:
        if len(_CACHE) >= _CACHE_MAX:
            _CACHE.clear()
        _CACHE[target] = result
    return result
