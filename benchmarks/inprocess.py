"""In-process benchmark: the servers' protocol objects driven through a fake transport, no sockets.

    python -m benchmarks.inprocess [--protocol h1|h2|all] [--app raw|starlette|fastapi|all]
        [--endpoint simple|json|params|browser|all] [--requests N] [--repeat K] [--json out.json]

The instrument for changes to the hot path: one process, one thread, a real uvloop loop, and no
kernel, load generator or second CPU in the measurement. Each case builds the protocol objects the
way the server does (celeris: Config + Server's ServerState; uvicorn: Config + its ServerState, the
httptools protocol class), connects them to a FakeTransport, and plays a keep-alive client on
--connections connections: HTTP/1.1 sends --h1-depth requests per write (1: plain keep-alive, more:
pipelined) and the next write once they are all answered; HTTP/2 keeps --h2-streams streams open per
connection and opens one new stream per finished one (as h2load does). Request bytes are prebuilt;
the client's per-response work (httptools response parser for HTTP/1.1, a frame-header walk for
HTTP/2) is the same for every server and is part of the figure.

Figures per case:
- us/req: thread CPU time (time.thread_time_ns) of the timed requests over their count; the median
  of --repeat runs with min..max. CPU time rather than wall time, so other processes on the box
  do not count; each repeat runs on fresh connections after --warmup requests on each.
- blocks/req: growth of sys.getallocatedblocks() per request over one extra run with the cyclic
  GC paused: memory blocks that reference counting did not free (objects in reference cycles, and
  any leak). Gross allocations cannot be counted without tracemalloc; this is what a request leaves
  for the collector.
- cyclic/req: objects the cyclic GC then found unreachable, per request.
The GC runs as each server configures it (celeris freezes start-up objects and raises the young
threshold, see celeris_asgi.server.tune_gc_for_serving; uvicorn keeps the interpreter's default).

--measure instructions: thousands of instructions per request, counted by valgrind (cachegrind,
no cache simulation) as the difference of two runs of different length. It repeats to within
0.1 % where CPU time, on a box whose other tenants share the caches, moves by 5-30 %: the figure
to compare two commits by. CPU time stays the figure for what a request costs in time.
--servers floor answers with canned bytes and runs no app: the harness's own share of each figure.
--profile PATH: cProfile of the timed runs of every selected case together (select one).

Implementations (--impl): celeris runs as installed ("auto"). Once a compiled core exists, "pure"
sets CELERIS_NO_EXTENSIONS=1 before celeris is imported (the compiled core is expected to honour it
at import time too) and "compiled" requires the extension; each then checks which one actually
loaded (celeris_build). "both" runs one child process per implementation and merges the tables.
"""

from __future__ import annotations

import argparse
import asyncio
import cProfile
import functools
import gc
import importlib.machinery
import itertools
import json
import os
import pstats
import re
import shutil
import statistics
import struct
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

if __package__ in (None, ""):  # run as a script: make `benchmarks` importable from the repo root
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from benchmarks.scenarios import BROWSER_HEADERS, Scenario
from benchmarks.scenarios import ENDPOINTS as SCENARIO_ENDPOINTS
from benchmarks.servers import APPS, ROOT

ENDPOINTS = SCENARIO_ENDPOINTS  # "browser" runs on HTTP/2 only, as in the socket benchmark
AUTHORITY = "127.0.0.1:8000"
PEER = ("127.0.0.1", 50000)
SOCKNAME = ("127.0.0.1", 8000)
NO_EXTENSIONS = "CELERIS_NO_EXTENSIONS"

# ----- the fake transport -------------------------------------------------------------------------


class FakeTransport(asyncio.Transport):
    """A connected TCP transport without a socket: writes go to the client, reads come from it.

    Bytes the client sends are delivered with loop.call_soon (the next loop pass, as a socket read
    would be), and held while the protocol has paused reading.
    """

    def __init__(self, loop: asyncio.AbstractEventLoop, client: Client) -> None:
        super().__init__({"peername": PEER, "sockname": SOCKNAME, "sslcontext": None, "socket": None})
        self.loop = loop
        self.client = client
        self.protocol: asyncio.Protocol | None = None
        self.reading = True
        self.closing = False
        self.held: list[bytes] = []

    def send(self, data: bytes) -> None:
        """The client's bytes, for the protocol's data_received in a later loop pass."""
        if self.reading:
            self.loop.call_soon(self.deliver, data)
        else:
            self.held.append(data)

    def deliver(self, data: bytes) -> None:
        if not self.reading:
            self.held.append(data)
        elif not self.closing and self.protocol is not None:
            self.protocol.data_received(data)

    def write(self, data: bytes | bytearray | memoryview) -> None:
        self.client.received(bytes(data))

    def writelines(self, chunks: Any) -> None:
        self.client.received(b"".join(chunks))

    def pause_reading(self) -> None:
        self.reading = False

    def resume_reading(self) -> None:
        if not self.reading:
            self.reading = True
            held, self.held = self.held, []
            for data in held:
                self.loop.call_soon(self.deliver, data)

    def is_reading(self) -> bool:
        return self.reading

    def close(self) -> None:
        """A server that closes a keep-alive connection mid-benchmark broke the run: say so."""
        if not self.closing:
            self.closing = True
            self.client.closed()
            if self.protocol is not None:
                self.loop.call_soon(self.protocol.connection_lost, None)

    def abort(self) -> None:
        self.close()

    def is_closing(self) -> bool:
        return self.closing

    def set_protocol(self, protocol: asyncio.BaseProtocol) -> None:
        self.protocol = protocol  # type: ignore[assignment]

    def get_protocol(self) -> asyncio.BaseProtocol:
        return self.protocol  # type: ignore[return-value]

    def get_write_buffer_size(self) -> int:
        return 0

    def get_write_buffer_limits(self) -> tuple[int, int]:
        return (16 * 1024, 64 * 1024)

    def set_write_buffer_limits(self, high: int | None = None, low: int | None = None) -> None:
        pass

    def can_write_eof(self) -> bool:
        return False


# ----- the clients ---------------------------------------------------------------------------------


def _nothing() -> None:
    pass


class Client:
    """One keep-alive client connection: sends requests, counts answered ones, reports when done."""

    def __init__(self) -> None:
        self.transport: FakeTransport | None = None
        self.left = 0  # requests of the current run still to send
        self.in_flight = 0
        self.bad = 0  # responses that were not 200, and resets
        self.on_done: Callable[[], None] = _nothing
        self.failure: str | None = None

    def run(self, count: int, on_done: Callable[[], None]) -> None:
        """Send `count` requests; call on_done once all are answered."""
        self.left = count
        self.on_done = on_done
        self.send_more(0)

    def closed(self) -> None:
        self.failure = self.failure or "the server closed the connection"
        self.finish()

    def finish(self) -> None:
        """Report this run done, once."""
        on_done, self.on_done = self.on_done, _nothing
        on_done()

    def send_more(self, answered: int) -> None:
        raise NotImplementedError

    def received(self, data: bytes) -> None:
        raise NotImplementedError


class H1Client(Client):
    """HTTP/1.1 like wrk: `depth` requests per write (1 = plain keep-alive), the next write when all are answered."""

    def __init__(self, path: str, depth: int) -> None:
        super().__init__()
        import httptools

        self.request = f"GET {path} HTTP/1.1\r\nHost: {AUTHORITY}\r\n\r\n".encode()
        self.depth = depth
        self.batch = self.request * depth
        self.parser = httptools.HttpResponseParser(self)

    def send_more(self, answered: int) -> None:
        if self.in_flight:
            return
        count = min(self.depth, self.left)
        if not count:
            self.finish()
            return
        self.left -= count
        self.in_flight = count
        assert self.transport is not None
        self.transport.send(self.batch if count == self.depth else self.request * count)

    def on_message_complete(self) -> None:
        if self.parser.get_status_code() != 200:
            self.bad += 1
        self.in_flight -= 1

    def received(self, data: bytes) -> None:
        self.parser.feed_data(data)
        if not self.in_flight:
            self.send_more(0)


_FRAME_HEADER = struct.Struct(">BHBBL")
_DATA, _HEADERS, _RST_STREAM, _SETTINGS, _GOAWAY = 0x0, 0x1, 0x3, 0x4, 0x7
_END_STREAM, _ACK, _END_HEADERS = 0x1, 0x1, 0x4
_STATUS_200 = 0x88  # HPACK static table index 8, ":status: 200"
_PREFACE = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"
_WINDOW_CREDIT = 32 * 1024  # DATA bytes taken before the connection window is opened again


def _frame(ftype: int, flags: int, stream_id: int, payload: bytes) -> bytes:
    return _FRAME_HEADER.pack(len(payload) >> 16, len(payload) & 0xFFFF, ftype, flags, stream_id) + payload


_H2_REQUEST = [(":method", "GET"), (":scheme", "http"), (":authority", AUTHORITY)]
_H2LOAD_HEADERS = [("user-agent", "h2load nghttp2/1.59.0"), ("accept", "*/*"), ("accept-encoding", "gzip, deflate")]
_browser_path_numbers = itertools.count()  # process-wide: connections take turns through the paths


def simple_blocks(path: str, total: int) -> list[bytes]:
    """h2load on one URL: the first block fills the server's HPACK table, the rest are all-indexed."""
    import hpack

    encoder = hpack.Encoder()
    headers = [*_H2_REQUEST, (":path", path), *_H2LOAD_HEADERS]
    first, steady = encoder.encode(headers), encoder.encode(headers)
    return [steady if i else first for i in range(total)]


@functools.cache
def _browser_path_literals() -> tuple[bytes, ...]:
    """The socket scenario's BROWSER_PATHS paths as nghttp2 sends them: Huffman-coded literals
    without indexing (nghttp2 never indexes :path). Encoded once, so the client's per-request work
    stays a lookup (the instruction count is the difference of two runs: a per-request encode would
    count as the server's).
    """
    from hpack.hpack import encode_integer
    from hpack.huffman import HuffmanEncoder
    from hpack.huffman_constants import REQUEST_CODES, REQUEST_CODES_LENGTH

    huffman = HuffmanEncoder(REQUEST_CODES, REQUEST_CODES_LENGTH)
    literals = []
    for path in Scenario("raw", "browser", "h2").paths:
        coded = huffman.encode(path.encode())
        length = encode_integer(len(coded), 7)
        length[0] |= 0x80  # Huffman-coded
        literals.append(b"\x04" + bytes(length) + coded)  # literal without indexing, name :path (static 4)
    return tuple(literals)


def browser_blocks(total: int) -> list[bytes]:
    """The socket scenario's browser requests as h2load (nghttp2) encodes them.

    BROWSER_HEADERS replace h2load's own user-agent, accept and accept-encoding and enter the
    dynamic table with the first request; every block is then a :path literal and one indexed byte
    per other field. The paths are taken in turn from one process-wide cycle over BROWSER_PATHS
    (5000), more than any cache holds, so neither the decoded-block cache nor the Huffman string
    cache can answer. (h2load's connections each walk the same list from its start, so there a
    process-wide string cache hits for all but the first connection to reach a path: this is the
    stricter case.)
    """
    import hpack

    browser = [tuple(line.split(": ", 1)) for line in BROWSER_HEADERS]
    replaced = {name for name, _ in browser}
    headers = [*_H2_REQUEST, *(h for h in _H2LOAD_HEADERS if h[0] not in replaced), *browser]
    encoder = hpack.Encoder()
    first, steady = encoder.encode(headers), encoder.encode(headers)
    paths = _browser_path_literals()
    return [paths[next(_browser_path_numbers) % len(paths)] + (steady if i else first) for i in range(total)]


class H2Client(Client):
    """h2c with prior knowledge like h2load: `streams` open at once, one new per finished one.

    Every HEADERS frame is built before the clock starts (simple_blocks, browser_blocks).
    """

    def __init__(self, path: str, streams: int, total: int, browser: bool = False) -> None:
        super().__init__()
        flags = _END_STREAM | _END_HEADERS
        blocks = browser_blocks(total) if browser else simple_blocks(path, total)
        self.frames = [_frame(_HEADERS, flags, 2 * i + 1, block) for i, block in enumerate(blocks)]
        self.next_frame = 0
        self.streams = streams
        self.preface = _PREFACE + _frame(_SETTINGS, 0, 0, b"") + _frame(0x8, 0, 0, struct.pack(">L", 2**30))
        self.buffer = b""
        self.data_taken = 0

    def send_more(self, answered: int) -> None:
        self.in_flight -= answered
        count = min(self.streams - self.in_flight, self.left)
        out = []
        if self.preface:
            out.append(self.preface)
            self.preface = b""
        if self.data_taken >= _WINDOW_CREDIT:
            out.append(_frame(0x8, 0, 0, struct.pack(">L", self.data_taken)))
            self.data_taken = 0
        if count > 0:
            start = self.next_frame
            self.next_frame = start + count
            out += self.frames[start : start + count]
            self.left -= count
            self.in_flight += count
        if out:
            assert self.transport is not None
            self.transport.send(b"".join(out))
        if not self.in_flight and not self.left:
            self.finish()

    def received(self, data: bytes) -> None:
        if self.buffer:
            data = self.buffer + data
        unpack = _FRAME_HEADER.unpack_from
        pos, end, answered = 0, len(data), 0
        while end - pos >= 9:
            high, low, ftype, flags, _ = unpack(data, pos)
            stop = pos + 9 + (high << 16 | low)
            if stop > end:
                break
            if ftype == _DATA:
                self.data_taken += stop - pos - 9
                answered += flags & _END_STREAM
            elif ftype == _HEADERS:
                if data[pos + 9] != _STATUS_200:
                    self.bad += 1
                answered += flags & _END_STREAM
            elif ftype == _SETTINGS and not flags & _ACK:
                if self.preface:  # the server spoke first (in connection_made): ack after our preface
                    self.preface += _frame(_SETTINGS, _ACK, 0, b"")
                else:
                    assert self.transport is not None
                    self.transport.send(_frame(_SETTINGS, _ACK, 0, b""))
            elif ftype in (_RST_STREAM, _GOAWAY):
                self.bad += 1
                self.failure = self.failure or f"the server sent frame type {ftype}: {data[pos + 9 : stop]!r}"
            pos = stop
        self.buffer = data[pos:]
        if answered or self.data_taken >= _WINDOW_CREDIT:
            self.send_more(answered)


# ----- the servers under test: one small function per protocol ------------------------------------

Setup = tuple[Any, Any]  # (config, server state) as the server builds them


def celeris_setup(app: str, loop: asyncio.AbstractEventLoop) -> Setup:
    """Config and ServerState the way celeris_asgi.server.Server.serve builds them (no sockets)."""
    from celeris_asgi.config import Config
    from celeris_asgi.server import Server

    config = Config(app, access_log=False, log_level="warning")
    server = Server(config)
    config.load()
    return config, server.state


def celeris_h1(setup: Setup, loop: asyncio.AbstractEventLoop) -> asyncio.Protocol:
    from celeris_asgi.protocols.detect import make_http1_protocol

    config, state = setup
    return make_http1_protocol(config.settings, state, loop)


def celeris_h2(setup: Setup, loop: asyncio.AbstractEventLoop) -> asyncio.Protocol:
    from celeris_asgi.protocols.http2 import HTTP2Protocol

    config, state = setup
    return HTTP2Protocol(config.settings, state, loop)


def celeris_gc(setup: Setup) -> None:
    from celeris_asgi.server import tune_gc_for_serving

    if setup[0].gc_tuning:
        tune_gc_for_serving()


def uvicorn_setup(app: str, loop: asyncio.AbstractEventLoop) -> Setup:
    """uvicorn's Config and ServerState, default headers set by one server tick, as Server does."""
    import uvicorn

    config = uvicorn.Config(app, http="httptools", lifespan="off", access_log=False, log_level="warning")
    config.load()
    server = uvicorn.Server(config)
    loop.run_until_complete(server.on_tick(0))
    return config, server.server_state


def uvicorn_h1(setup: Setup, loop: asyncio.AbstractEventLoop) -> asyncio.Protocol:
    config, state = setup
    protocol: asyncio.Protocol = config.http_protocol_class(config=config, server_state=state, app_state={}, _loop=loop)
    return protocol


def floor_setup(app: str, loop: asyncio.AbstractEventLoop) -> Setup:
    return None, None


class Floor(asyncio.Protocol):
    """The harness floor: canned answers, no app, so the client's own share of a figure shows."""

    def __init__(self, setup: Setup, loop: asyncio.AbstractEventLoop) -> None:
        self.transport: Any = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport


class FloorH1(Floor):
    """Answers each request with canned bytes."""

    RESPONSE = b"HTTP/1.1 200 OK\r\ncontent-type: text/plain\r\ncontent-length: 13\r\n\r\nHello, world!"

    def data_received(self, data: bytes) -> None:
        self.transport.write(self.RESPONSE * data.count(b"\r\n\r\n"))


class FloorH2(Floor):
    """h2c: SETTINGS, then a canned HEADERS + DATA for each request's stream."""

    ANSWER = (bytes([_STATUS_200]), b"Hello, world!")
    preface = True

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        super().connection_made(transport)
        self.transport.write(_frame(_SETTINGS, 0, 0, b""))

    def data_received(self, data: bytes) -> None:
        pos = len(_PREFACE) if self.preface else 0
        self.preface = False
        head, body = self.ANSWER
        out = []
        while len(data) - pos >= 9:
            high, low, ftype, _, sid = _FRAME_HEADER.unpack_from(data, pos)
            if ftype == _HEADERS:
                out += (_frame(_HEADERS, _END_HEADERS, sid, head), _frame(_DATA, _END_STREAM, sid, body))
            pos += 9 + (high << 16 | low)
        if out:
            self.transport.write(b"".join(out))


def celeris_build() -> str:
    """'compiled' when any loaded celeris_asgi module is an extension module, else 'pure'.

    The one place that tells the builds apart: asked after a case ran, so every module the
    requests went through is loaded.
    """
    suffixes = tuple(importlib.machinery.EXTENSION_SUFFIXES)
    for name, module in list(sys.modules.items()):
        if name.partition(".")[0] == "celeris_asgi" and (getattr(module, "__file__", None) or "").endswith(suffixes):
            return "compiled"
    return "pure"


@dataclass(frozen=True)
class Server:
    """A server under test: how to build its config and state, and its protocol per HTTP version."""

    name: str
    setup: Callable[[str, asyncio.AbstractEventLoop], Setup]
    protocols: dict[str, Callable[[Setup, asyncio.AbstractEventLoop], asyncio.Protocol]]
    tune_gc: Callable[[Setup], None] = lambda setup: None


SERVERS = {
    "celeris": Server("celeris", celeris_setup, {"h1": celeris_h1, "h2": celeris_h2}, celeris_gc),
    "uvicorn": Server("uvicorn", uvicorn_setup, {"h1": uvicorn_h1}),
    "floor": Server("floor", floor_setup, {"h1": FloorH1, "h2": FloorH2}),
}

# ----- measuring ------------------------------------------------------------------------------------


@dataclass
class Case:
    """The CPU figures of one (server, protocol, app, endpoint); times in microseconds per request."""

    server: str
    build: str
    protocol: str
    app: str
    endpoint: str
    us_per_req: float
    us_min: float
    us_max: float
    spread_pct: float
    wall_us_per_req: float
    blocks_per_req: float
    cyclic_per_req: float
    gc_runs_per_1k: float
    runs_us: list[float]


class Runner:
    """Runs one case: fresh connections per repeat, warm-up, then the timed requests."""

    def __init__(self, loop: asyncio.AbstractEventLoop, args: argparse.Namespace) -> None:
        self.loop = loop
        self.args = args
        self.profiler: cProfile.Profile | None = cProfile.Profile() if args.profile else None

    def connect(
        self, make: Callable[[], asyncio.Protocol], endpoint: str, proto: str, per_conn: int
    ) -> list[tuple[Client, asyncio.Protocol]]:
        args = self.args
        pairs = []
        for _ in range(args.connections):
            if proto == "h1":
                client: Client = H1Client(ENDPOINTS[endpoint], args.h1_depth)
            else:
                total = args.warmup + per_conn
                client = H2Client(ENDPOINTS[endpoint], args.h2_streams, total, browser=endpoint == "browser")
            transport = FakeTransport(self.loop, client)
            client.transport = transport
            protocol = make()
            transport.set_protocol(protocol)
            protocol.connection_made(transport)
            pairs.append((client, protocol))
        return pairs

    async def drive(self, pairs: list[tuple[Client, asyncio.Protocol]], per_conn: int) -> None:
        """Every client sends per_conn requests; return when all are answered (or one failed)."""
        done = self.loop.create_future()
        waiting = len(pairs)

        def one_done() -> None:
            nonlocal waiting
            waiting -= 1
            if not waiting and not done.done():
                done.set_result(None)

        for client, _ in pairs:
            client.run(per_conn, one_done)
        await asyncio.wait_for(done, timeout=max(30.0, per_conn * len(pairs) * 1e-3))
        for client, _ in pairs:
            if client.failure or client.bad:
                raise RuntimeError(f"{client.failure or 'unexpected responses'} ({client.bad} not 200)")

    async def once(self, make: Callable[[], asyncio.Protocol], endpoint: str, proto: str, mode: str) -> tuple[int, ...]:
        """One run on fresh connections.

        mode "time" and "warm" (not profiled): (cpu ns, wall ns, gc runs); "count": (blocks, cyclic).
        """
        args = self.args
        per_conn = _timed_count(args, args.requests) // args.connections
        pairs = self.connect(make, endpoint, proto, per_conn)
        if args.warmup:
            await self.drive(pairs, args.warmup)
        gc.collect()
        try:
            if mode == "count":
                gc.disable()
                blocks = sys.getallocatedblocks()
                await self.drive(pairs, per_conn)
                grown = sys.getallocatedblocks() - blocks
                gc.enable()
                return grown, gc.collect()
            collections = sum(gen["collections"] for gen in gc.get_stats())
            profiler = self.profiler if mode == "time" else None
            if profiler is not None:
                profiler.enable()
            cpu, wall = time.thread_time_ns(), time.perf_counter_ns()
            await self.drive(pairs, per_conn)
            cpu, wall = time.thread_time_ns() - cpu, time.perf_counter_ns() - wall
            if profiler is not None:
                profiler.disable()
            return cpu, wall, sum(gen["collections"] for gen in gc.get_stats()) - collections
        finally:
            gc.enable()
            for _, protocol in pairs:
                protocol.connection_lost(None)
            await asyncio.sleep(0)

    def case(self, server: Server, proto: str, app: str, endpoint: str, setup: Setup) -> Case:
        args = self.args
        loop = self.loop
        factory = server.protocols[proto]

        def make() -> asyncio.Protocol:
            return factory(setup, loop)

        count = _timed_count(args, args.requests)
        threshold = gc.get_threshold()
        server.tune_gc(setup)
        try:
            loop.run_until_complete(self.once(make, endpoint, proto, "warm"))  # imports, caches, specialised bytecode
            runs = [loop.run_until_complete(self.once(make, endpoint, proto, "time")) for _ in range(args.repeat)]
            blocks, cyclic = loop.run_until_complete(self.once(make, endpoint, proto, "count"))
        finally:
            gc.set_threshold(*threshold)
        build = {"celeris": celeris_build(), "uvicorn": "httptools"}.get(server.name, "no app")
        us = [cpu / 1000 / count for cpu, _, _ in runs]
        median = statistics.median(us)
        return Case(
            server=server.name,
            build=build,
            protocol=proto,
            app=app,
            endpoint=endpoint,
            us_per_req=median,
            us_min=min(us),
            us_max=max(us),
            spread_pct=(max(us) - min(us)) / median * 100,
            wall_us_per_req=statistics.median(wall / 1000 / count for _, wall, _ in runs),
            blocks_per_req=blocks / count,
            cyclic_per_req=cyclic / count,
            gc_runs_per_1k=statistics.median(runs_gc for _, _, runs_gc in runs) / count * 1000,
            runs_us=us,
        )


def _choices(value: str, known: list[str]) -> list[str]:
    chosen = known if value == "all" else [part for part in value.split(",") if part]
    unknown = [part for part in chosen if part not in known]
    if unknown:
        raise SystemExit(f"unknown {', '.join(unknown)}; known: {', '.join(known)}, all")
    return chosen


def check_build(impl: str, cases: list[Case]) -> None:
    """--impl pure/compiled promise one build: refuse to report the other under its name."""
    for case in cases:
        if case.server == "celeris" and impl in ("pure", "compiled") and case.build != impl:
            hint = f"{NO_EXTENSIONS}=1 was ignored" if impl == "pure" else "no compiled core in this install"
            raise SystemExit(f"--impl {impl}: celeris {case.protocol} runs {case.build} ({hint})")


def _matrix(args: argparse.Namespace) -> list[tuple[str, str, str, Server]]:
    """(protocol, app, endpoint, server) for every case the flags select, in table order."""
    servers = [SERVERS[name] for name in _choices(args.servers, list(SERVERS))]
    protos = _choices(args.protocol, ["h1", "h2"])
    apps = _choices(args.app, ["raw", "starlette", "fastapi"])
    endpoints = _choices(args.endpoint, list(ENDPOINTS))
    return [
        (proto, app, endpoint, server)
        for proto in protos
        for app in apps
        for endpoint in endpoints
        for server in servers
        if proto in server.protocols and (endpoint != "browser" or proto == "h2")
    ]


def measure(args: argparse.Namespace) -> list[Case]:
    if args.impl == "pure":
        os.environ[NO_EXTENSIONS] = "1"  # before celeris is imported (setup functions import lazily)
    import uvloop

    loop = uvloop.new_event_loop()
    asyncio.set_event_loop(loop)
    runner = Runner(loop, args)
    matrix = _matrix(args)
    setups = {(server.name, app): server.setup(APPS[app], loop) for _, app, _, server in matrix}
    gc.collect()
    gc.freeze()  # start-up objects (apps, frameworks, both servers) stay out of every collection
    cases = []
    try:
        for proto, app, endpoint, server in matrix:
            case = runner.case(server, proto, app, endpoint, setups[(server.name, app)])
            check_build(args.impl, [case])
            print(_row(case), file=sys.stderr, flush=True)
            cases.append(case)
    finally:
        loop.close()
    if runner.profiler is not None:
        stats = pstats.Stats(runner.profiler)
        stats.dump_stats(args.profile)
        stats.sort_stats("tottime").print_stats(args.profile_top)
    return cases


def measure_each_build(args: argparse.Namespace) -> list[Case]:
    """--impl both: a child process per build (one process cannot import both), uvicorn in the first."""
    cases: list[Case] = []
    for impl, servers in (("pure", args.servers), ("compiled", "celeris")):
        if impl == "compiled" and "celeris" not in args.servers.split(","):
            continue
        with tempfile.NamedTemporaryFile(suffix=".json") as out:
            argv = [sys.executable, "-m", "benchmarks.inprocess", *_passed_on(args), "--impl", impl]
            argv += ["--servers", servers, "--json", out.name]
            done = subprocess.run(argv, cwd=ROOT, check=False)
            if done.returncode != 0:
                print(f"celeris {impl}: not measured (exit {done.returncode})", file=sys.stderr)
                continue
            cases += [Case(**row) for row in json.loads(Path(out.name).read_text())["cases"]]
    return cases


VALGRIND = ["valgrind", "--tool=cachegrind", "--cache-sim=no", "--cachegrind-out-file=/dev/null"]
_REFS = re.compile(r"I\s+refs:\s+([\d,]+)")


@dataclass
class Count:
    """The instruction count of one (server, protocol, app, endpoint)."""

    server: str
    build: str
    protocol: str
    app: str
    endpoint: str
    kinstr_per_req: float


def count_instructions(args: argparse.Namespace) -> list[Count]:
    """--measure instructions: instructions per request under valgrind, the same on every run.

    Each case runs twice in a child under cachegrind, with --requests and twice that (each child:
    a warm-up run, one timed run and the counting run); start-up, imports and warm-up cancel out
    in the difference. PYTHONHASHSEED=0 keeps both children on the same path through every dict.
    """
    if shutil.which("valgrind") is None:
        raise SystemExit("--measure instructions needs valgrind (apt-get install valgrind)")
    if args.impl == "both":
        raise SystemExit("--measure instructions: give --impl pure or compiled, one at a time")
    counts = []
    for proto, app, endpoint, server in _matrix(args):
        refs, build = [], ""
        for requests in (args.requests, 2 * args.requests):
            with tempfile.NamedTemporaryFile(suffix=".json") as out:
                flags = {"protocol": proto, "app": app, "endpoint": endpoint, "requests": requests, "repeat": 1}
                argv = [*VALGRIND, sys.executable, "-m", "benchmarks.inprocess", *_passed_on(args, **flags)]
                argv += ["--servers", server.name, "--impl", args.impl, "--json", out.name]
                env = {**os.environ, "PYTHONHASHSEED": "0"}
                done = subprocess.run(argv, cwd=ROOT, env=env, capture_output=True, text=True, check=False)
                found = _REFS.search(done.stderr)
                if done.returncode != 0 or found is None:
                    tail = done.stderr.strip().splitlines()[-1:] or ["(no output)"]
                    raise SystemExit(f"{server.name} {proto} {app}: valgrind run failed: {tail[0]}")
                refs.append(int(found.group(1).replace(",", "")))
                build = json.loads(Path(out.name).read_text())["cases"][0]["build"]
        extra = 3 * (_timed_count(args, 2 * args.requests) - _timed_count(args, args.requests))
        count = Count(server.name, build, proto, app, endpoint, (refs[1] - refs[0]) / extra / 1000)
        print(_count_row(count), file=sys.stderr, flush=True)
        counts.append(count)
    return counts


def _timed_count(args: argparse.Namespace, requests: int) -> int:
    """Requests a run really sends: --requests rounded down to a multiple of --connections."""
    return max(1, requests // args.connections) * args.connections


def _passed_on(args: argparse.Namespace, **override: object) -> list[str]:
    names = ("protocol", "app", "endpoint", "requests", "repeat", "warmup", "connections", "h1_depth", "h2_streams")
    values = {name: override.get(name, getattr(args, name)) for name in names}
    return [item for name in names for item in (f"--{name.replace('_', '-')}", str(values[name]))]


def _count_row(count: Count) -> str:
    return (
        f"| {count.server} ({count.build}) | {count.protocol} | {count.app} | {count.endpoint} "
        f"| {count.kinstr_per_req:.1f} |"
    )


def _row(case: Case) -> str:
    name = f"{case.server} ({case.build})"
    return (
        f"| {name} | {case.protocol} | {case.app} | {case.endpoint} | {case.us_per_req:.2f} "
        f"| {case.us_min:.2f}..{case.us_max:.2f} | {case.spread_pct:.1f} % "
        f"| {case.blocks_per_req:.2f} | {case.cyclic_per_req:.2f} |"
    )


def _order(case: Case | Count) -> tuple[object, ...]:
    return (case.protocol != "h1", case.app, case.endpoint, list(SERVERS).index(case.server), case.build)


def counts_table(counts: list[Count]) -> str:
    head = ["| server | proto | app | endpoint | k instructions/req |", "|---|---|---|---|---:|"]
    return "\n".join(head + [_count_row(count) for count in sorted(counts, key=_order)])


def table(cases: list[Case]) -> str:
    head = [
        "| server | proto | app | endpoint | us/req (CPU, median) | min..max | spread | blocks/req | cyclic/req |",
        "|---|---|---|---|---:|---:|---:|---:|---:|",
    ]
    return "\n".join(head + [_row(case) for case in sorted(cases, key=_order)])


def parse(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="benchmarks.inprocess", description=__doc__.split("\n")[0])
    p.add_argument("--protocol", default="all", help="h1, h2 or all")
    p.add_argument("--app", default="all", help="raw, starlette, fastapi (comma list) or all")
    p.add_argument(
        "--endpoint",
        default="simple",
        help="simple, json, params, browser (HTTP/2 only: browser-sized headers, a new path each request) or all",
    )
    p.add_argument(
        "--servers",
        default="celeris,uvicorn",
        help="celeris, uvicorn (HTTP/1.1 only), floor (canned answers, no app: the harness's own cost)",
    )
    p.add_argument("--impl", choices=("auto", "pure", "compiled", "both"), default="auto", help="celeris build")
    p.add_argument(
        "--measure",
        choices=("cpu", "instructions"),
        default="cpu",
        help="cpu: thread CPU time per request (default); instructions: counted under valgrind, noise-free",
    )
    p.add_argument("--requests", type=int, help="timed requests per repeat (default 20000; 1000 for instructions)")
    p.add_argument("--repeat", type=int, default=7, help="timed repeats; the median is reported (default 7)")
    p.add_argument("--warmup", type=int, default=100, help="untimed requests per connection per repeat")
    p.add_argument("--connections", type=int, default=16, help="client connections (default 16)")
    p.add_argument("--h1-depth", type=int, default=1, help="HTTP/1.1 requests per write (default 1)")
    p.add_argument("--h2-streams", type=int, default=10, help="HTTP/2 concurrent streams per connection")
    p.add_argument("--cpu", type=int, help="pin this process to one CPU")
    p.add_argument("--json", help="also write the figures to this file")
    p.add_argument("--profile", metavar="PATH", help="cProfile the timed runs into PATH and print the top")
    p.add_argument("--profile-top", type=int, default=15, help="functions to print by own time (default 15)")
    return p.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse(argv)
    if args.cpu is not None:
        os.sched_setaffinity(0, {args.cpu})
    if args.requests is None:
        args.requests = 1000 if args.measure == "instructions" else 20000
    setting = (
        f"Python {sys.version.split()[0]}, uvloop, {args.connections} connections, h1 depth {args.h1_depth}, "
        f"h2 {args.h2_streams} streams"
    )
    results: list[Case] | list[Count]
    if args.measure == "instructions":
        results = count_instructions(args)
        print(f"\n{setting}; thousands of instructions per request under valgrind (see --help)\n")
        print(counts_table(results))
    else:
        results = measure_each_build(args) if args.impl == "both" else measure(args)
        print(f"\n{setting}; {args.requests} requests x {args.repeat} repeats; thread CPU time; GC paused for blocks\n")
        print(table(results))
    if args.json:
        meta = {"python": sys.version, "argv": sys.argv[1:], "date": time.strftime("%Y-%m-%d %H:%M:%S %Z")}
        Path(args.json).write_text(json.dumps({"meta": meta, "cases": [asdict(c) for c in results]}, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
