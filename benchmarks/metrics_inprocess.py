"""What metrics cost per request without the noise of sockets: HTTP/1.1 through the real protocol objects.

    taskset -c 0 python -m benchmarks.metrics_inprocess

Two servers (metrics off, metrics on) each get one connection over a fake transport that counts the
bytes written; 40 alternating batches of 3000 keep-alive requests to the raw app. Prints the process
CPU time per request, best and median of the batches, for each.
"""

from __future__ import annotations

import asyncio
import statistics
import time
from typing import Any

from benchmarks.apps.raw import app
from celeris_asgi.config import Config
from celeris_asgi.protocols.detect import ProtocolDetector
from celeris_asgi.server import Server, new_event_loop

REQUEST = b"GET / HTTP/1.1\r\nHost: x\r\nUser-Agent: wrk\r\n\r\n"


class CountingTransport:
    """Enough of an asyncio transport for the HTTP/1.1 protocol: writes are counted, not sent."""

    def __init__(self) -> None:
        self.written = 0
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


def connection(metrics: bool, loop: asyncio.AbstractEventLoop) -> CountingTransport:
    extra = {"metrics_address": "127.0.0.1:0"} if metrics else {}
    config = Config(app, access_log=False, log_level="warning", lifespan="off", **extra)
    config.load()
    server = Server(config)
    transport = CountingTransport()
    transport.protocol = ProtocolDetector(config, server.state, loop)
    transport.protocol.connection_made(transport)
    return transport


async def batch(transport: CountingTransport, requests: int) -> float:
    """Process CPU microseconds per request over `requests` keep-alive requests."""
    start = time.process_time()
    for _ in range(requests):
        transport.protocol.data_received(REQUEST)
        await asyncio.sleep(0)  # the app task
        await asyncio.sleep(0)  # the batched write at the end of the loop pass
    return (time.process_time() - start) / requests * 1e6


async def main() -> None:
    loop = asyncio.get_running_loop()
    transports = {False: connection(False, loop), True: connection(True, loop)}
    results: dict[bool, list[float]] = {False: [], True: []}
    for _ in range(40):
        for metrics, transport in transports.items():
            results[metrics].append(await batch(transport, 3000))
    assert transports[False].written == transports[True].written
    for name, pick in (("best", min), ("median", statistics.median)):
        off, on = pick(results[False]), pick(results[True])
        print(f"{name:6s} CPU per request: metrics off {off:.2f} us, on {on:.2f} us ({on / off - 1:+.1%})")


if __name__ == "__main__":
    factory = new_event_loop("auto")
    assert factory is not None
    with asyncio.Runner(loop_factory=factory) as runner:
        runner.run(main())
