"""Every HTTP/2 limit as a named setting with a safe default (exposed as ``--h2-*`` flags), and the
range checks of the SETTINGS values a peer sends (RFC 9113 section 6.5.2)."""

from __future__ import annotations

from dataclasses import dataclass

from . import frames as f
from .stream import H2ConnectionError

_MAX_WINDOW = (1 << 31) - 1
_MAX_SETTING = (1 << 32) - 1  # a value we announce in a SETTINGS frame is 32 bits

#: The one set of bounds of every numeric limit, (lowest, highest) inclusive, None for no upper
#: bound; the three durations must be above 0 (below). Config names the --h2-* flag of a bad value.
BOUNDS: dict[str, tuple[int, int | None]] = {
    "max_concurrent_streams": (1, _MAX_SETTING),
    "initial_window_size": (65535, _MAX_WINDOW),  # below the RFC's initial window would only slow uploads
    "connection_window_size": (65535, _MAX_WINDOW),
    "max_frame_size": (16384, (1 << 24) - 1),  # RFC 9113 section 6.5.2
    "max_header_list_size": (1024, _MAX_SETTING),
    "header_table_size": (0, _MAX_SETTING),
    "max_header_block_size": (1, None),
    "max_continuation_frames": (1, None),
    "max_resets_per_interval": (1, None),
    "max_pings_per_interval": (1, None),
    "max_settings_per_interval": (1, None),
    "max_empty_data_per_interval": (1, None),
}
DURATIONS = ("flood_interval", "settings_timeout", "send_timeout")


class H2SettingsError(ValueError):
    """A limit outside its bounds; `field` names it, `rule` says what it must be."""

    def __init__(self, field: str, rule: str) -> None:
        super().__init__(f"h2 {field} {rule}")
        self.field = field
        self.rule = rule


@dataclass(frozen=True, slots=True)
class H2Settings:
    """Per-connection HTTP/2 limits; one instance is shared by all connections of a server."""

    #: SETTINGS_MAX_CONCURRENT_STREAMS: streams beyond it are refused (REFUSED_STREAM).
    max_concurrent_streams: int = 100
    #: SETTINGS_INITIAL_WINDOW_SIZE: bytes of request body a stream may send ahead of the app
    #: (the server's default; RFC 9113's own 65535 applies until the peer acknowledges ours).
    initial_window_size: int = 1 << 20
    #: Connection-level receive window we open at start (bounds body bytes buffered per connection).
    connection_window_size: int = 1 << 20
    #: SETTINGS_MAX_FRAME_SIZE we accept (16384..16777215).
    max_frame_size: int = 16384
    #: SETTINGS_MAX_HEADER_LIST_SIZE: decoded request headers above it get a 431 (HPACK bomb guard).
    max_header_list_size: int = 65536
    #: SETTINGS_HEADER_TABLE_SIZE: the HPACK dynamic table the peer may use for requests.
    header_table_size: int = 4096
    #: Compressed header block (HEADERS + CONTINUATION) above it ends the connection (ENHANCE_YOUR_CALM).
    max_header_block_size: int = 65536
    #: CONTINUATION frames allowed in one header block (CONTINUATION flood guard).
    max_continuation_frames: int = 32
    #: Flood guards: at most this many of each in any ``flood_interval`` seconds (token buckets),
    #: above which the connection ends with GOAWAY ENHANCE_YOUR_CALM.
    max_resets_per_interval: int = 400
    max_pings_per_interval: int = 50
    max_settings_per_interval: int = 50
    max_empty_data_per_interval: int = 100
    flood_interval: float = 10.0
    #: Seconds to wait for the peer to acknowledge our SETTINGS (SETTINGS_TIMEOUT after).
    settings_timeout: float = 10.0
    #: Seconds a send() may wait for the peer to open its flow-control window before the
    #: stream is reset (a peer that never reads cannot pin a response forever).
    send_timeout: float = 30.0
    #: SETTINGS_ENABLE_CONNECT_PROTOCOL (RFC 8441 extended CONNECT, WebSockets over HTTP/2).
    enable_connect_protocol: bool = False

    def __post_init__(self) -> None:
        for name, (lowest, highest) in BOUNDS.items():
            value = getattr(self, name)
            if value < lowest or (highest is not None and value > highest):
                rule = f"must be at least {lowest}" if highest is None else f"must be between {lowest} and {highest}"
                raise H2SettingsError(name, f"{rule}; got {value}")
        for name in DURATIONS:
            value = getattr(self, name)
            if not value > 0:
                raise H2SettingsError(name, f"must be greater than 0; got {value}")


def checked_settings(payload: bytes) -> list[tuple[int, int]]:
    """The (identifier, value) pairs of a peer's SETTINGS payload; H2ConnectionError for a value that
    RFC 9113 section 6.5.2 forbids.  One check for SETTINGS frames and for the h2c upgrade, which
    declines an ``HTTP2-Settings`` header that fails it (see upgrade.py)."""
    pairs = f.parse_settings(payload)
    for ident, value in pairs:
        if ident == f.SETTINGS_INITIAL_WINDOW_SIZE and value > f.MAX_WINDOW_SIZE:
            raise H2ConnectionError(f.FLOW_CONTROL_ERROR, "SETTINGS_INITIAL_WINDOW_SIZE too large")
        if ident == f.SETTINGS_MAX_FRAME_SIZE and not f.DEFAULT_MAX_FRAME_SIZE <= value <= f.MAX_FRAME_SIZE_LIMIT:
            raise H2ConnectionError(f.PROTOCOL_ERROR, "SETTINGS_MAX_FRAME_SIZE out of range")
        if ident in (f.SETTINGS_ENABLE_PUSH, f.SETTINGS_ENABLE_CONNECT_PROTOCOL) and value > 1:
            raise H2ConnectionError(f.PROTOCOL_ERROR, f"SETTINGS {ident} must be 0 or 1")
    return pairs
