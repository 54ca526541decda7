"""Embedding: `celeris_asgi.run(app)` from a script, and `await Server(config).serve()` in a running loop."""

from __future__ import annotations

import asyncio
import re
import subprocess
import sys
import time
from typing import Any

import httpx
import pytest

import celeris_asgi
from celeris_asgi import Config, Server
from tests.conftest import ROOT, stop_process

pytestmark = pytest.mark.timeout(20)


def start_script(code: str) -> tuple[subprocess.Popen[bytes], int]:
    """Run `code` in a child Python; return it and the port from its "running on" log line."""
    proc = subprocess.Popen(
        [sys.executable, "-c", code],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    assert proc.stdout is not None
    seen = b""
    while True:
        line = proc.stdout.readline()
        if not line:
            stop_process(proc)
            raise AssertionError(f"script did not start: {seen.decode(errors='replace')}")
        seen += line
        match = re.search(rb"running on http://127\.0\.0\.1:(\d+)", line)
        if match:
            return proc, int(match.group(1))


@pytest.mark.parametrize(
    "code",
    [
        "import celeris_asgi\nfrom tests.cli_apps import app\nceleris_asgi.run(app, port=0)\n",
        "import celeris_asgi\nceleris_asgi.run('tests.cli_apps:app', port=0, server_header=False)\n",
    ],
    ids=["app_object", "import_string"],
)
def test_run_serves_until_sigterm(code):
    proc, port = start_script(code)
    try:
        response = httpx.get(f"http://127.0.0.1:{port}/")
        assert response.text == "ok"
    finally:
        assert stop_process(proc) == 0


def test_run_with_a_bad_setting_exits_non_zero_with_one_line():
    result = subprocess.run(
        [
            sys.executable,
            "-c",
            "import celeris_asgi\nceleris_asgi.run('tests.cli_apps:app', loop='tornado')\n",
        ],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=20,
    )
    assert result.returncode != 0
    assert result.stderr.strip().splitlines() == [
        "celeris: error: --loop must be one of auto, asyncio, uvloop, none; got 'tornado'."
    ]


def test_public_api():
    assert set(celeris_asgi.__all__) == {"Config", "Server", "__version__", "run"}
    assert re.fullmatch(r"\d+\.\d+\.\d+\S*", celeris_asgi.__version__)


def test_serve_inside_an_existing_event_loop_until_should_exit():
    events: list[str] = []

    async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] == "lifespan":
            while True:
                message = await receive()
                events.append(message["type"])
                await send({"type": message["type"] + ".complete"})
                if message["type"] == "lifespan.shutdown":
                    return
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": b"embedded"})

    async def main() -> tuple[str, float]:
        config = Config(app, port=0, log_level="warning")
        server = Server(config)
        task = asyncio.create_task(server.serve())
        while not server.started:
            assert not task.done(), task
            await asyncio.sleep(0.01)
        port = server.servers[0].sockets[0].getsockname()[1]
        async with httpx.AsyncClient() as client:
            text = (await client.get(f"http://127.0.0.1:{port}/")).text
        server.should_exit = True
        started = time.monotonic()
        await asyncio.wait_for(task, 5)
        return text, time.monotonic() - started

    text, stop_time = asyncio.run(main())
    assert text == "embedded"
    assert stop_time < 2
    assert events == ["lifespan.startup", "lifespan.shutdown"]
