"""The log lines a uvicorn user recognises, from real `celeris` processes and an embedded Server."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys

import httpx
import pytest

from tests.conftest import ROOT
from tests.test_dropin import APP, celeris_processes, run_python

pytestmark = pytest.mark.timeout(60)
celeris = pytest.fixture(celeris_processes, name="celeris")


def test_start_and_finish_lines_carry_the_process_id(celeris):
    process = celeris(APP, "--port", "0")
    pid = process.proc.pid
    httpx.get(f"http://127.0.0.1:{process.port}/")
    assert process.stop() == 0
    lines = [line for line in process.lines if line.startswith("INFO:")]
    started = lines.index(f"INFO:     Started server process [{pid}]")
    assert lines[started + 1 : started + 3] == [
        "INFO:     Waiting for application startup.",
        "INFO:     Application startup complete.",
    ]
    assert lines[-1] == f"INFO:     Finished server process [{pid}]"


def test_access_line_shows_the_client_port(celeris):
    process = celeris(APP, "--port", "0")
    with httpx.Client() as client:
        client.get(f"http://127.0.0.1:{process.port}/hello")
        (match,) = process.read_until(r'127\.0\.0\.1:(\d+) - "GET /hello HTTP/1\.1" 200')
    assert 0 < int(match.group(1)) < 65536


def test_a_workers_access_line_carries_its_worker_id(celeris):
    process = celeris(APP, "--port", "0", "--workers", "2", ready_count=2)
    workers = {int(m.group(1)) for m in process.read_until(r"\[worker (\d+)\] Started server process", count=2)}
    httpx.get(f"http://127.0.0.1:{process.port}/from-a-worker")
    (match,) = process.read_until(r'INFO:     \[worker (\d+)\] 127\.0\.0\.1:\d+ - "GET /from-a-worker HTTP/1\.1" 200')
    assert int(match.group(1)) in workers


def test_debug_shows_the_protocol_chosen_for_each_connection(celeris):
    process = celeris(APP, "--port", "0", "--log-level", "debug")
    httpx.get(f"http://127.0.0.1:{process.port}/")
    with httpx.Client(http1=False, http2=True) as client:
        client.get(f"http://127.0.0.1:{process.port}/")
    process.read_until(r"DEBUG:    Protocol chosen: HTTP/1\.1 for 127\.0\.0\.1:\d+")
    process.read_until(r"DEBUG:    Protocol chosen: HTTP/2 for 127\.0\.0\.1:\d+")


@pytest.mark.parametrize("flag", ["--use-colors", "--no-use-colors"])
def test_use_colors_colours_the_level(celeris, flag):
    process = celeris(APP, "--port", "0", flag)
    coloured = "\x1b[32mINFO\x1b[0m:     Celeris running on" in process.output
    assert coloured == (flag == "--use-colors")


def test_colours_by_default_when_stderr_is_a_terminal():
    """`script` gives celeris a pseudo-terminal; no flag needed for colours there."""
    parent, child = os.openpty()
    proc = subprocess.Popen(
        [sys.executable, "-m", "celeris_asgi", APP, "--port", "0"],
        cwd=ROOT,
        stdin=subprocess.DEVNULL,
        stdout=child,
        stderr=child,
        start_new_session=True,
    )
    os.close(child)
    output = b""
    try:
        while b"running on" not in output:
            chunk = os.read(parent, 4096)
            assert chunk, output
            output += chunk
    finally:
        os.killpg(proc.pid, signal.SIGTERM)
        proc.wait(15)
        os.close(parent)
    assert b"\x1b[32mINFO\x1b[0m:     Celeris running on" in output


def test_embedded_server_gets_logging_from_config():
    """Server(Config(app)).serve(), as uvicorn's Config does, sets up logging; nothing else configures it."""
    code = (
        "import asyncio, celeris_asgi\n"
        "from tests.cli_apps import app\n"
        "server = celeris_asgi.Server(celeris_asgi.Config(app, port=0))\n"
        "asyncio.run(server.serve())\n"
    )
    process = run_python("-c", code)
    try:
        port = int(process.read_until(r"INFO:     Celeris running on http://127\.0\.0\.1:(\d+)")[0].group(1))
        httpx.get(f"http://127.0.0.1:{port}/embedded")
        process.read_until(r'INFO:     127\.0\.0\.1:\d+ - "GET /embedded HTTP/1\.1" 200')
        assert "INFO:     Started server process" in process.output
    finally:
        process.stop()


# ----- an app that fails to import ---------------------------------------------------------------------

BROKEN = """\
import os

SETTING = os.environ["CELERIS_TEST_MISSING_SETTING"]


async def app(scope, receive, send): ...
"""


def test_import_error_shows_the_exception_with_file_and_line(tmp_path):
    (tmp_path / "broken_app.py").write_text(BROKEN)
    result = subprocess.run(
        [sys.executable, "-m", "celeris_asgi", "broken_app:app", "--app-dir", str(tmp_path)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=20,
    )
    assert result.returncode == 1
    assert result.stderr.splitlines() == [
        f"ERROR:    Error loading module \"broken_app\": KeyError: 'CELERIS_TEST_MISSING_SETTING' "
        f'(File "{tmp_path / "broken_app.py"}", line 3)'
    ]


def test_import_error_shows_the_traceback_at_debug(tmp_path):
    (tmp_path / "broken_app.py").write_text(BROKEN)
    result = subprocess.run(
        [sys.executable, "-m", "celeris_asgi", "broken_app:app", "--app-dir", str(tmp_path), "--log-level", "debug"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=20,
    )
    assert result.returncode == 1
    assert "Traceback (most recent call last)" in result.stderr
    assert re.search(r'File ".*broken_app\.py", line 3, in <module>\n\s+SETTING = os\.environ', result.stderr)


def test_a_syntax_error_in_the_app_names_file_and_line(tmp_path):
    (tmp_path / "typo_app.py").write_text("async def app(scope, receive, send):\n    return (\n")
    result = subprocess.run(
        [sys.executable, "-m", "celeris_asgi", "typo_app:app", "--app-dir", str(tmp_path)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=20,
    )
    assert result.returncode == 1
    (line,) = result.stderr.splitlines()
    assert 'Error loading module "typo_app": SyntaxError' in line
    assert f'(File "{tmp_path / "typo_app.py"}", line 2)' in line


@pytest.mark.parametrize(
    ("flag", "named"),
    [
        ("--ssl-keyfile", "--ssl-keyfile (the private key)"),
        ("--ssl-ca-certs", "--ssl-ca-certs (the CA certificates)"),
    ],
)
def test_a_missing_tls_file_is_named(tmp_path, flag, named):
    """The certificate exists (any file will do for the check); the other file does not."""
    cert = tmp_path / "cert.pem"
    cert.write_text("not checked before the missing file\n")
    missing = tmp_path / "missing.pem"
    result = subprocess.run(
        [sys.executable, "-m", "celeris_asgi", APP, "--ssl-certfile", str(cert), flag, str(missing)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=20,
    )
    assert result.returncode != 0
    (line,) = result.stderr.splitlines()
    assert f"{named} '{missing}' does not exist" in line


def test_log_config_takes_what_uvicorn_takes_a_config_parser_or_an_open_ini_file():
    code = (
        "import configparser, io, logging, celeris_asgi\n"
        "ini = open(0).read()\n"
        "parser = configparser.RawConfigParser()\n"
        "parser.read_string(ini.replace('TAG', 'PARSER'))\n"
        "celeris_asgi.Config('tests.cli_apps:app', log_config=parser)\n"
        "logging.getLogger('celeris.error').info('configured')\n"
        "celeris_asgi.Config('tests.cli_apps:app', log_config=io.StringIO(ini.replace('TAG', 'FILE')))\n"
        "logging.getLogger('celeris.error').info('configured')\n"
    )
    ini = (
        "[loggers]\nkeys=root,celeris\n[handlers]\nkeys=out\n[formatters]\nkeys=tagged\n"
        "[logger_root]\nlevel=WARNING\nhandlers=\n"
        "[logger_celeris]\nlevel=INFO\nhandlers=out\nqualname=celeris\npropagate=0\n"
        "[handler_out]\nclass=StreamHandler\nformatter=tagged\nargs=(sys.stdout,)\n"
        "[formatter_tagged]\nformat=TAG %(message)s\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], input=ini, cwd=ROOT, capture_output=True, text=True, timeout=20
    )
    assert result.stdout.splitlines() == ["PARSER configured", "FILE configured"], result.stderr
