"""Prometheus metrics: per-worker counters in shared memory, summed by whoever serves the scrape.

Every metric has a fixed set of label values (protocol, a known method or "other", a status class,
an HTTP/2 error code...), so one worker's metrics are a flat list of number slots at offsets
computed once at import: an event is an index and an add on a Python list (three times cheaper
than through a memoryview of shared memory, measured). An HTTP/1.1 connection counts its bytes
itself and hands them over every half second (take_traffic). Each server tick (0.1 s) a worker copies
its list into a page of anonymous shared memory the master mapped before forking it, under a
sequence number so the master never reads a half-written copy; the master sums the live pages
when scraped. When a worker exits, the master folds its last copy's counters into a "retired"
array, so a restarted worker's counts are not lost (its gauges are dropped: nothing of it is in
flight any more). A worker stopped gracefully publishes once more on its way out; one killed
with SIGKILL loses at most its last tick.

With metrics off (the default) nothing of this exists: `ServerSettings.metrics` is None and the
request cycle checks that once per request.

What metrics on costs per request (python -m benchmarks.metrics_inprocess --measure instructions, raw
HTTP/1.1 app, Python 3.11): +5 % instructions in pure Python, +3.2-3.9 % with the compiled core, where
Metrics is a C class (metrics.pxd).

Own exposition rather than prometheus_client: its multi-process mode writes one mmap file per
process and metric into PROMETHEUS_MULTIPROC_DIR, which must be wiped between runs, cannot keep
a dead worker's counters apart from its gauges without "livesum"/"liveall" modes per gauge, and
every `labels(...).inc()` takes a lock and a dict lookup. Measured with timeit on the (shared, busy)
2-core test box: a request's start and finish here (in-flight gauge, counter, histogram) 5.7 us,
the same three through prometheus_client 29 us; one `labels(...).inc()` 9.7 us against 1.2 us for
one slot add. The text format (0.0.4) is a few lines of code.
"""

from __future__ import annotations

import asyncio
import contextlib
import math
import mmap
import os
import selectors
import socket
import struct
from collections.abc import Callable, Sequence
from typing import Protocol

PROTOCOLS = ("h1", "h2", "ws")
METHODS = ("GET", "HEAD", "POST", "PUT", "DELETE", "PATCH", "OPTIONS", "CONNECT", "TRACE", "other")
STATUS_CLASSES = ("1xx", "2xx", "3xx", "4xx", "5xx", "none")  # none: the client left before an answer
DURATION_BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)
SERVER_STATUSES = (400, 408, 413, 414, 431, 500, 503)  # server-made answers; anything else is "other"
# RFC 9113 section 7 error codes, by value.
H2_ERROR_CODES = (
    "NO_ERROR",
    "PROTOCOL_ERROR",
    "INTERNAL_ERROR",
    "FLOW_CONTROL_ERROR",
    "SETTINGS_TIMEOUT",
    "STREAM_CLOSED",
    "FRAME_SIZE_ERROR",
    "REFUSED_STREAM",
    "CANCEL",
    "COMPRESSION_ERROR",
    "CONNECT_ERROR",
    "ENHANCE_YOUR_CALM",
    "INADEQUATE_SECURITY",
    "HTTP_1_1_REQUIRED",
    "other",
)
WORKER_EVENTS = ("crash", "max-requests", "max-rss", "lifetime", "reload", "sighup", "health-check")

_STATUS_INDEX = {status: index for index, status in enumerate(SERVER_STATUSES)}


class _Layout:
    """Hands out consecutive slots; the offsets become module constants below."""

    def __init__(self) -> None:
        self.size = 0

    def take(self, count: int = 1) -> int:
        start, self.size = self.size, self.size + count
        return start


_layout = _Layout()
REQUESTS = _layout.take(len(PROTOCOLS) * len(METHODS) * len(STATUS_CLASSES))
# Per protocol: one count per bucket plus +Inf (not cumulative: summed up when rendered), then the sum.
_HISTOGRAM_WIDTH = len(DURATION_BUCKETS) + 2
DURATION = _layout.take(len(PROTOCOLS) * _HISTOGRAM_WIDTH)
IN_FLIGHT = _layout.take()
CONNECTIONS_OPEN = _layout.take()
CONNECTIONS = _layout.take()
H2_STREAMS_OPEN = _layout.take()
BYTES_RECEIVED = _layout.take()
BYTES_SENT = _layout.take()
WEBSOCKETS_OPEN = _layout.take()
WEBSOCKETS = _layout.take()
SERVER_RESPONSES = _layout.take(len(SERVER_STATUSES) + 1)
APP_EXCEPTIONS = _layout.take()
H2_GOAWAYS = _layout.take(len(H2_ERROR_CODES))
H2_RESETS = _layout.take(len(H2_ERROR_CODES))
TLS_HANDSHAKE_FAILURES = _layout.take()
SLOTS = _layout.size

# Precomputed slots, so counting a request is a few lookups and adds: per protocol (keyed by the
# scope's http_version, or "ws"), each method's request slots by status // 100 (0: no answer), the
# method "other"'s, and the first slot of the protocol's histogram.
_ROW = len(STATUS_CLASSES)
_STATUS_COLUMN = (5, 0, 1, 2, 3, 4)  # by status // 100: 0 is "none" (no answer), 1xx..5xx
_SUM = _HISTOGRAM_WIDTH - 1
_FIRST_BOUND = DURATION_BUCKETS[0]
_BOUNDS = (*DURATION_BUCKETS, math.inf)  # the last: the +Inf slot, where the walk always stops


def _protocol_slots(p: int) -> tuple[dict[str, tuple[int, ...]], tuple[int, ...], int]:
    requests = REQUESTS + p * len(METHODS) * _ROW
    by_method = {
        method: tuple(requests + m * _ROW + column for column in _STATUS_COLUMN) for m, method in enumerate(METHODS)
    }
    return by_method, by_method["other"], DURATION + p * _HISTOGRAM_WIDTH


_H1, _H2, _WS = (_protocol_slots(p) for p in range(len(PROTOCOLS)))
_SLOTS_BY_PROTOCOL = {"1.0": _H1, "1.1": _H1, "2": _H2, "ws": _WS}
GAUGES = (IN_FLIGHT, CONNECTIONS_OPEN, H2_STREAMS_OPEN, WEBSOCKETS_OPEN)
# A worker's shared page: a sequence number (odd while the worker writes), then the slots.
_SEQUENCE = struct.Struct("Q")
_SLOTS = struct.Struct(f"{SLOTS}d")
PAGE_BYTES = _SEQUENCE.size + _SLOTS.size


def new_shared_buffer() -> mmap.mmap:
    """Zeroed anonymous memory shared with the children forked after it is made (one per worker)."""
    return mmap.mmap(-1, PAGE_BYTES)


class CountsTraffic(Protocol):
    """A connection that counts its own bytes (see Metrics.take_traffic)."""

    bytes_in: int
    bytes_out: int


class Metrics:
    """One process's metrics: the methods the protocols and the request cycle call.

    Owners keep the call sites to one line each; the cycle calls request_finished. Requests in flight
    are not counted per request: the server's set of app tasks already knows (see in_flight()).
    Compiled, it is a C class: the protocols declare their `metrics` with its type and call it in C.
    """

    __slots__ = ("page", "sequence", "values")

    def __init__(self, page: mmap.mmap | None = None) -> None:
        self.values: list[float] = [0] * SLOTS  # ints until a float is added: int + int is the cheaper add
        self.page = page  # shared with the master (a supervised worker), else None
        self.sequence = 0

    def in_flight(self, tasks: int) -> None:
        """Set the in-flight gauge from the server's running app tasks (before a publish or a render)."""
        self.values[IN_FLIGHT] = tasks

    def publish(self) -> None:
        """Copy the slots into the shared page (every tick, and on the way out)."""
        page = self.page
        if page is not None:
            self.sequence += 1
            _SEQUENCE.pack_into(page, 0, self.sequence)  # odd: being written
            _SLOTS.pack_into(page, _SEQUENCE.size, *self.values)
            self.sequence += 1
            _SEQUENCE.pack_into(page, 0, self.sequence)

    # ----- the request cycle -------------------------------------------------------------

    def request_finished(self, protocol: str, method: str, status: int, duration: float) -> None:
        """A request's app call returned (status 0: the client left before an answer); `protocol` is
        the scope's http_version ("1.1", "2"...) or "ws". Refused requests come with duration 0."""
        values = self.values
        by_method, other, histogram = _SLOTS_BY_PROTOCOL.get(protocol, _H1)
        slot = by_method.get(method, other)[status // 100 if status < 600 else 0]
        values[slot] += 1
        if duration > _FIRST_BOUND:  # the first bucket is not counted: render_values derives it
            # The first bound at or above the duration: a short walk from the second, a C loop over a C
            # array in the compiled core (a bisect_left call cost more than the rest of this method).
            bucket = 1
            while _BOUNDS[bucket] < duration:
                bucket += 1
            values[histogram + bucket] += 1
        values[histogram + _SUM] += duration

    def server_response(self, status: int) -> None:
        """The server answered by itself (400, 408, 413, 414, 431, 500, 503...): one line in every refusal path."""
        self.values[SERVER_RESPONSES + _STATUS_INDEX.get(status, len(SERVER_STATUSES))] += 1

    def app_exception(self) -> None:
        self.values[APP_EXCEPTIONS] += 1

    # ----- for the protocols (phase 2 wires these in) ------------------------------------

    def connection_opened(self) -> None:
        """A TCP connection was accepted (once, whichever protocols it is handed to)."""
        self.values[CONNECTIONS] += 1

    def connections_open(self, count: int) -> None:
        """Set the open-connections gauge from the server's connection set (every tick), as in_flight
        does from its tasks: no call on close, and a connection handed from protocol to protocol
        (detection, h2c, WebSocket) is one entry of that set throughout."""
        self.values[CONNECTIONS_OPEN] = count

    def h2_stream_opened(self) -> None:
        self.values[H2_STREAMS_OPEN] += 1

    def h2_stream_closed(self) -> None:
        self.values[H2_STREAMS_OPEN] -= 1

    def take_traffic(self, conn: CountsTraffic) -> None:
        """Add the bytes an HTTP/1.1 connection counted itself since the last call, and zero them.

        It is called every half second (the server's timeout walk over its connections), when the
        connection is handed on (an upgrade) and when it closes, so a scrape sees a live connection's
        bytes at most that half second plus a publish tick late. An add on the connection per read or
        write cost a third of calling bytes_received/bytes_sent there (valgrind, metrics_inprocess).
        """
        values = self.values
        values[BYTES_RECEIVED] += conn.bytes_in
        values[BYTES_SENT] += conn.bytes_out
        conn.bytes_in = conn.bytes_out = 0

    def bytes_received(self, count: int) -> None:
        self.values[BYTES_RECEIVED] += count

    def bytes_sent(self, count: int) -> None:
        self.values[BYTES_SENT] += count

    def websocket_opened(self) -> None:
        values = self.values
        values[WEBSOCKETS_OPEN] += 1
        values[WEBSOCKETS] += 1

    def websocket_closed(self, method: str, status: int, duration: float) -> None:
        """A WebSocket session ended: counted as a `ws` request with its handshake status."""
        self.values[WEBSOCKETS_OPEN] -= 1
        self.request_finished("ws", method, status, duration)

    def h2_goaway_sent(self, error_code: int) -> None:
        self.values[H2_GOAWAYS + min(error_code, len(H2_ERROR_CODES) - 1)] += 1

    def h2_reset_sent(self, error_code: int) -> None:
        self.values[H2_RESETS + min(error_code, len(H2_ERROR_CODES) - 1)] += 1

    def tls_handshake_failed(self) -> None:
        self.values[TLS_HANDSHAKE_FAILURES] += 1


def add_counters(total: list[float], values: Sequence[float], with_gauges: bool) -> None:
    """Add one worker's slots to `total`; without its gauges for a worker that exited (nothing of it is live)."""
    for index, value in enumerate(values):
        total[index] += value
    if not with_gauges:
        for index in GAUGES:
            total[index] -= values[index]


def rss_bytes(pid: int) -> int | None:
    """Resident memory of a process (Linux /proc), None where it cannot be read."""
    try:
        with open(f"/proc/{pid}/statm", encoding="ascii") as file:
            return int(file.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")
    except (OSError, ValueError, IndexError):
        return None


# ----- exposition (text format 0.0.4) --------------------------------------------------------

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"


def _number(value: float) -> str:
    return str(int(value)) if value == int(value) else repr(value)


class Exposition:
    """Builds the text of one scrape."""

    def __init__(self) -> None:
        self.lines: list[str] = []

    def family(self, name: str, kind: str, help_text: str) -> None:
        self.lines.append(f"# HELP {name} {help_text}")
        self.lines.append(f"# TYPE {name} {kind}")

    def sample(self, name: str, value: float, **labels: str) -> None:
        if labels:
            text = ",".join(f'{key}="{label}"' for key, label in labels.items())
            self.lines.append(f"{name}{{{text}}} {_number(value)}")
        else:
            self.lines.append(f"{name} {_number(value)}")

    def text(self) -> bytes:
        return ("\n".join(self.lines) + "\n").encode()


def render_values(out: Exposition, values: list[float]) -> None:
    """The request, connection and protocol families of a (summed) slot array."""
    out.family("celeris_requests_total", "counter", "Requests answered, by protocol, method and status class.")
    for p, protocol in enumerate(PROTOCOLS):
        for m, method in enumerate(METHODS):
            for s, status_class in enumerate(STATUS_CLASSES):
                value = values[REQUESTS + (p * len(METHODS) + m) * len(STATUS_CLASSES) + s]
                if value:
                    out.sample("celeris_requests_total", value, protocol=protocol, method=method, status=status_class)
    out.family("celeris_request_duration_seconds", "histogram", "Time from the request head to the app's return.")
    for p, protocol in enumerate(PROTOCOLS):
        base = DURATION + p * _HISTOGRAM_WIDTH
        requests = REQUESTS + p * len(METHODS) * _ROW
        # Every request is counted once by method and status and once by duration bucket, except in the
        # first bucket (the fast requests, most of them), which request_finished skips: it is the rest.
        counted = sum(values[base + 1 : base + _SUM])
        cumulative = sum(values[requests : requests + len(METHODS) * _ROW]) - counted
        out.sample("celeris_request_duration_seconds_bucket", cumulative, protocol=protocol, le=repr(_FIRST_BOUND))
        for b, bound in enumerate(DURATION_BUCKETS[1:], start=1):
            cumulative += values[base + b]
            out.sample("celeris_request_duration_seconds_bucket", cumulative, protocol=protocol, le=repr(bound))
        cumulative += values[base + len(DURATION_BUCKETS)]
        out.sample("celeris_request_duration_seconds_bucket", cumulative, protocol=protocol, le="+Inf")
        out.sample("celeris_request_duration_seconds_count", cumulative, protocol=protocol)
        out.sample("celeris_request_duration_seconds_sum", values[base + _HISTOGRAM_WIDTH - 1], protocol=protocol)
    for name, kind, index, help_text in (
        ("celeris_requests_in_flight", "gauge", IN_FLIGHT, "App calls running (requests, WebSocket sessions)."),
        ("celeris_connections_open", "gauge", CONNECTIONS_OPEN, "Open client connections."),
        ("celeris_connections_total", "counter", CONNECTIONS, "Client connections accepted."),
        ("celeris_http2_streams_open", "gauge", H2_STREAMS_OPEN, "Open HTTP/2 streams."),
        ("celeris_received_bytes_total", "counter", BYTES_RECEIVED, "Bytes read from clients."),
        ("celeris_sent_bytes_total", "counter", BYTES_SENT, "Bytes written to clients."),
        ("celeris_websocket_sessions_open", "gauge", WEBSOCKETS_OPEN, "Open WebSocket sessions."),
        ("celeris_websocket_sessions_total", "counter", WEBSOCKETS, "WebSocket sessions accepted."),
        ("celeris_app_exceptions_total", "counter", APP_EXCEPTIONS, "Exceptions raised by the app."),
        ("celeris_tls_handshake_failures_total", "counter", TLS_HANDSHAKE_FAILURES, "TLS handshakes that failed."),
    ):
        out.family(name, kind, help_text)
        out.sample(name, values[index])
    out.family("celeris_server_responses_total", "counter", "Answers the server made itself, by status.")
    for i, status in enumerate((*map(str, SERVER_STATUSES), "other")):
        out.sample("celeris_server_responses_total", values[SERVER_RESPONSES + i], status=status)
    for name, base, help_text in (
        ("celeris_http2_goaways_sent_total", H2_GOAWAYS, "HTTP/2 GOAWAY frames sent, by error code."),
        ("celeris_http2_resets_sent_total", H2_RESETS, "HTTP/2 RST_STREAM frames sent, by error code."),
    ):
        out.family(name, "counter", help_text)
        for i, code in enumerate(H2_ERROR_CODES):
            if values[base + i]:
                out.sample(name, values[base + i], error_code=code)


def render_process(out: Exposition, rss: dict[int, int]) -> None:
    out.family("celeris_worker_rss_bytes", "gauge", "Resident memory of each serving process.")
    for pid, size in sorted(rss.items()):
        out.sample("celeris_worker_rss_bytes", size, pid=str(pid))


def render_single(metrics: Metrics, in_flight: int) -> bytes:
    """The scrape of a server without a master (--workers 1): its own slots and RSS."""
    metrics.in_flight(in_flight)
    out = Exposition()
    render_values(out, list(metrics.values))
    render_process(out, {os.getpid(): rss_bytes(os.getpid()) or 0})
    return out.text()


# ----- the listener's HTTP (one GET, one answer, close) --------------------------------------

MAX_REQUEST_HEAD = 8192


def scrape_response(head: bytes, render: Callable[[], bytes]) -> bytes:
    """The HTTP/1.1 answer to one request head: the metrics for GET /metrics, else 404/405."""
    line = head.split(b"\r\n", 1)[0].split(b" ")
    if len(line) != 3:
        return _answer(b"400 Bad Request", b"text/plain", b"Bad Request\n")
    method, target = line[0], line[1].split(b"?", 1)[0]
    if target not in (b"/metrics", b"/"):
        return _answer(b"404 Not Found", b"text/plain", b"Not Found: scrape /metrics\n")
    if method not in (b"GET", b"HEAD"):
        return _answer(b"405 Method Not Allowed", b"text/plain", b"Method Not Allowed\n")
    body = render()
    return _answer(b"200 OK", CONTENT_TYPE.encode(), b"" if method == b"HEAD" else body, len(body))


def _answer(status: bytes, content_type: bytes, body: bytes, length: int | None = None) -> bytes:
    size = len(body) if length is None else length
    return b"HTTP/1.1 %s\r\ncontent-type: %s\r\ncontent-length: %d\r\nconnection: close\r\n\r\n%s" % (
        status,
        content_type,
        size,
        body,
    )


def parse_address(raw: str) -> tuple[str, int]:
    """`HOST:PORT` (or `[v6]:PORT`, or `:PORT` for all interfaces) for --metrics-address; ValueError if not."""
    host, sep, port = raw.rpartition(":")
    if not sep or not port.isdigit() or not 0 <= int(port) <= 65535:
        raise ValueError(f"--metrics-address must be HOST:PORT; got {raw!r}.")
    host = host.strip("[]") or "0.0.0.0"
    return host, int(port)


def snapshot(page: mmap.mmap) -> tuple[float, ...]:
    """A consistent copy of a worker's published slots (it may be publishing right now)."""
    for _ in range(1000):
        (before,) = _SEQUENCE.unpack_from(page)
        values = _SLOTS.unpack_from(page, _SEQUENCE.size)
        (after,) = _SEQUENCE.unpack_from(page)
        if before == after and not before % 2:
            break
    return values  # a worker that died mid-copy: each slot is its old or its new value


class MasterMetrics:
    """The prefork master's side: one shared page per worker, the retired workers' counters, and
    the worker lifecycle counters only the master sees."""

    def __init__(self) -> None:
        self.retired = [0.0] * SLOTS
        self.buffers: dict[int, mmap.mmap] = {}
        self.starts = 0
        self.restarts = dict.fromkeys(WORKER_EVENTS, 0)

    def worker_started(self, buffer: mmap.mmap, pid: int) -> None:
        self.starts += 1
        self.buffers[pid] = buffer

    def worker_exited(self, pid: int) -> None:
        """Keep what the worker counted; its gauges go (nothing of it is in flight any more)."""
        buffer = self.buffers.pop(pid, None)
        if buffer is not None:
            add_counters(self.retired, snapshot(buffer), with_gauges=False)
            buffer.close()

    def restarted(self, reason: str) -> None:
        self.restarts[reason] += 1

    def render(self) -> bytes:
        total = list(self.retired)
        for buffer in self.buffers.values():
            add_counters(total, snapshot(buffer), with_gauges=True)
        out = Exposition()
        render_values(out, total)
        out.family("celeris_workers", "gauge", "Worker processes alive.")
        out.sample("celeris_workers", len(self.buffers))
        out.family("celeris_worker_starts_total", "counter", "Worker processes started.")
        out.sample("celeris_worker_starts_total", self.starts)
        out.family("celeris_worker_restarts_total", "counter", "Workers replaced, by reason.")
        for reason, count in self.restarts.items():
            out.sample("celeris_worker_restarts_total", count, reason=reason)
        render_process(out, {pid: size for pid in self.buffers if (size := rss_bytes(pid)) is not None})
        return out.text()


class SelectScrapeServer:
    """The metrics listener inside the master's select() loop: non-blocking, a few connections at once."""

    MAX_CONNECTIONS = 16

    def __init__(self, address: tuple[str, int], render: Callable[[], bytes]) -> None:
        family = socket.AF_INET6 if ":" in address[0] else socket.AF_INET
        self.listener = socket.socket(family, socket.SOCK_STREAM)
        self.listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.listener.bind(address)
        self.listener.listen(16)
        self.listener.setblocking(False)
        self.render = render
        self.pending: dict[socket.socket, bytes] = {}

    @property
    def address(self) -> tuple[str, int]:
        return self.listener.getsockname()[:2]  # type: ignore[no-any-return]

    def register(self, selector: selectors.BaseSelector) -> None:
        selector.register(self.listener, selectors.EVENT_READ, self)

    def ready(self, selector: selectors.BaseSelector, sock: socket.socket) -> None:
        """The listener or a scrape connection is readable."""
        if sock is self.listener:
            with contextlib.suppress(BlockingIOError, OSError):
                conn, _ = self.listener.accept()
                if len(self.pending) >= self.MAX_CONNECTIONS:
                    self.drop(selector, next(iter(self.pending)))
                conn.setblocking(False)
                self.pending[conn] = b""
                selector.register(conn, selectors.EVENT_READ, self)
            return
        try:
            data = sock.recv(4096)
        except BlockingIOError:
            return
        except OSError:
            data = b""
        head = self.pending.get(sock, b"") + data
        if data and b"\r\n\r\n" not in head and len(head) < MAX_REQUEST_HEAD:
            self.pending[sock] = head
            return
        if data:
            with contextlib.suppress(OSError):
                sock.settimeout(1.0)  # a few KiB into an idle local socket buffer: no real wait
                sock.sendall(scrape_response(head, self.render))
        self.drop(selector, sock)

    def drop(self, selector: selectors.BaseSelector, sock: socket.socket) -> None:
        self.pending.pop(sock, None)
        with contextlib.suppress(KeyError, ValueError):
            selector.unregister(sock)
        sock.close()

    def close(self, selector: selectors.BaseSelector | None) -> None:
        for sock in list(self.pending):
            if selector is not None:
                self.drop(selector, sock)
            else:
                sock.close()
        self.listener.close()


async def serve_scrapes(address: tuple[str, int], render: Callable[[], bytes]) -> asyncio.base_events.Server:
    """The metrics listener of a server without a master (--workers 1, gunicorn), on its own loop."""

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 5.0)
            writer.write(scrape_response(head, render))
            await asyncio.wait_for(writer.drain(), 5.0)
        except (TimeoutError, asyncio.IncompleteReadError, asyncio.LimitOverrunError, OSError):
            pass
        finally:
            writer.close()

    return await asyncio.start_server(handle, *address, limit=MAX_REQUEST_HEAD)
