"""--log-format json: every line a real `celeris` writes (master, workers, access, errors) is one JSON object."""

from __future__ import annotations

import json
import logging
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from celeris_asgi.logging import AccessLog, JsonFormatter
from tests.conftest import start_cli, stop_process
from tests.test_supervisor import LogTail

JSON_APP = """
async def app(scope, receive, send):
    if scope["type"] != "http":
        return
    if scope["path"] == "/boom":
        raise RuntimeError("boom")
    await send({"type": "http.response.start", "status": 200, "headers": [(b"content-type", b"text/plain")]})
    await send({"type": "http.response.body", "body": b"hello"})
"""


@pytest.mark.timeout(40)
@pytest.mark.parametrize("workers", ["1", "2"])
def test_every_line_is_one_json_object_with_access_fields(tmp_path: Path, workers: str) -> None:
    (tmp_path / "jsonapp.py").write_text(JSON_APP)
    process = start_cli(
        "jsonapp:app", "--app-dir", str(tmp_path), "--port", "0", "--workers", workers, "--log-format", "json",
        wait_ready=False,
    )  # fmt: skip
    tail = LogTail(process.proc)
    try:
        port = int(tail.wait_for(r"running on http://127\.0\.0\.1:(\d+)")[0][1])
        url = f"http://127.0.0.1:{port}"
        assert httpx.get(url + "/path?x=1", headers={"X-Request-ID": "req-42"}).status_code == 200
        assert httpx.get(url + "/boom").status_code == 500
        tail.wait_for(r'"path": "/boom"')
    finally:
        assert stop_process(process.proc) == 0
    tail.wait_eof()  # every line, the last ones too (they may still be in the pipe)
    lines = [json.loads(line) for line in tail.lines if line]  # raises on any line that is not JSON
    assert all({"time", "level", "logger", "message", "pid"} <= line.keys() for line in lines)
    access = next(line for line in lines if line.get("request_id") == "req-42")
    assert access["logger"] == "celeris.access"
    assert access | {"time": 0, "pid": 0, "duration_ms": 0, "client": 0} == {
        "time": 0,
        "level": "INFO",
        "logger": "celeris.access",
        "message": access["message"],
        "pid": 0,
        "client": 0,
        "method": "GET",
        "path": "/path",
        "query": "x=1",
        "protocol": "HTTP/1.1",
        "status": 200,
        "response_bytes": 5,
        "duration_ms": 0,
        "request_id": "req-42",
    }
    assert access["client"].startswith("127.0.0.1:")
    error = next(line for line in lines if line["message"] == "Exception in ASGI application")
    assert error["level"] == "ERROR" and "RuntimeError: boom" in error["exception"]
    assert any("Finished server process" in line["message"] for line in lines)


@pytest.fixture
def restore_loggers() -> Iterator[None]:
    """Put celeris's loggers back as they were: the test applies a file-logging config in this process."""
    loggers = [logging.getLogger(name) for name in ("celeris", "celeris.error", "celeris.access")]
    saved = [(lg.handlers[:], lg.level, lg.propagate, lg.disabled) for lg in loggers]
    yield
    for lg, (handlers, level, propagate, disabled) in zip(loggers, saved, strict=True):
        for handler in lg.handlers:
            if handler not in handlers:
                handler.close()
        lg.handlers, lg.propagate, lg.disabled = handlers, propagate, disabled
        lg.setLevel(level)


@pytest.mark.usefixtures("restore_loggers")
def test_json_formatter_from_a_log_config_file(tmp_path: Path) -> None:
    """--log-config keeps working, and can name the JSON formatter itself."""
    config = {
        "version": 1,
        "disable_existing_loggers": False,
        "formatters": {"json": {"()": "celeris_asgi.logging.JsonFormatter"}},
        "handlers": {"file": {"class": "logging.FileHandler", "filename": str(tmp_path / "log"), "formatter": "json"}},
        "loggers": {"celeris.access": {"handlers": ["file"], "level": "INFO", "propagate": False}},
    }
    (tmp_path / "logging.json").write_text(json.dumps(config))
    from celeris_asgi.config import Config

    Config("tests.apps:app", log_config=str(tmp_path / "logging.json"), log_format="json")
    scope = {"client": None, "method": "GET", "path": "/", "query_string": b"", "http_version": "2", "headers": []}
    AccessLog("%(s)s", True).log(scope, 204, [], 0, 0.25)
    for handler in logging.getLogger("celeris.access").handlers:
        handler.flush()
    line = json.loads((tmp_path / "log").read_text())
    assert line["status"] == 204 and line["protocol"] == "HTTP/2" and line["duration_ms"] == 250.0
    assert line["client"] is None and "request_id" not in line
    assert isinstance(logging.getLogger("celeris.access").handlers[0].formatter, JsonFormatter)
