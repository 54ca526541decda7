"""Micro-benchmark of the compiled HTTP/2 leaf modules against their pure-Python source, in one run.

Times HPACK decoding and encoding, Huffman coding, the frame writers and the
engine's receive loop on a browser-like request burst, once with the modules
as imported (compiled when the build made extensions) and once with the same
``.py`` files loaded as source under another package name.  Rounds alternate
between the two so machine noise hits both alike.  Each pass is timed in
chunks of about a millisecond and each chunk's best round counts, so a busy
machine's scheduler spoils single chunks, not whole results.

Header values vary (paths, cookies, content lengths, etags) and each workload
cycles through more distinct items than any cache in the codec holds, so the
numbers measure decoding and encoding, not cache hits.

    python -m benchmarks.micro_hpack                # 7 rounds
    python -m benchmarks.micro_hpack --rounds 3
"""

from __future__ import annotations

import argparse
import importlib.abc
import importlib.util
import random
import sys
import time
import types
from collections.abc import Callable
from pathlib import Path
from typing import Any

import hpack

from celeris_asgi._compiled import build_mode
from celeris_asgi.protocols.http2 import connection as compiled_connection

PURE_PACKAGE = "_celeris_pure_http2"
HTTP2_DIR = Path(compiled_connection.__file__).parent
PREFACE = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"
DISTINCT = 5000  # more than the encoder's field (4096) and block (1024) caches hold

CHROME_REQUEST = [
    (b":method", b"GET"),
    (b":authority", b"shop.example.com"),
    (b":scheme", b"https"),
    (b":path", b""),
    (b"sec-ch-ua", b'"Chromium";v="131", "Not_A Brand";v="24", "Google Chrome";v="131"'),
    (b"sec-ch-ua-mobile", b"?0"),
    (b"sec-ch-ua-platform", b'"Linux"'),
    (b"upgrade-insecure-requests", b"1"),
    (
        b"user-agent",
        b"Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/131.0.0.0 Safari/537.36",
    ),
    (b"accept", b"text/html,application/xhtml+xml,application/xml;q=0.9,image/avif,image/webp,*/*;q=0.8"),
    (b"sec-fetch-site", b"same-origin"),
    (b"sec-fetch-mode", b"navigate"),
    (b"sec-fetch-dest", b"document"),
    (b"referer", b"https://shop.example.com/"),
    (b"accept-encoding", b"gzip, deflate, br, zstd"),
    (b"accept-language", b"en-GB,en;q=0.9,de;q=0.8"),
    (b"cookie", b""),
]


class _SourceOnlyFinder(importlib.abc.MetaPathFinder):
    """Loads ``_celeris_pure_http2.<name>`` from ``<name>.py`` in the http2 package, never an extension."""

    def find_spec(self, name: str, path: Any = None, target: Any = None) -> importlib.machinery.ModuleSpec | None:
        if not name.startswith(PURE_PACKAGE + "."):
            return None
        return importlib.util.spec_from_file_location(name, HTTP2_DIR / f"{name.rpartition('.')[2]}.py")


def load_pure() -> types.SimpleNamespace:
    """The http2 leaf modules and the engine, imported from source under a package of their own."""
    package = types.ModuleType(PURE_PACKAGE)
    package.__path__ = [str(HTTP2_DIR)]  # the package's __init__ (the asyncio protocol) is not needed
    sys.modules[PURE_PACKAGE] = package
    sys.meta_path.insert(0, _SourceOnlyFinder())
    return modules(PURE_PACKAGE)


def modules(package: str) -> types.SimpleNamespace:
    names = ("frames", "huffman", "hpack_codec", "connection", "settings")
    return types.SimpleNamespace(**{name: importlib.import_module(f"{package}.{name}") for name in names})


def request_headers(rng: random.Random, n: int) -> list[tuple[bytes, bytes]]:
    headers = list(CHROME_REQUEST)
    headers[3] = (b":path", f"/catalog/{rng.randrange(10**6)}/item-{n}?ref=list&page={rng.randrange(50)}".encode())
    headers[-1] = (b"cookie", f"session={rng.getrandbits(128):032x}; cart={n}; theme=dark".encode())
    return headers


def response_headers(n: int) -> list[tuple[bytes, bytes]]:
    return [
        (b"content-type", b"text/html; charset=utf-8"),
        (b"content-length", str(1000 + n).encode()),
        (b"etag", f'"{n:08x}-{n * 7919:x}"'.encode()),
        (b"cache-control", b"private, max-age=0"),
        (b"vary", b"accept-encoding"),
    ]


def request_blocks(rng: random.Random) -> list[bytes]:
    """Blocks of one long connection as a browser's encoder writes them (dynamic table in use)."""
    encoder = hpack.Encoder()
    return [encoder.encode(request_headers(rng, n)) for n in range(DISTINCT)]


def frame(frame_type: int, flags: int, stream_id: int, payload: bytes) -> bytes:
    return len(payload).to_bytes(3, "big") + bytes((frame_type, flags)) + stream_id.to_bytes(4, "big") + payload


def bursts(rng: random.Random, per_connection: int = 10) -> list[bytes]:
    """What a browser sends on a new connection: preface, SETTINGS, then a page and its sub-resources."""
    out = []
    for _ in range(DISTINCT // per_connection):
        encoder = hpack.Encoder()
        parts = [PREFACE, frame(0x4, 0, 0, b"")]
        for n in range(per_connection):
            parts.append(frame(0x1, 0x5, 2 * n + 1, encoder.encode(request_headers(rng, n))))
        out.append(b"".join(parts))
    return out


class _Listener:
    """An H2Listener that only counts requests."""

    def __init__(self) -> None:
        self.requests = 0

    def on_request(self, stream_id: int, head: object, end_stream: bool) -> None:
        self.requests += 1

    def on_data(self, stream_id: int, data: bytes, end_stream: bool) -> None:
        pass

    def on_stream_reset(self, stream_id: int, error_code: int) -> None:
        pass

    def on_stream_drained(self, stream_id: int) -> None:
        pass


class Laps:
    """Durations of the chunks of one pass, so a pass that the scheduler interrupts spoils one chunk only."""

    def __init__(self) -> None:
        self.durations: list[int] = []
        self._last = 0

    def start(self) -> None:
        self.durations = []
        self._last = time.perf_counter_ns()

    def lap(self) -> None:
        now = time.perf_counter_ns()
        self.durations.append(now - self._last)
        self._last = now


def chunks(items: list[Any], size: int) -> list[list[Any]]:
    return [items[i : i + size] for i in range(0, len(items), size)]


Workload = tuple[Callable[[Laps], None], int]


def workloads(mods: types.SimpleNamespace, data: dict[str, Any]) -> dict[str, Workload]:
    """Name -> (one pass, calling ``laps.lap()`` after each chunk; operations per pass) for one set of modules."""
    hpack_codec, huffman, frames = mods.hpack_codec, mods.huffman, mods.frames
    blocks, strings, responses = chunks(data["blocks"], 50), chunks(data["strings"], 100), chunks(data["responses"], 50)
    coded = [[huffman.huffman_encode(s) for s in chunk] for chunk in strings]
    connection_bursts = chunks(data["bursts"], 1)
    settings = mods.settings.H2Settings()

    def decode(laps: Laps) -> None:
        decoder = hpack_codec.Decoder(4096)
        for chunk in blocks:
            for block in chunk:
                decoder.decode(block, 65536)
            laps.lap()

    def encode(laps: Laps) -> None:
        encoder = hpack_codec.Encoder()
        for chunk in responses:
            for headers in chunk:
                encoder.encode(200, headers)
            laps.lap()

    def huffman_decode(laps: Laps) -> None:
        for chunk in coded:
            for string in chunk:
                huffman.huffman_decode(string)
            laps.lap()

    def huffman_encode(laps: Laps) -> None:
        for chunk in strings:
            for string in chunk:
                huffman.huffman_encode(string)
            laps.lap()

    def write_frames(laps: Laps) -> None:
        for chunk in blocks:
            for sid, block in enumerate(chunk, 1):
                frames.header_block_frames(sid, block, False, 16384)
                frames.window_update_frame(sid, 65535)
                frames.rst_stream_frame(sid, 8)
            laps.lap()

    def receive_bursts(laps: Laps) -> None:
        for chunk in connection_bursts:
            for burst in chunk:
                mods.connection.H2Connection(settings, _Listener()).receive_data(burst)
            laps.lap()

    return {
        "hpack decode (request block)": (decode, len(data["blocks"])),
        "hpack encode (response block)": (encode, len(data["responses"])),
        "huffman decode (string)": (huffman_decode, len(data["strings"])),
        "huffman encode (string)": (huffman_encode, len(data["strings"])),
        "frame writers (3 frames)": (write_frames, len(data["blocks"])),
        "h2 receive (10-request burst)": (receive_bursts, len(data["bursts"])),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rounds", type=int, default=7, help="alternating rounds; each chunk's best counts")
    parser.add_argument("--seed", type=int, default=7)
    args = parser.parse_args()

    rng = random.Random(args.seed)
    data = {
        "blocks": request_blocks(rng),
        "strings": [value for n in range(DISTINCT) for _, value in request_headers(rng, n)[3::13]],  # path, cookie
        "responses": [response_headers(n) for n in range(DISTINCT)],
        "bursts": bursts(rng),
    }
    sides = {
        "as built": workloads(modules("celeris_asgi.protocols.http2"), data),
        "pure": workloads(load_pure(), data),
    }
    best: dict[tuple[str, str], list[int]] = {}
    laps = Laps()
    for _ in range(args.rounds):
        for side, loads in sides.items():
            for name, (run, _ops) in loads.items():
                laps.start()
                run(laps)
                previous = best.get((side, name), laps.durations)
                best[side, name] = [min(pair) for pair in zip(previous, laps.durations, strict=True)]

    print(f"Python {sys.version.split()[0]}, core as built: {build_mode()}, best of {args.rounds} rounds")
    print(f"{'workload':32} {'as built us/op':>15} {'pure us/op':>11} {'speed-up':>9}")
    for name, (_run, ops) in sides["pure"].items():
        built, pure = (sum(best[side, name]) / 1000 / ops for side in ("as built", "pure"))
        print(f"{name:32} {built:15.2f} {pure:11.2f} {pure / built:8.2f}x")


if __name__ == "__main__":
    main()
