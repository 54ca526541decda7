"""Memory mode: what an idle connection and an open HTTP/2 stream cost a worker, in RSS bytes.

HTTP/1.1: open raw keep-alive sockets, send one `GET /` on each, read the answer, keep them open,
and read the worker's VmRSS at 1, 1,000 and 10,000 connections (cumulative).
HTTP/2: open h2c connections and on them 1,000 `POST /echo` streams whose body never ends, so
every stream holds a live request (and app task) in the server; then PING and wait for the ACK,
which proves the server has read every frame sent before it.
Bytes per connection = (RSS at N - RSS before any load connection) / connections still alive.
"""

from __future__ import annotations

import asyncio
import contextlib
import math
import resource
import time
from collections.abc import Callable

from benchmarks.procfs import rss_bytes
from benchmarks.servers import HOST, RunningServer, ServerFailed, ServerSpec

REQUEST = b"GET / HTTP/1.1\r\nHost: bench\r\n\r\n"
OPEN_CONCURRENCY = 200  # connects in flight at once: fast, yet far below every server's backlog
STEP_TIMEOUT = 20.0  # seconds per step, plus 5 ms per connection
H2_STREAMS_PER_CONNECTION = 100  # lowered to a server's SETTINGS_MAX_CONCURRENT_STREAMS if smaller


def raise_nofile(needed: int) -> int:
    """Raise RLIMIT_NOFILE (inherited by servers started after this) and return the soft limit."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    target = hard if hard == resource.RLIM_INFINITY else max(soft, min(hard, needed))
    if target > soft:
        resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))
    return resource.getrlimit(resource.RLIMIT_NOFILE)[0]


async def _open_one(port: int) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
    reader, writer = await asyncio.wait_for(asyncio.open_connection(HOST, port), 10)
    writer.write(REQUEST)
    head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 10)
    length = 0
    for line in head.split(b"\r\n"):
        if line.lower().startswith(b"content-length:"):
            length = int(line.split(b":", 1)[1])
    await asyncio.wait_for(reader.readexactly(length), 10)
    return reader, writer


async def _h1_idle(server: RunningServer, counts: list[int], settle: float) -> list[dict[str, object]]:
    """Grow the idle connection set step by step; one record per step.

    Bytes per connection divide by the connections still alive, and `alive` is reported beside
    it: a server that refused or dropped connections shows it instead of looking cheap.
    """
    worker = server.worker_pid()
    base = rss_bytes(worker)
    conns: list[tuple[asyncio.StreamReader, asyncio.StreamWriter]] = []
    gate = asyncio.Semaphore(OPEN_CONCURRENCY)

    async def guarded() -> None:
        async with gate:
            with contextlib.suppress(OSError, TimeoutError, asyncio.IncompleteReadError, ValueError):
                conns.append(await _open_one(server.port))

    records: list[dict[str, object]] = []
    attempted = 0
    try:
        for count in counts:
            started = time.monotonic()
            batch = asyncio.gather(*(guarded() for _ in range(count - attempted)))
            attempted = count
            # Bounded: whatever has not connected by then is cancelled and simply not alive.
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(batch, STEP_TIMEOUT + count / 200)
            opened_s = time.monotonic() - started
            await asyncio.sleep(settle)
            alive = sum(not reader.at_eof() for reader, _ in conns)
            rss = rss_bytes(worker)
            records.append(
                {
                    "kind": "h1-idle",
                    "count": count,
                    "alive": alive,
                    "rss": rss,
                    "base_rss": base,
                    "per_item": (rss - base) / alive if alive else None,
                    "open_s": opened_s,
                }
            )
    finally:
        for _, writer in conns:
            writer.close()
    return records


class _H2Client:
    """One h2c connection driven by the h2 library; counts resets and answers PINGs on its own."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter):
        import h2.config
        import h2.connection

        self.reader, self.writer = reader, writer
        self.conn = h2.connection.H2Connection(h2.config.H2Configuration(client_side=True))
        self.settings = asyncio.Event()
        self.pong = asyncio.Event()
        self.ended = 0  # streams the server finished (responses complete)
        self.resets = 0
        self.closed = False
        self.conn.initiate_connection()
        self._flush()
        self.task = asyncio.ensure_future(self._read())

    def _flush(self) -> None:
        data = self.conn.data_to_send()
        if data:
            self.writer.write(data)

    async def _read(self) -> None:
        import h2.events

        while data := await self.reader.read(65536):
            for event in self.conn.receive_data(data):
                if isinstance(event, h2.events.RemoteSettingsChanged):
                    self.settings.set()
                elif isinstance(event, h2.events.StreamEnded):
                    self.ended += 1
                elif isinstance(event, h2.events.StreamReset):
                    self.resets += 1
                elif isinstance(event, h2.events.PingAckReceived):
                    self.pong.set()
                elif isinstance(event, h2.events.ConnectionTerminated):
                    self.closed = True
            self._flush()
        self.closed = True

    def max_streams(self) -> int:
        return int(self.conn.remote_settings.max_concurrent_streams)

    def open_streams(self, count: int) -> None:
        """HEADERS plus one body byte per stream, never END_STREAM: the request stays in flight."""
        for _ in range(count):
            stream_id = self.conn.get_next_available_stream_id()
            headers = [(":method", "POST"), (":scheme", "http"), (":authority", HOST), (":path", "/echo")]
            self.conn.send_headers(stream_id, headers)
            self.conn.send_data(stream_id, b"x")
        self._flush()

    def send_gets(self, count: int) -> None:
        """Complete `GET /` requests, for warming the server up."""
        for _ in range(count):
            stream_id = self.conn.get_next_available_stream_id()
            headers = [(":method", "GET"), (":scheme", "http"), (":authority", HOST), (":path", "/")]
            self.conn.send_headers(stream_id, headers, end_stream=True)
        self._flush()

    async def ping(self) -> None:
        self.pong.clear()
        self.conn.ping(b"membench")
        self._flush()
        await asyncio.wait_for(self.pong.wait(), 30)

    def close(self) -> None:
        self.task.cancel()
        self.writer.close()


async def _h2_streams(server: RunningServer, total: int, settle: float) -> list[dict[str, object]]:
    worker = server.worker_pid()
    base = rss_bytes(worker)
    clients: list[_H2Client] = []
    try:
        first = _H2Client(*await asyncio.wait_for(asyncio.open_connection(HOST, server.port), 10))
        clients.append(first)
        await asyncio.wait_for(first.settings.wait(), 10)
        per_conn = max(1, min(H2_STREAMS_PER_CONNECTION, first.max_streams()))
        for _ in range(math.ceil(total / per_conn) - 1):
            client = _H2Client(*await asyncio.wait_for(asyncio.open_connection(HOST, server.port), 10))
            await asyncio.wait_for(client.settings.wait(), 10)
            clients.append(client)
        left = total
        for client in clients:
            client.open_streams(min(per_conn, left))
            left -= min(per_conn, left)
        await asyncio.gather(*(client.ping() for client in clients))
        await asyncio.sleep(settle)
        rss = rss_bytes(worker)
        finished = sum(c.resets + c.ended for c in clients)  # refused, reset or answered: not open
        alive = 0 if any(c.closed for c in clients) else total - finished
        return [
            {
                "kind": "h2-streams",
                "count": total,
                "alive": alive,
                "rss": rss,
                "base_rss": base,
                "per_item": (rss - base) / alive if alive else None,
                "connections": len(clients),
                "streams_per_connection": per_conn,
            }
        ]
    finally:
        for client in clients:
            client.close()


def _warm(server: RunningServer, family: str) -> None:
    """A few complete requests first, so lazy imports and first-request caches are not counted."""

    async def h1() -> None:
        for _ in range(20):
            _, writer = await _open_one(server.port)
            writer.close()

    async def h2() -> None:
        client = _H2Client(*await asyncio.wait_for(asyncio.open_connection(HOST, server.port), 10))
        try:
            client.send_gets(20)
            async with asyncio.timeout(10):
                while client.ended + client.resets < 20 and not client.closed:
                    await client.ping()
        finally:
            client.close()

    asyncio.run(h1() if family == "h1" else h2())


def run(
    specs: list[ServerSpec],
    counts: list[int],
    streams: int,
    rounds: int,
    cpu: int | None,
    startup_timeout: float,
    settle: float,
    say: Callable[[str], None],
) -> list[dict[str, object]]:
    """All memory measurements, servers alternated within each round."""
    limit = raise_nofile(max(counts) * 2 + 256)
    if limit < max(counts) + 128:
        say(f"memory: RLIMIT_NOFILE is {limit}; connection counts above {limit - 128} will fail")
    records: list[dict[str, object]] = []
    for rnd in range(1, rounds + 1):
        for family in ("h1", "h2"):
            for spec in specs:
                if family not in spec.protocols:
                    continue
                try:
                    with RunningServer(spec, "raw", family, cpu, idle=True) as server:
                        server.wait_ready(startup_timeout)
                        _warm(server, family)
                        if family == "h1":
                            found = asyncio.run(_h1_idle(server, counts, settle))
                        else:
                            found = asyncio.run(_h2_streams(server, streams, settle))
                except (ServerFailed, OSError, TimeoutError) as exc:
                    say(f"{spec.name}: memory {family} failed: {exc or type(exc).__name__}")
                    records.append({"round": rnd, "server": spec.name, "family": family, "error": str(exc)})
                    continue
                for record in found:
                    records.append({"round": rnd, "server": spec.name, "family": family, **record})
                    what = "idle conns" if family == "h1" else "open h2 streams"
                    mib, base = int(record["rss"]) / 2**20, int(record["base_rss"]) / 2**20
                    say(
                        f"round {rnd}: {spec.name:<13} {record['count']:>6,} {what}:"
                        f" {record['alive']:,} alive,"
                        f" worker RSS {mib:.1f} MiB (from {base:.1f})"
                    )
    return records
