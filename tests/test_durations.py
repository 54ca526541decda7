"""Request durations are measured with a fine clock: the access log's %(D)s (microseconds) and the
metrics duration histogram must not be whole milliseconds, as uvloop's loop.time() (1 ms ticks) made them.

Fast requests on a fine clock take an arbitrary number of microseconds; on a millisecond clock every
duration is k * 1000 µs (give or take 1 µs of float rounding), mostly 0. Each check looks at many
requests, so one that happens to land on a whole millisecond cannot fail it."""

from __future__ import annotations

from typing import Any

import httpx
import pytest

from tests.apps import hello
from tests.conftest import access_lines, metered, wait_for
from tests.test_metrics import sample, scrape
from tests.test_websocket import connect

pytestmark = pytest.mark.timeout(30)

REQUESTS = 20


def on_a_millisecond(microseconds: int) -> bool:
    """Whether a duration in µs is a whole number of milliseconds (within float rounding)."""
    return microseconds % 1000 in (999, 0, 1)


def assert_fine_grained(durations_us: list[int]) -> None:
    assert len(durations_us) == REQUESTS
    coarse = [d for d in durations_us if on_a_millisecond(d)]
    # A fine clock puts about 0.3% of durations on a millisecond by chance; a 1 ms clock puts all there.
    assert len(coarse) < REQUESTS // 2, f"durations in whole milliseconds: {durations_us}"


async def accept(scope: dict[str, Any], receive: Any, send: Any) -> None:
    """Accepts a WebSocket, then waits for the client to leave."""
    if scope["type"] != "websocket":
        return
    await receive()
    await send({"type": "websocket.accept"})
    while (await receive())["type"] != "websocket.disconnect":
        pass


@pytest.mark.parametrize("protocol", ["http1", "http2"])
def test_access_log_microseconds_come_from_a_fine_clock(serve, access_log, protocol):
    server = serve(hello, access_log_format="%(D)s")
    with httpx.Client(base_url=server.url, http1=protocol == "http1", http2=protocol == "http2") as client:
        for _ in range(REQUESTS):
            assert client.get("/").status_code == 200
    wait_for(lambda: len(access_lines(access_log)) == REQUESTS)
    assert_fine_grained([int(line) for line in access_lines(access_log)])


def test_websocket_access_log_microseconds_come_from_a_fine_clock(serve, access_log):
    server = serve(accept, access_log_format="%(s)s %(D)s")
    for _ in range(REQUESTS):
        with connect(server):
            pass
    wait_for(lambda: len(access_lines(access_log)) == REQUESTS)
    statuses, durations = zip(*(line.split() for line in access_lines(access_log)), strict=True)
    assert set(statuses) == {"101"}
    assert_fine_grained([int(d) for d in durations])


@pytest.mark.parametrize("protocol", ["http1", "http2"])
def test_metrics_durations_come_from_a_fine_clock(serve, protocol):
    """The histogram's _sum grows by each request's duration: read it after every request."""
    server, metrics = metered(serve, hello, access_log=False)  # the metrics alone time the request
    label = {"http1": "h1", "http2": "h2"}[protocol]
    durations = []
    total = 0.0
    with httpx.Client(base_url=server.url, http1=protocol == "http1", http2=protocol == "http2") as client:
        for count in range(1, REQUESTS + 1):
            assert client.get("/").status_code == 200
            wait_for(lambda: sample(scrape(metrics), "celeris_request_duration_seconds_count", protocol=label) == count)  # noqa: B023
            now = sample(scrape(metrics), "celeris_request_duration_seconds_sum", protocol=label)
            durations.append(round((now - total) * 1_000_000))
            total = now
    assert_fine_grained(durations)
