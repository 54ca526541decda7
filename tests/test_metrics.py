"""Prometheus metrics (--metrics-address): real servers, real scrapes over sockets.

The prefork master sums what its workers count, keeps a dead worker's counters, and counts worker
restarts by reason; a single server serves its own scrape.
"""

from __future__ import annotations

import os
import re
import signal
import socket
from pathlib import Path

import httpx
import pytest

from celeris_asgi.metrics import Metrics, render_single, scrape_response
from tests.conftest import metered
from tests.test_supervisor import PID_APP, Load, fetch, supervisor, wait_until, worker_pids


@pytest.fixture
def app_dir(tmp_path: Path) -> Path:
    (tmp_path / "pidapp.py").write_text(PID_APP)
    return tmp_path


def scrape(port: int) -> str:
    """GET /metrics; the body as text (Content-Type checked: Prometheus text format 0.0.4)."""
    with socket.create_connection(("127.0.0.1", port), timeout=5) as sock:
        sock.sendall(b"GET /metrics HTTP/1.1\r\nHost: metrics\r\n\r\n")
        data = b""
        while chunk := sock.recv(65536):
            data += chunk
    head, _, body = data.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 200 "), head
    assert b"content-type: text/plain; version=0.0.4; charset=utf-8" in head
    return body.decode()


def sample(text: str, name: str, **labels: str) -> float:
    """The value of one sample; 0 when absent (label sets with no events are not listed)."""
    wanted = ",".join(f'{key}="{value}"' for key, value in labels.items())
    shown = f"{name}{{{wanted}}}" if labels else name
    for line in text.splitlines():
        if line.startswith(shown + " "):
            return float(line.rsplit(" ", 1)[1])
    return 0.0


def requests_2xx(text: str) -> float:
    return sample(text, "celeris_requests_total", protocol="h1", method="GET", status="2xx")


def metrics_port(tail: object) -> int:
    return int(tail.wait_for(r"Metrics on http://127\.0\.0\.1:(\d+)/metrics")[0][1])  # type: ignore[attr-defined]


@pytest.mark.timeout(40)
def test_a_scrape_during_load_from_two_workers_sums_both_and_a_killed_worker_keeps_its_counts(app_dir: Path) -> None:
    with supervisor(app_dir, "--workers", "2", "--metrics-address", "127.0.0.1:0") as (process, tail):
        port = metrics_port(tail)
        tail.wait_for(r"is serving", count=2)
        load = Load(process.port)
        try:
            load.wait_requests(200)
            # Workers publish every tick (0.1 s): scrapes during the load trail the clients a little
            # and never lead them by more than the 4 requests in flight.
            wait_until(lambda: requests_2xx(scrape(port)) >= 200, message="a scrape to show the load")
            text = scrape(port)
            answered = load.total()
            assert requests_2xx(text) <= answered + 4
            assert len(load.pids) == 2, load.pids  # both workers answered some of the load
            assert sample(text, "celeris_workers") == 2
            assert sample(text, "celeris_worker_starts_total") == 2
            for pid in worker_pids(tail):
                assert sample(text, "celeris_worker_rss_bytes", pid=pid) > 1_000_000
        finally:
            load.stop()
        # Quiet now: once published, the sum over both workers is exactly what the clients got.
        wait_until(lambda: requests_2xx(scrape(port)) == load.total(), message="the scrape to catch up")
        before = load.total()
        victim = sorted(worker_pids(tail))[0]
        os.kill(int(victim), signal.SIGKILL)
        tail.wait_for(rf"Worker \[{victim}\] died")
        tail.wait_for(r"is serving", count=3)
        after = scrape(port)
        assert requests_2xx(after) == before  # the dead worker's counts survive its restart
        assert sample(after, "celeris_worker_restarts_total", reason="crash") == 1
        assert sample(after, "celeris_worker_starts_total") == 3
        assert sample(after, "celeris_requests_in_flight") == 0
        assert fetch(process.port)[0] == 200
        wait_until(lambda: requests_2xx(scrape(port)) == before + 1, message="the new worker's request")


@pytest.mark.timeout(40)
def test_sighup_and_max_requests_restarts_are_counted_by_reason(app_dir: Path) -> None:
    args = ("--workers", "2", "--limit-max-requests", "10", "--metrics-address", "127.0.0.1:0")
    with supervisor(app_dir, *args) as (process, tail):
        port = metrics_port(tail)
        tail.wait_for(r"is serving", count=2)
        for _ in range(30):
            fetch(process.port)
        tail.wait_for(r"reached --limit-max-requests; replacing it")
        wait_until(lambda: sample(scrape(port), "celeris_worker_restarts_total", reason="max-requests") >= 1)
        process.proc.send_signal(signal.SIGHUP)
        wait_until(lambda: sample(scrape(port), "celeris_worker_restarts_total", reason="sighup") >= 1)
        wait_until(lambda: requests_2xx(scrape(port)) == 30, message="all 30 requests")
        assert sample(scrape(port), "celeris_worker_restarts_total", reason="crash") == 0


async def failing_app(scope: dict, receive: object, send: object) -> None:
    if scope["type"] != "http":
        return
    if scope["path"] == "/boom":
        raise RuntimeError("boom")
    await send({"type": "http.response.start", "status": 404 if scope["path"] == "/missing" else 200})  # type: ignore[operator]
    await send({"type": "http.response.body", "body": b"ok"})  # type: ignore[operator]


@pytest.mark.timeout(20)
def test_one_server_serves_its_own_scrape_with_status_classes_and_app_exceptions(serve: object) -> None:
    server, metrics = metered(serve, failing_app)  # type: ignore[arg-type]
    with httpx.Client(base_url=server.url, http1=False, http2=True) as client:  # prior knowledge
        assert client.get("/").status_code == 200
        assert client.get("/missing").status_code == 404
        assert client.post("/boom").status_code == 500
    with httpx.Client(base_url=server.url) as client:
        assert client.request("PURGE", "/").status_code == 200
    text = scrape(metrics)
    assert sample(text, "celeris_requests_total", protocol="h2", method="GET", status="2xx") == 1
    assert sample(text, "celeris_requests_total", protocol="h2", method="GET", status="4xx") == 1
    assert sample(text, "celeris_requests_total", protocol="h2", method="POST", status="5xx") == 1
    assert sample(text, "celeris_requests_total", protocol="h1", method="other", status="2xx") == 1
    assert sample(text, "celeris_app_exceptions_total") == 1
    assert sample(text, "celeris_server_responses_total", status="500") == 1
    assert sample(text, "celeris_request_duration_seconds_count", protocol="h2") == 3
    assert sample(text, "celeris_request_duration_seconds_bucket", protocol="h2", le="+Inf") == 3
    assert sample(text, "celeris_worker_rss_bytes", pid=str(os.getpid())) > 0


@pytest.mark.timeout(20)
def test_limit_concurrency_503_is_a_server_response(serve: object) -> None:
    import threading

    release = threading.Event()
    entered = threading.Event()

    async def slow(scope: dict, receive: object, send: object) -> None:
        if scope["type"] != "http":
            return
        if scope["path"] == "/hold":
            entered.set()
            import asyncio

            while not release.is_set():
                await asyncio.sleep(0.01)
        await send({"type": "http.response.start", "status": 200})  # type: ignore[operator]
        await send({"type": "http.response.body", "body": b""})  # type: ignore[operator]

    server, metrics = metered(serve, slow, limit_concurrency=1)  # type: ignore[arg-type]
    holder = threading.Thread(target=lambda: httpx.get(server.url + "/hold", timeout=10))
    holder.start()
    try:
        assert entered.wait(5)
        assert httpx.get(server.url + "/").status_code == 503
        text = scrape(metrics)
        assert sample(text, "celeris_requests_in_flight") == 1
    finally:
        release.set()
        holder.join(10)
    text = scrape(metrics)
    assert sample(text, "celeris_server_responses_total", status="503") == 1
    assert sample(text, "celeris_requests_total", protocol="h1", method="GET", status="5xx") == 1
    assert sample(text, "celeris_requests_in_flight") == 0


def test_the_exposition_is_valid_text_format() -> None:
    metrics = Metrics()
    metrics.request_finished("1.1", "GET", 200, 0.003)
    metrics.h2_goaway_sent(1)
    metrics.h2_reset_sent(99)  # an unknown code is "other"
    text = render_single(metrics, 1).decode()
    line = re.compile(r'^[a-z_0-9]+(\{[a-z_]+="[^"]*"(,[a-z_]+="[^"]*")*\})? -?[0-9.e+]+$')
    for row in text.splitlines():
        assert row.startswith("# HELP ") or row.startswith("# TYPE ") or line.match(row), row
    assert 'celeris_request_duration_seconds_bucket{protocol="h1",le="0.0025"} 0' in text
    assert 'celeris_request_duration_seconds_bucket{protocol="h1",le="0.005"} 1' in text
    assert 'celeris_http2_goaways_sent_total{error_code="PROTOCOL_ERROR"} 1' in text
    assert 'celeris_http2_resets_sent_total{error_code="other"} 1' in text


@pytest.mark.parametrize(
    ("head", "status"),
    [
        (b"GET /metrics HTTP/1.1\r\n\r\n", b"200"),
        (b"GET /x HTTP/1.1\r\n\r\n", b"404"),
        (b"POST / HTTP/1.1\r\n\r\n", b"405"),
        (b"nonsense\r\n\r\n", b"400"),
    ],
)
def test_scrape_answers(head: bytes, status: bytes) -> None:
    assert scrape_response(head, lambda: b"m 1\n").startswith(b"HTTP/1.1 " + status)


@pytest.mark.parametrize("bad", ["9100", "host:", "host:99999", "h:p"])
def test_a_bad_metrics_address_is_one_line_and_exit_2(bad: str) -> None:
    import subprocess
    import sys

    result = subprocess.run(
        [sys.executable, "-m", "celeris_asgi", "tests.apps:app", "--metrics-address", bad],
        capture_output=True,
        timeout=20,
    )
    assert result.returncode == 2
    assert result.stderr.decode().strip().count("\n") == 0
    assert "--metrics-address must be HOST:PORT" in result.stderr.decode()


def test_the_first_bucket_holds_the_fast_requests() -> None:
    """request_finished skips the first bucket's add (most requests land there); rendering derives it."""
    metrics = Metrics()
    for duration in (0.0, 0.0002, 0.0005):
        metrics.request_finished("1.1", "GET", 200, duration)
    metrics.request_finished("1.1", "POST", 0, 0.0)  # the client left: still a request with a duration
    metrics.request_finished("1.1", "GET", 500, 0.0007)
    metrics.request_finished("2", "GET", 200, 0.0001)
    text = render_single(metrics, 0).decode()
    assert 'celeris_request_duration_seconds_bucket{protocol="h1",le="0.0005"} 4' in text
    assert 'celeris_request_duration_seconds_bucket{protocol="h1",le="0.001"} 5' in text
    assert 'celeris_request_duration_seconds_count{protocol="h1"} 5' in text
    assert 'celeris_request_duration_seconds_bucket{protocol="h2",le="0.0005"} 1' in text
    assert 'celeris_request_duration_seconds_bucket{protocol="ws",le="0.0005"} 0' in text
