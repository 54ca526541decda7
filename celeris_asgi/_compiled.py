"""Which core runs: the modules setup.py compiles with Cython, and whether they are compiled here.

The list below is the one place that names the compiled modules: setup.py reads
it (it runs this file on its own, so it imports nothing but the standard
library).  Each module is plain Python source that Cython compiles in
pure-Python mode, with a ``.pxd`` beside it for the C types, so the same
source runs whether or not the build found a C compiler.
"""

from __future__ import annotations

import importlib
from importlib.machinery import EXTENSION_SUFFIXES

COMPILED_MODULES: tuple[str, ...] = (
    "celeris_asgi.protocols.http2.frames",
    "celeris_asgi.protocols.http2.huffman",
    "celeris_asgi.protocols.http2.hpack_codec",
    "celeris_asgi.headers",
    "celeris_asgi.state",
    "celeris_asgi.metrics",
    "celeris_asgi.protocols.flow",
    "celeris_asgi.protocols.target",
    "celeris_asgi.protocols.http1_request",
    "celeris_asgi.protocols.http1_response",
    "celeris_asgi.protocols.http1",
    "celeris_asgi.protocols.http2.validation",
    "celeris_asgi.protocols.http2.stream",
    "celeris_asgi.protocols.http2.windows",
    "celeris_asgi.protocols.http2.flood",
    "celeris_asgi.protocols.http2.blocks",
    "celeris_asgi.protocols.http2.sending",
    "celeris_asgi.protocols.http2.connection",
    "celeris_asgi.cycle",
    "celeris_asgi.protocols.http2.handlers",
    "celeris_asgi.protocols.http2.protocol",
)


def compiled_modules() -> dict[str, bool]:
    """Each module of ``COMPILED_MODULES`` and whether it was loaded from a compiled extension."""
    return {
        name: (importlib.import_module(name).__file__ or "").endswith(tuple(EXTENSION_SUFFIXES))
        for name in COMPILED_MODULES
    }


def build_mode() -> str:
    """``"compiled"`` when every listed module is compiled, ``"pure"`` when none is, else ``"partial"``."""
    compiled = compiled_modules().values()
    if all(compiled):
        return "compiled"
    return "partial" if any(compiled) else "pure"
