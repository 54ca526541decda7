"""celeris-asgi: a fast, conformant ASGI server (HTTP/1.1 and HTTP/2 on one port)."""

from celeris_asgi.config import Config
from celeris_asgi.main import run
from celeris_asgi.server import Server

__version__ = "0.1.0"
__all__ = ["Config", "Server", "__version__", "run"]
