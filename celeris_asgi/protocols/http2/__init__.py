"""celeris's own HTTP/2 engine: sans-I/O connection state (``H2Connection``) and its asyncio protocol."""

from .connection import H2Connection
from .protocol import HTTP2Protocol
from .settings import H2Settings
from .validation import RequestHead

__all__ = ["H2Connection", "H2Settings", "HTTP2Protocol", "RequestHead"]
