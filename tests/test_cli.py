"""The `celeris` command line, run as a real subprocess: errors, environment, sockets, logging."""

from __future__ import annotations

import json
import os
import re
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import h2.events
import h2.settings
import httpx
import pytest

from tests.conftest import ROOT, stop_process

pytestmark = pytest.mark.timeout(30)

APP = "tests.cli_apps:app"


def run_cli(*args: str, env: dict[str, str] | None = None, timeout: float = 20) -> subprocess.CompletedProcess[str]:
    """Run the command to completion (for the cases that must fail at once)."""
    return subprocess.run(
        [sys.executable, "-m", "celeris_asgi", *args],
        cwd=ROOT,
        env={**os.environ, **(env or {})},
        capture_output=True,
        text=True,
        timeout=timeout,
    )


def one_error_line(result: subprocess.CompletedProcess[str]) -> str:
    """The failure left exactly one line on stderr and no traceback; returns it."""
    assert result.returncode != 0
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert "Traceback" not in result.stderr
    return lines[0]


# ----- errors: one clear line -----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("args", "expected"),
    [
        ((), r"missing APP"),
        (("just_a_module",), r'"just_a_module" must be in format "<module>:<attribute>"'),
        (("no_such_module_anywhere:app",), r'Could not import module "no_such_module_anywhere"'),
        (("tests.cli_apps:no_such_app",), r'Attribute "no_such_app" not found in module "tests.cli_apps"'),
        (("tests.cli_apps:factory",), r"looks like an app factory; pass --factory"),
        ((APP, "--port", "eighty"), r"argument --port: invalid int value: 'eighty'"),
        ((APP, "--port", "70000"), r"--port must be between 0 and 65535"),
        ((APP, "--loop", "tornado"), r"argument --loop: invalid choice: 'tornado'"),
        ((APP, "--timeout-keep-alive", "-1"), r"--timeout-keep-alive must be greater than 0"),
        ((APP, "--limit-concurrency", "0"), r"--limit-concurrency must be greater than 0"),
        ((APP, "--header", "no-colon-here"), r"--header 'no-colon-here' must be \"NAME:VALUE\""),
        ((APP, "--forwarded-allow-ips", "not-an-ip"), r"--forwarded-allow-ips.*'not-an-ip'"),
        ((APP, "--no-such-flag"), r"unrecognized arguments: --no-such-flag"),
        (
            (APP, "--log-config", "/nonexistent/log.json"),
            r"--log-config file '/nonexistent/log.json' does not exist",
        ),
        ((APP, "--env-file", "/nonexistent/.env"), r"Cannot read --env-file '/nonexistent/.env'"),
        ((APP, "--ssl-certfile", "/nonexistent/cert.pem"), r"--ssl-certfile \(the certificate\) '/nonexistent/cert"),
        ((APP, "--ssl-cert-reqs", "5"), r"--ssl-cert-reqs must be 0 \(none\), 1 \(optional\) or 2 \(required\)"),
        ((APP, "--ssl-version", "3"), r"--ssl-version 3: celeris serves TLS 1.2 and 1.3 only"),
        ((APP, "--interface", "wsgi"), r"--interface wsgi: celeris serves ASGI apps only; wrap the WSGI app"),
        ((APP, "--http", "h1", "--http2"), r"--http2 and --http h1 contradict each other"),
        ((APP, "--ws-per-message-deflate", "maybe"), r"invalid boolean value: 'maybe'"),
        # The HTTP/2 limits are checked once, against the engine's own bounds, and named by their flag.
        (
            (APP, "--h2-initial-window-size", "1000"),
            r"--h2-initial-window-size must be between 65535 and 2147483647; got 1000\.$",
        ),
        ((APP, "--h2-max-concurrent-streams", "0"), r"--h2-max-concurrent-streams must be between 1 and 4294967295"),
        ((APP, "--h2-max-header-list-size", "100"), r"--h2-max-header-list-size must be between 1024 and"),
        ((APP, "--h2-header-table-size", "-1"), r"--h2-header-table-size must be between 0 and 4294967295; got -1"),
        ((APP, "--h2-max-continuation-frames", "0"), r"--h2-max-continuation-frames must be at least 1; got 0"),
        ((APP, "--h2-flood-interval", "0"), r"--h2-flood-interval must be greater than 0; got 0\.0"),
        ((APP, "--h2-settings-timeout", "-1"), r"--h2-settings-timeout must be greater than 0; got -1\.0"),
        ((APP, "--head", "X:1"), r"unrecognized arguments: --head"),
    ],
    ids=[
        "missing_app",
        "bad_import_string",
        "missing_module",
        "missing_attribute",
        "factory_without_flag",
        "port_not_a_number",
        "port_out_of_range",
        "unknown_loop",
        "negative_timeout",
        "zero_limit",
        "bad_header",
        "bad_forwarded_ip",
        "unknown_flag",
        "missing_log_config",
        "missing_env_file",
        "missing_certificate",
        "bad_ssl_cert_reqs",
        "old_ssl_version",
        "wsgi_interface",
        "http2_with_h1_only",
        "bad_boolean_value",
        "h2_window_below_the_rfc_initial",
        "h2_no_streams",
        "h2_tiny_header_list",
        "h2_negative_table",
        "h2_no_continuation",
        "h2_zero_flood_interval",
        "h2_negative_settings_timeout",
        "abbreviated_flag",
    ],
)
def test_startup_error_is_one_clear_line(args, expected):
    line = one_error_line(run_cli(*args))
    assert re.search(expected, line), line


def test_error_raised_while_importing_the_app_module_is_one_line(tmp_path):
    (tmp_path / "broken_mod.py").write_text("raise ImportError('needs libfoo')\n")
    line = one_error_line(run_cli("broken_mod:app", "--app-dir", str(tmp_path)))
    assert 'Error loading module "broken_mod"' in line
    assert "needs libfoo" in line


def test_port_in_use_is_one_line_and_the_app_never_starts():
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        result = run_cli(APP, "--port", str(port))
    line = one_error_line(result)
    assert f"Cannot bind to 127.0.0.1:{port}" in line
    assert "in use" in line
    assert "lifespan" not in result.stderr


def test_version_and_help():
    result = run_cli("--version")
    assert result.returncode == 0
    assert re.fullmatch(r"celeris-asgi \d+\.\d+\.\d+\S* \((compiled|pure) core\)", result.stdout.strip())
    result = run_cli("--help")
    assert result.returncode == 0
    for flag in (
        "--timeout-request-header",
        "--limit-concurrency",
        "--access-log-format",
        "--env-file",
        "--fd",
    ):
        assert flag in result.stdout


def test_console_script_is_installed():
    script = Path(sys.executable).with_name("celeris")
    if not script.exists():
        pytest.skip("package not installed with its console script")
    result = subprocess.run([str(script), "--version"], capture_output=True, text=True, timeout=20)
    assert result.returncode == 0
    assert result.stdout.startswith("celeris-asgi ")


# ----- running it -----------------------------------------------------------------------------------


def test_python_dash_m_serves_the_app_and_stops_cleanly_on_sigterm(cli):
    process = cli(APP, "--port", "0")
    assert httpx.get(process.url).text == "ok"
    assert stop_process(process.proc) == 0


def test_garbage_collector_is_tuned_for_serving_unless_disabled(cli):
    tuned = cli(APP, "--port", "0")
    frozen, young_threshold = httpx.get(f"{tuned.url}/gc").json()
    # Imports alone leave tens of thousands of objects; a freeze moves them all to the permanent generation.
    assert frozen > 10_000
    assert young_threshold >= 2000
    untouched = cli(APP, "--port", "0", "--no-gc-tuning")
    frozen, young_threshold = httpx.get(f"{untouched.url}/gc").json()
    assert frozen == 0
    default = subprocess.run([sys.executable, "-c", "import gc; print(gc.get_threshold()[0])"], capture_output=True)
    assert young_threshold == int(default.stdout)  # the interpreter's own default


def test_h2_flags_reach_the_settings_the_server_announces(cli):
    from tests.http2.h2util import H2Socket

    process = cli(APP, "--port", "0", "--h2-header-table-size", "1024", "--h2-max-concurrent-streams", "7")
    conn = H2Socket(process.port)
    try:
        conn.receive(lambda events: conn.of(h2.events.RemoteSettingsChanged))
        changed = conn.of(h2.events.RemoteSettingsChanged)[0].changed_settings
        announced = {code: setting.new_value for code, setting in changed.items()}
    finally:
        conn.close()
    codes = h2.settings.SettingCodes
    assert announced[codes.HEADER_TABLE_SIZE] == 1024
    assert announced[codes.MAX_CONCURRENT_STREAMS] == 7
    assert announced[codes.INITIAL_WINDOW_SIZE] == 1 << 20  # the one default, the engine's


def test_factory_flag_calls_the_factory(cli):
    process = cli("tests.cli_apps:factory", "--factory", "--port", "0")
    assert httpx.get(process.url).text == "ok"


def test_celeris_environment_variables_set_flags(cli):
    env = {
        "CELERIS_APP": APP,
        "CELERIS_PORT": "0",
        "CELERIS_SERVER_HEADER": "false",
        "CELERIS_HEADER": "X-One: 1\nX-Two: 2",
        "CELERIS_TIMEOUT_KEEP_ALIVE": "7",
    }
    process = cli(env=env)
    response = httpx.get(process.url)
    assert response.text == "ok"
    assert "server" not in response.headers
    assert (response.headers["x-one"], response.headers["x-two"]) == ("1", "2")


def test_command_line_flag_beats_environment_variable(cli):
    process = cli(APP, "--port", "0", "--server-header", env={"CELERIS_SERVER_HEADER": "0"})
    assert httpx.get(process.url).headers["server"] == "celeris"


def test_bad_environment_variable_is_one_line():
    line = one_error_line(run_cli(APP, env={"CELERIS_ACCESS_LOG": "maybe"}))
    assert "CELERIS_ACCESS_LOG must be a boolean" in line


def test_env_file_reaches_the_app_without_overriding_the_environment(cli, tmp_path):
    env_file = tmp_path / ".env"
    env_file.write_text('# settings\nexport GREETING="hello there"\nSHADOWED=from-file\n\nEMPTY=\n')
    process = cli(APP, "--port", "0", "--env-file", str(env_file), env={"SHADOWED": "from-environment"})
    with httpx.Client(base_url=process.url) as client:
        assert client.get("/env?GREETING").json() == "hello there"
        assert client.get("/env?SHADOWED").json() == "from-environment"
        assert client.get("/env?EMPTY").json() == ""


def test_uds_serves_on_a_unix_socket_and_removes_it_on_exit(cli, tmp_path):
    path = tmp_path / "celeris.sock"
    process = cli(APP, "--uds", str(path), wait_ready=False)
    deadline = time.monotonic() + 15
    while not path.exists():
        assert process.proc.poll() is None, "celeris exited"
        assert time.monotonic() < deadline, "unix socket never appeared"
        time.sleep(0.05)
    transport = httpx.HTTPTransport(uds=str(path))
    with httpx.Client(transport=transport) as client:
        response = client.get("http://localhost/")
    assert response.text == "ok"
    assert stop_process(process.proc) == 0
    assert not path.exists()


def test_fd_serves_on_a_socket_inherited_from_the_parent():
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen()
        port = listener.getsockname()[1]
        proc = subprocess.Popen(
            [sys.executable, "-m", "celeris_asgi", APP, "--fd", str(listener.fileno())],
            cwd=ROOT,
            pass_fds=[listener.fileno()],
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        try:
            output = b""
            assert proc.stdout is not None
            while b"running on" not in output:
                line = proc.stdout.readline()
                assert line, output
                output += line
            assert f":{port}".encode() in output
            assert httpx.get(f"http://127.0.0.1:{port}/").text == "ok"
        finally:
            assert stop_process(proc) == 0


# ----- --log-config -----------------------------------------------------------------------------------

LOG_DICT = {
    "version": 1,
    "disable_existing_loggers": False,
    "formatters": {"tagged": {"format": "TAGGED[%(name)s] %(message)s"}},
    "handlers": {"file": {"class": "logging.FileHandler", "formatter": "tagged", "filename": "FILE"}},
    "loggers": {
        "celeris": {"handlers": ["file"], "level": "INFO", "propagate": False},
        "celeris.access": {"handlers": ["file"], "level": "INFO", "propagate": False},
    },
}

LOG_INI = """
[loggers]
keys=root,celeris,access

[handlers]
keys=file

[formatters]
keys=tagged

[logger_root]
level=WARNING
handlers=

[logger_celeris]
level=INFO
handlers=file
qualname=celeris
propagate=0

[logger_access]
level=INFO
handlers=file
qualname=celeris.access
propagate=0

[handler_file]
class=FileHandler
formatter=tagged
args=('FILE',)

[formatter_tagged]
format=TAGGED[%(name)s] %(message)s
"""


STARTED_LINE = r"TAGGED\[celeris\.error\] Celeris running on http://127\.0\.0\.1:(\d+)"


def log_dict(log_file: Path) -> dict:
    """LOG_DICT writing to `log_file`."""
    return json.loads(json.dumps(LOG_DICT).replace('"FILE"', json.dumps(str(log_file))))


def start_logging_to_file(config_path: Path, *args: str) -> subprocess.Popen[bytes]:
    """celeris with --log-config: everything it says goes to the configured file, so stdout is not read."""
    return subprocess.Popen(
        [sys.executable, "-m", "celeris_asgi", APP, "--port", "0", "--log-config", str(config_path), *args],
        cwd=ROOT,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )


def wait_for_log(
    proc: subprocess.Popen[bytes], log_file: Path, pattern: str, count: int = 1, timeout: float = 15
) -> list[re.Match[str]]:
    """Poll the log file until `pattern` matches `count` times; fail if celeris exits first."""
    deadline = time.monotonic() + timeout
    while True:
        text = log_file.read_text() if log_file.exists() else ""
        found = list(re.finditer(pattern, text))
        if len(found) >= count:
            return found
        assert proc.poll() is None, f"celeris exited:\n{text}"
        assert time.monotonic() < deadline, f"{pattern!r} x{count} not in {log_file}:\n{text}"
        time.sleep(0.05)


@pytest.mark.parametrize("kind", ["json", "yaml", "ini"])
def test_log_config_file_formats(kind, tmp_path):
    import yaml

    log_file = tmp_path / "celeris.log"
    config_path = tmp_path / f"logging.{kind}"
    if kind == "json":
        config_path.write_text(json.dumps(log_dict(log_file)))
    elif kind == "yaml":
        config_path.write_text(yaml.safe_dump(log_dict(log_file)))
    else:
        config_path.write_text(LOG_INI.replace("FILE", str(log_file)))
    proc = start_logging_to_file(config_path)
    try:
        port = int(wait_for_log(proc, log_file, STARTED_LINE)[0][1])
        httpx.get(f"http://127.0.0.1:{port}/logged")
        wait_for_log(proc, log_file, r'TAGGED\[celeris\.access\] 127\.0\.0\.1:\d+ - "GET /logged', timeout=5)
    finally:
        assert stop_process(proc) == 0


@pytest.mark.parametrize("workers", [1, 2], ids=["single-process", "supervisor"])
def test_sigusr1_reopens_log_files_after_logrotate_moved_them(workers, tmp_path):
    log_file = tmp_path / "celeris.log"
    config_path = tmp_path / "logging.json"
    config_path.write_text(json.dumps(log_dict(log_file)))
    proc = start_logging_to_file(config_path, "--workers", str(workers))
    try:
        port = int(wait_for_log(proc, log_file, STARTED_LINE)[0][1])
        processes = 1
        if workers > 1:
            wait_for_log(proc, log_file, r"Worker \[\d+\] is serving", count=workers)  # its handler is in place
            processes += workers
        rotated = log_file.rename(tmp_path / "celeris.log.1")  # what logrotate does before signalling
        os.kill(proc.pid, signal.SIGUSR1)
        wait_for_log(proc, log_file, r"Received SIGUSR1: log files reopened\.", count=processes)
        httpx.get(f"http://127.0.0.1:{port}/after-rotation")
        wait_for_log(proc, log_file, r'TAGGED\[celeris\.access\] 127\.0\.0\.1:\d+ - "GET /after-rotation', timeout=5)
        assert "SIGUSR1" not in rotated.read_text()
        assert "after-rotation" not in rotated.read_text()
    finally:
        assert stop_process(proc) == 0
