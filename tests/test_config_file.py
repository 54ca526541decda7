"""`--config celeris.toml`: a real `celeris` process reads it; flags and CELERIS_* variables beat it."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import httpx
import pytest

from tests.conftest import ROOT
from tests.test_cli import APP, one_error_line, run_cli

pytestmark = pytest.mark.timeout(30)

SETTINGS = ("port", "workers", "timeout_keep_alive", "server_header", "headers", "http", "log_format", "proxy_protocol")


def settings_of(*args: str, env: dict[str, str] | None = None) -> dict[str, object]:
    """The Config the command line builds, read in a separate process (the CLI sets up logging)."""
    code = (
        "import json, sys; from celeris_asgi.cli import parse_config; c = parse_config(sys.argv[1:]); "
        f"print(json.dumps({{k: getattr(c, k) for k in {SETTINGS!r}}}, default=repr))"
    )
    result = subprocess.run(
        [sys.executable, "-c", code, *args], cwd=ROOT, capture_output=True, text=True, timeout=20, env=env
    )
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout.splitlines()[-1])


def write(tmp_path: Path, text: str) -> str:
    path = tmp_path / "celeris.toml"
    path.write_text(text)
    return str(path)


FILE = """
port = 9123
workers = 3
timeout-keep-alive = 7.5
server_header = false
header = ["X-One: 1", "X-Two: 2"]
http = "h1"
log-format = "json"
proxy-protocol = "v2"
"""
FLAGS = (
    "--port", "9123", "--workers", "3", "--timeout-keep-alive", "7.5", "--no-server-header",
    "--header", "X-One: 1", "--header", "X-Two: 2", "--http", "h1", "--log-format", "json", "--proxy-protocol", "v2",
)  # fmt: skip


def test_a_config_file_sets_what_the_flags_set(tmp_path: Path) -> None:
    from_file = settings_of(APP, "--config", write(tmp_path, FILE))
    assert from_file == settings_of(APP, *FLAGS)
    assert from_file["workers"] == 3 and from_file["server_header"] is False


def test_flags_beat_environment_variables_which_beat_the_file(tmp_path: Path) -> None:
    import os

    path = write(tmp_path, FILE)
    env = {**os.environ, "CELERIS_WORKERS": "2", "CELERIS_CONFIG": path}
    settings = settings_of(APP, "--port", "0", env=env)
    assert (settings["port"], settings["workers"], settings["http"]) == (0, 2, "h1")


def test_the_file_serves(cli, tmp_path: Path) -> None:
    path = write(tmp_path, f'app = "{APP}"\nport = 0\nserver-header = false\nheader = "X-From: file"\n')
    process = cli("--config", path)
    response = httpx.get(process.url)
    assert response.text == "ok" and "server" not in response.headers
    assert response.headers["x-from"] == "file"


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("prot = 80", r"celeris\.toml'?: prot: unknown key"),
        ('port = "eighty"', r"port must be a whole number; got 'eighty'"),
        ("port = 70000", r"--port must be between 0 and 65535"),
        ("access-log = 1", r"access-log must be true or false"),
        ('http = "h3"', r"http must be one of auto, h1, h2"),
        ("timeout_keep_alive = true", r"timeout_keep_alive must be a number"),
        ('header = [1, 2]', r"header must be a string or a list of strings"),
        ("port = ", r"is not valid TOML"),
        ("[server]\nport = 1", r"server: unknown key"),
    ],
    ids=["unknown", "string_for_int", "out_of_range", "int_for_bool", "bad_choice", "bool_for_float", "bad_list",
         "bad_toml", "table"],
)  # fmt: skip
def test_a_bad_config_file_is_one_line_and_exit_2(tmp_path: Path, text: str, expected: str) -> None:
    result = run_cli(APP, "--config", write(tmp_path, text))
    assert result.returncode == 2, result.stderr
    import re

    line = one_error_line(result)
    assert re.search(expected, line), line


def test_a_missing_config_file_is_one_line() -> None:
    result = run_cli(APP, "--config", "/nonexistent/celeris.toml")
    assert result.returncode == 2
    assert "Cannot read --config '/nonexistent/celeris.toml'" in one_error_line(result)
