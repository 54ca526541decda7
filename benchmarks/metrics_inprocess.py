"""What metrics cost per request without the noise of sockets: HTTP/1.1 through the real protocol objects.

    taskset -c 1 python -m benchmarks.metrics_inprocess [--app raw|starlette] [--batches 40] [--requests 3000]
    python -m benchmarks.metrics_inprocess --profile /tmp/on.prof      # cProfile of the metrics-on batches
    python -m benchmarks.metrics_inprocess --measure instructions      # valgrind instruction counts, off and on

Two servers (metrics off, metrics on) each get one connection over a fake transport that counts the
bytes written, through the same ProtocolDetector a real connection starts with; alternating batches
of keep-alive requests to the app. Prints the process CPU time per request, best and median of the
batches, for each.

--measure instructions runs one child per (off/on, N and 2N requests) under valgrind (cachegrind, no
cache simulation) and prints thousands of instructions per request from the difference of the two
lengths, as benchmarks.inprocess does: start-up and imports cancel out, and the figure repeats to
within 0.1 % where CPU time on a shared box moves by several percent.
"""

from __future__ import annotations

import argparse
import asyncio
import cProfile
import os
import pstats
import re
import shutil
import statistics
import subprocess
import sys
import time
from typing import Any

from benchmarks.servers import APPS, ROOT
from celeris_asgi.config import Config
from celeris_asgi.metrics import Metrics, new_shared_buffer
from celeris_asgi.protocols.detect import ProtocolDetector
from celeris_asgi.server import Server, new_event_loop

REQUEST = b"GET / HTTP/1.1\r\nHost: x\r\nUser-Agent: wrk\r\n\r\n"
VALGRIND = ["valgrind", "--tool=cachegrind", "--cache-sim=no", "--cachegrind-out-file=/dev/null"]
_REFS = re.compile(r"I\s+refs:\s+([\d,]+)")


class CountingTransport:
    """Enough of an asyncio transport for the HTTP/1.1 protocol: writes are counted, not sent."""

    def __init__(self) -> None:
        self.written = 0
        self.metrics: Metrics | None = None  # published after each batch: a batch is about one server tick
        self.protocol: Any = None
        self.closing = False

    def get_extra_info(self, name: str, default: Any = None) -> Any:
        return {"peername": ("127.0.0.1", 5000), "sockname": ("127.0.0.1", 8000)}.get(name, default)

    def write(self, data: bytes) -> None:
        self.written += len(data)

    def writelines(self, chunks: list[bytes]) -> None:
        self.written += sum(map(len, chunks))

    def is_closing(self) -> bool:
        return self.closing

    def close(self) -> None:
        self.closing = True

    abort = close

    def pause_reading(self) -> None:
        pass

    def resume_reading(self) -> None:
        pass

    def set_protocol(self, protocol: Any) -> None:
        self.protocol = protocol

    def get_protocol(self) -> Any:
        return self.protocol

    def get_write_buffer_size(self) -> int:
        return 0


def connection(app: str, metrics: bool, loop: asyncio.AbstractEventLoop) -> CountingTransport:
    address = "127.0.0.1:0" if metrics else None
    config = Config(APPS[app], access_log=False, log_level="warning", lifespan="off", metrics_address=address)
    config.load()
    assert config.settings is not None
    server = Server(config)
    transport = CountingTransport()
    if config.metrics is not None:
        config.metrics.page = new_shared_buffer()  # as in a supervised worker, which publishes every tick
        transport.metrics = config.metrics
    transport.protocol = ProtocolDetector(config.settings, server.state, loop)
    transport.protocol.connection_made(transport)
    return transport


async def batch(transport: CountingTransport, requests: int, profiler: cProfile.Profile | None = None) -> float:
    """Process CPU microseconds per request over `requests` keep-alive requests."""
    if profiler is not None:
        profiler.enable()
    start = time.process_time()
    for _ in range(requests):
        transport.protocol.data_received(REQUEST)
        await asyncio.sleep(0)  # the app task
        await asyncio.sleep(0)  # the batched write at the end of the loop pass
    if transport.metrics is not None:
        transport.metrics.publish()
    elapsed = time.process_time() - start
    if profiler is not None:
        profiler.disable()
    return elapsed / requests * 1e6


async def compare(opts: argparse.Namespace) -> None:
    """Alternating off/on batches; prints best and median CPU per request (and the profile of the on side)."""
    loop = asyncio.get_running_loop()
    transports = {False: connection(opts.app, False, loop), True: connection(opts.app, True, loop)}
    profiler = cProfile.Profile() if opts.profile else None
    for transport in transports.values():
        await batch(transport, opts.requests)  # warm-up: imports, caches, specialised bytecode
    results: dict[bool, list[float]] = {False: [], True: []}
    for _ in range(opts.batches):
        for metrics, transport in transports.items():
            results[metrics].append(await batch(transport, opts.requests, profiler if metrics else None))
    assert transports[False].written == transports[True].written
    for name, pick in (("best", min), ("median", statistics.median)):
        off, on = pick(results[False]), pick(results[True])
        print(f"{name:6s} CPU per request: metrics off {off:.2f} us, on {on:.2f} us ({on / off - 1:+.1%})")
    if profiler is not None:
        stats = pstats.Stats(profiler)
        stats.dump_stats(opts.profile)
        stats.sort_stats("tottime").print_stats(25)


async def one_side(opts: argparse.Namespace) -> None:
    """--only off|on: a warm-up batch and one timed batch of one side (a child under valgrind)."""
    transport = connection(opts.app, opts.only == "on", asyncio.get_running_loop())
    await batch(transport, 500)
    await batch(transport, opts.requests)


def count_instructions(opts: argparse.Namespace) -> None:
    if shutil.which("valgrind") is None:
        raise SystemExit("--measure instructions needs valgrind (apt-get install valgrind)")
    per_request = {}
    for side in ("off", "on"):
        refs = []
        for requests in (opts.requests, 2 * opts.requests):
            argv = [*VALGRIND, sys.executable, "-m", "benchmarks.metrics_inprocess", "--app", opts.app]
            argv += ["--only", side, "--requests", str(requests)]
            env = {**os.environ, "PYTHONHASHSEED": "0"}
            done = subprocess.run(argv, cwd=ROOT, env=env, capture_output=True, text=True, check=False)
            found = _REFS.search(done.stderr)
            if done.returncode != 0 or found is None:
                raise SystemExit(f"valgrind run failed: {done.stderr.strip()[-500:]}")
            refs.append(int(found.group(1).replace(",", "")))
        per_request[side] = (refs[1] - refs[0]) / opts.requests / 1000
    off, on = per_request["off"], per_request["on"]
    print(f"{opts.app}: k instructions per request: metrics off {off:.2f}, on {on:.2f} ({on / off - 1:+.1%})")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--app", choices=("raw", "starlette"), default="raw")
    parser.add_argument("--batches", type=int, default=40, help="alternating batches per side (default 40)")
    parser.add_argument("--requests", type=int, help="requests per batch (default 3000; 2000 for instructions)")
    parser.add_argument("--measure", choices=("cpu", "instructions"), default="cpu")
    parser.add_argument("--profile", metavar="PATH", help="cProfile the metrics-on batches into PATH, print the top")
    parser.add_argument("--only", choices=("off", "on"), help=argparse.SUPPRESS)  # the valgrind child
    opts = parser.parse_args()
    if opts.requests is None:
        opts.requests = 2000 if opts.measure == "instructions" else 3000
    if opts.measure == "instructions":
        count_instructions(opts)
        return
    factory = new_event_loop("auto")
    assert factory is not None
    with asyncio.Runner(loop_factory=factory) as runner:
        runner.run(one_side(opts) if opts.only else compare(opts))


if __name__ == "__main__":
    main()
