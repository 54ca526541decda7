"""Every HTTP/2 limit as a named setting with a safe default (exposed as ``--h2-*`` flags)."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class H2Settings:
    """Per-connection HTTP/2 limits; one instance is shared by all connections of a server."""

    #: SETTINGS_MAX_CONCURRENT_STREAMS: streams beyond it are refused (REFUSED_STREAM).
    max_concurrent_streams: int = 100
    #: SETTINGS_INITIAL_WINDOW_SIZE: bytes of request body a stream may send ahead of the app.
    initial_window_size: int = 65535
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
        if not 16384 <= self.max_frame_size <= (1 << 24) - 1:
            raise ValueError("h2 max_frame_size must be between 16384 and 16777215")
        if not 0 < self.initial_window_size <= (1 << 31) - 1:
            raise ValueError("h2 initial_window_size must be between 1 and 2147483647")
        if not 65535 <= self.connection_window_size <= (1 << 31) - 1:
            raise ValueError("h2 connection_window_size must be between 65535 and 2147483647")
        for name in (
            "max_concurrent_streams",
            "max_header_list_size",
            "max_header_block_size",
            "max_continuation_frames",
            "max_resets_per_interval",
            "max_pings_per_interval",
            "max_settings_per_interval",
            "max_empty_data_per_interval",
        ):
            if getattr(self, name) < 1:
                raise ValueError(f"h2 {name} must be at least 1")
        if self.header_table_size < 0:
            raise ValueError("h2 header_table_size must not be negative")
        for name in ("flood_interval", "settings_timeout", "send_timeout"):
            if getattr(self, name) <= 0:
                raise ValueError(f"h2 {name} must be positive")
