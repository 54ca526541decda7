"""ASGI lifespan: auto/on/off, state shared with requests, startup failure, shutdown."""

from __future__ import annotations

import os
import subprocess
import sys
from typing import Any

import httpx
import pytest

from celeris_asgi.lifespan import LifespanFailed
from tests.conftest import ROOT, running_server

pytestmark = pytest.mark.timeout(20)


class LifespanApp:
    """Supports lifespan; records every event; puts a shared object into the lifespan state."""

    def __init__(self, fail_startup: str | None = None, fail_shutdown: str | None = None) -> None:
        self.events: list[str] = []
        self.request_states: list[dict[str, Any]] = []
        self.fail_startup = fail_startup
        self.fail_shutdown = fail_shutdown
        self.shared: list[str] = []

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] == "lifespan":
            while True:
                message = await receive()
                self.events.append(message["type"])
                if message["type"] == "lifespan.startup":
                    if self.fail_startup:
                        await send({"type": "lifespan.startup.failed", "message": self.fail_startup})
                        return
                    scope["state"]["shared"] = self.shared
                    scope["state"]["name"] = "from-startup"
                    await send({"type": "lifespan.startup.complete"})
                else:
                    if self.fail_shutdown:
                        await send({"type": "lifespan.shutdown.failed", "message": self.fail_shutdown})
                    else:
                        await send({"type": "lifespan.shutdown.complete"})
                    return
        state = scope["state"]
        self.request_states.append(dict(state))
        state["shared"].append(scope["path"])
        state["name"] = "changed-by-request"  # must not leak into the next request
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": b"ok"})


async def no_lifespan(scope: dict[str, Any], receive: Any, send: Any) -> None:
    """An app that predates lifespan: it fails on any scope it does not know."""
    assert scope["type"] == "http", f"unsupported scope {scope['type']}"
    await send({"type": "http.response.start", "status": 200, "headers": []})
    await send({"type": "http.response.body", "body": b"ok"})


@pytest.mark.parametrize("mode", ["auto", "on"])
def test_startup_runs_before_serving_and_shutdown_after(mode):
    app = LifespanApp()
    with running_server(app, lifespan=mode) as server:
        assert app.events == ["lifespan.startup"]
        assert httpx.get(server.url).text == "ok"
        server.stop()
    assert app.events == ["lifespan.startup", "lifespan.shutdown"]


def test_lifespan_off_never_calls_the_app_with_a_lifespan_scope():
    app = LifespanApp()
    with running_server(app, lifespan="off") as server:
        assert app.events == []
        server.stop()
    assert app.events == []


def test_state_is_shared_with_requests_as_a_shallow_copy():
    app = LifespanApp()
    with running_server(app) as server, httpx.Client(base_url=server.url) as client:
        client.get("/one")
        client.get("/two")
    first, second = app.request_states
    assert first["name"] == second["name"] == "from-startup"  # a request's own change does not leak
    assert first["shared"] is app.shared  # but objects put there at startup are the same objects
    assert app.shared == ["/one", "/two"]


def test_auto_mode_serves_an_app_without_lifespan_support():
    with running_server(no_lifespan, lifespan="auto") as server:
        assert httpx.get(server.url).text == "ok"


def test_on_mode_fails_startup_for_an_app_without_lifespan_support():
    with (
        pytest.raises(LifespanFailed, match="unsupported scope lifespan"),
        running_server(no_lifespan, lifespan="on"),
    ):
        pass


@pytest.mark.parametrize("mode", ["auto", "on"])
def test_startup_failed_message_fails_startup(mode):
    app = LifespanApp(fail_startup="no database")
    with pytest.raises(LifespanFailed, match="no database"), running_server(app, lifespan=mode):
        pass
    assert app.events == ["lifespan.startup"]


async def crashes_in_startup(scope: dict[str, Any], receive: Any, send: Any) -> None:
    """Speaks lifespan (it takes the startup event), then its startup code crashes."""
    assert scope["type"] == "lifespan"
    await receive()
    raise ConnectionError("cannot reach the database")


@pytest.mark.parametrize("mode", ["auto", "on"])
def test_crash_after_receiving_startup_is_a_failure_not_unsupported(mode):
    with (
        pytest.raises(LifespanFailed, match="ConnectionError: cannot reach the database"),
        running_server(crashes_in_startup, lifespan=mode),
    ):
        pass


def test_starlette_lifespan_that_raises_fails_startup_with_its_message():
    import contextlib

    from starlette.applications import Starlette

    @contextlib.asynccontextmanager
    async def lifespan(app: Any) -> Any:
        raise RuntimeError("migrations pending")
        yield

    with (
        pytest.raises(LifespanFailed, match="migrations pending"),
        running_server(Starlette(lifespan=lifespan)),
    ):
        pass


def test_shutdown_failure_is_logged_and_the_server_still_stops(caplog):
    app = LifespanApp(fail_shutdown="could not flush")
    with running_server(app) as server:
        server.stop()
    assert app.events == ["lifespan.startup", "lifespan.shutdown"]
    assert any("could not flush" in r.getMessage() for r in caplog.records)


@pytest.mark.parametrize(
    ("app", "mode", "message"),
    [
        ("tests.cli_apps:failing_startup", "auto", "database at db:5432 is unreachable"),
        ("tests.cli_apps:raising_startup", "on", "RuntimeError: config file missing"),
        ("tests.cli_apps:raising_startup", "auto", "RuntimeError: config file missing"),
    ],
    ids=["startup_failed_message", "exception_with_lifespan_on", "exception_with_lifespan_auto"],
)
def test_startup_failure_exits_with_code_3_and_the_apps_message(app, mode, message):
    result = subprocess.run(
        [sys.executable, "-m", "celeris_asgi", app, "--port", "0", "--lifespan", mode],
        cwd=ROOT,
        env=os.environ.copy(),
        capture_output=True,
        text=True,
        timeout=20,
    )
    assert result.returncode == 3
    assert message in result.stderr
    assert "running on" not in result.stderr
