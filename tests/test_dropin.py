"""A uvicorn 0.55 command line works with `celeris` in its place: every flag, uvicorn's values, ASGI2 apps.

The table starts real `celeris` processes, a handful of flags per start (each start costs a process
and an interpreter), and shows each one serving, or failing with the one line that says what to do
instead where a value cannot be honoured.
"""

from __future__ import annotations

import importlib.util
import json
import os
import re
import selectors
import socket
import ssl
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import httpx
import pytest
import trustme
from cryptography.hazmat.primitives import serialization

from tests.conftest import ROOT, stop_process

pytestmark = pytest.mark.timeout(60)

APP = "tests.cli_apps:app"
READY = r"running on (?:https?://[^ ]+:(\d+)|unix socket)"

# `uvicorn --help` of uvicorn 0.55.0, every option.
UVICORN_FLAGS = [
    "--host", "--port", "--uds", "--fd", "--reload", "--reload-dir", "--reload-include", "--reload-exclude",
    "--reload-delay", "--workers", "--loop", "--http", "--http2", "--ws", "--ws-max-size", "--ws-max-queue",
    "--ws-ping-interval", "--ws-ping-timeout", "--ws-per-message-deflate", "--lifespan", "--interface",
    "--env-file", "--log-config", "--log-level", "--access-log", "--no-access-log", "--use-colors",
    "--no-use-colors", "--proxy-headers", "--no-proxy-headers", "--server-header", "--no-server-header",
    "--date-header", "--no-date-header", "--forwarded-allow-ips", "--root-path", "--limit-concurrency",
    "--backlog", "--limit-max-requests", "--limit-max-requests-jitter", "--timeout-keep-alive",
    "--timeout-graceful-shutdown", "--timeout-worker-healthcheck", "--ssl-keyfile", "--ssl-certfile",
    "--ssl-keyfile-password", "--ssl-version", "--ssl-cert-reqs", "--ssl-ca-certs", "--ssl-ciphers", "--header",
    "--version", "--app-dir", "--h11-max-incomplete-event-size", "--reset-contextvars", "--factory", "--help",
]  # fmt: skip


# ----- apps served by the subprocesses (imported as tests.test_dropin:NAME) ---------------------------


class ASGI2App:
    """An ASGI2 (double-callable) app: constructed with the scope, then called with receive and send."""

    def __init__(self, scope: dict[str, Any]) -> None:
        self.scope = scope

    async def __call__(self, receive: Any, send: Any) -> None:
        if self.scope["type"] != "http":
            return
        body = f"asgi2 {self.scope['path']}".encode()
        await send({"type": "http.response.start", "status": 200, "headers": [(b"content-length", b"%d" % len(body))]})
        await send({"type": "http.response.body", "body": body})


def asgi2_function(scope: dict[str, Any]) -> Any:
    """The other ASGI2 style: a function of the scope returning the coroutine function."""
    return ASGI2App(scope)


# ----- running celeris -------------------------------------------------------------------------------


@dataclass
class Celeris:
    """A `celeris` process whose merged stdout/stderr is read line by line, with deadlines."""

    proc: subprocess.Popen[bytes]
    lines: list[str] = field(default_factory=list)
    port: int | None = None
    pending: bytes = b""

    def read_until(self, pattern: str, count: int = 1, timeout: float = 15) -> list[re.Match[str]]:
        """Read output until `pattern` matched `count` lines; fail if celeris exits first."""
        assert self.proc.stdout is not None
        deadline = time.monotonic() + timeout
        with selectors.DefaultSelector() as selector:
            selector.register(self.proc.stdout, selectors.EVENT_READ)
            while True:
                found = [m for m in map(re.compile(pattern).search, self.lines) if m]
                if len(found) >= count:
                    return found
                left = deadline - time.monotonic()
                assert left > 0, f"{pattern!r} x{count} not in:\n" + "\n".join(self.lines)
                if not selector.select(left):
                    continue
                chunk = os.read(self.proc.stdout.fileno(), 65536)
                assert chunk, f"celeris exited ({self.proc.wait()}) before {pattern!r}:\n" + "\n".join(self.lines)
                *complete, self.pending = (self.pending + chunk).split(b"\n")
                self.lines += [line.decode(errors="replace") for line in complete]

    def stop(self) -> int:
        code = stop_process(self.proc)
        assert self.proc.stdout is not None
        rest = self.pending + self.proc.stdout.read()
        self.lines += [line.decode(errors="replace") for line in rest.splitlines()]
        return code

    @property
    def output(self) -> str:
        return "\n".join(self.lines)


def launch(*args: str, env: dict[str, str] | None = None, **popen: Any) -> Celeris:
    """`celeris ARGS` as a subprocess."""
    return run_python("-m", "celeris_asgi", *args, env=env, **popen)


def run_python(*argv: str, env: dict[str, str] | None = None, **popen: Any) -> Celeris:
    """This interpreter with `argv` (e.g. "-c", code) as a subprocess whose output is read line by line."""
    proc = subprocess.Popen(
        [sys.executable, *argv],
        cwd=ROOT,
        env={**os.environ, "PYTHONUNBUFFERED": "1", **(env or {})},
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        start_new_session=True,
        **popen,
    )
    return Celeris(proc)


def celeris_processes() -> Iterator[Any]:
    """The `celeris` fixture of the drop-in test modules: `celeris(*args, ready_count=N)` starts celeris and
    waits for N "running on" lines; all are stopped at test end."""
    started: list[Celeris] = []

    def start(*args: str, ready_count: int = 1, **kwargs: Any) -> Celeris:
        process = launch(*args, **kwargs)
        started.append(process)
        match = process.read_until(READY, count=ready_count)[0]
        process.port = int(match.group(1)) if match.group(1) else None
        return process

    yield start
    for process in started:
        stop_process(process.proc)


celeris = pytest.fixture(celeris_processes, name="celeris")


@pytest.fixture(scope="module")
def tls_files(tmp_path_factory: pytest.TempPathFactory) -> dict[str, str]:
    """A trustme CA and a leaf for 127.0.0.1 whose key is encrypted with the password "secret"."""
    ca = trustme.CA()
    leaf = ca.issue_cert("127.0.0.1")
    folder = tmp_path_factory.mktemp("tls")
    paths = {name: folder / f"{name}.pem" for name in ("cert", "key", "ca")}
    leaf.cert_chain_pems[0].write_to_path(paths["cert"])
    ca.cert_pem.write_to_path(paths["ca"])
    key = serialization.load_pem_private_key(leaf.private_key_pem.bytes(), password=None)
    encryption = serialization.BestAvailableEncryption(b"secret")
    paths["key"].write_bytes(
        key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, encryption)
    )
    return {name: str(path) for name, path in paths.items()}


# ----- every flag, a typical value, serving --------------------------------------------------------


def note(process: Celeris, text: str) -> None:
    """The start-up log says, once, how a uvicorn value is served."""
    assert process.output.count(text) == 1, process.output


def test_the_flag_table_covers_every_uvicorn_flag():
    """The groups below use every flag of UVICORN_FLAGS (and that list is uvicorn's, where it is installed)."""
    used = " ".join(" ".join(arg for arg in group if arg.startswith("--")) for group in TABLE_ARGS)
    used += " --fd --uds --ssl-keyfile --ssl-certfile --ssl-keyfile-password --ssl-ca-certs --version --help"
    assert [flag for flag in UVICORN_FLAGS if flag not in used.split()] == []
    if importlib.util.find_spec("uvicorn") is not None:
        from uvicorn.main import main as uvicorn_main

        theirs = {opt for param in uvicorn_main.params for opt in [*param.opts, *param.secondary_opts]}
        assert theirs - {"--app"} <= set(UVICORN_FLAGS) | {"APP", "app"}


TCP_IMPLEMENTATION_NAMES = [
    "--host", "127.0.0.1", "--port", "0", "--loop", "asyncio", "--http", "h11", "--http2", "--ws", "wsproto",
    "--ws-max-size", "1048576", "--ws-max-queue", "16", "--ws-ping-interval", "10", "--ws-ping-timeout", "10",
    "--ws-per-message-deflate", "false", "--lifespan", "on", "--interface", "asgi3", "--log-level", "debug",
    "--access-log", "--no-use-colors", "--proxy-headers", "--server-header", "--date-header",
    "--forwarded-allow-ips", "127.0.0.1", "--root-path", "/api", "--limit-concurrency", "100", "--backlog", "128",
    "--limit-max-requests", "1000", "--limit-max-requests-jitter", "10", "--timeout-keep-alive", "5",
    "--timeout-graceful-shutdown", "5", "--timeout-worker-healthcheck", "5", "--header", "X-Dropin:1",
    "--app-dir", ".", "--h11-max-incomplete-event-size", "16384", "--reset-contextvars",
]  # fmt: skip
SWITCHED_OFF = [
    "--port", "0", "--loop", "uvloop", "--http", "httptools", "--ws", "websockets-sansio",
    "--ws-per-message-deflate", "true", "--lifespan", "auto", "--interface", "auto", "--no-access-log",
    "--no-proxy-headers", "--no-server-header", "--no-date-header", "--factory", "--log-config", "LOG_CONFIG",
]  # fmt: skip
ASGI2_AND_COLOURS = [
    "--port", "0", "--http", "zttp", "--loop", "zuvloop", "--interface", "asgi2", "--use-colors", "--ws", "auto",
]  # fmt: skip
WORKERS = ["--port", "0", "--workers", "2", "--loop", "none", "--env-file", "ENV_FILE"]
RELOAD = [
    "--port", "0", "--reload", "--reload-dir", "RELOAD_DIR", "--reload-include", "*.py", "--reload-exclude",
    "*.tmp", "--reload-delay", "0.5",
]  # fmt: skip
TLS = ["--port", "0", "--ssl-version", "17", "--ssl-cert-reqs", "1", "--ssl-ciphers", "ECDHE+AESGCM"]
TABLE_ARGS = [TCP_IMPLEMENTATION_NAMES, SWITCHED_OFF, ASGI2_AND_COLOURS, WORKERS, RELOAD, TLS]


def test_uvicorn_implementation_names_and_every_tuning_flag(celeris):
    process = celeris(APP, *TCP_IMPLEMENTATION_NAMES)
    response = httpx.get(f"http://127.0.0.1:{process.port}/", headers={"x-forwarded-for": "203.0.113.9"})
    assert (response.status_code, response.text) == (200, "ok")
    assert response.headers["x-dropin"] == "1"
    assert response.headers["server"] == "celeris" and "date" in response.headers
    note(process, "--http h11: celeris has one HTTP/1.1 parser (httptools) and serves HTTP/2 on the same port")
    note(process, "--ws wsproto: celeris has one WebSocket engine (websockets, sans-I/O)")
    note(process, "--http2: HTTP/2 is always on in celeris")
    note(process, "--h11-max-incomplete-event-size: ignored; celeris bounds request heads with")
    note(process, "--reset-contextvars: celeris always runs each request in its own copy")
    # --proxy-headers with 127.0.0.1 trusted: the access line shows the forwarded client.
    process.read_until(r'203\.0\.113\.9:\d+ - "GET /api/ HTTP/1\.1" 200')
    with httpx.Client(http1=False, http2=True) as client:  # HTTP/2 still on, as the note says
        assert client.get(f"http://127.0.0.1:{process.port}/").http_version == "HTTP/2"


def test_switched_off_flags_uvloop_factory_and_log_config(celeris, tmp_path):
    log_config = tmp_path / "log.json"
    log_config.write_text(
        json.dumps(
            {
                "version": 1,
                "disable_existing_loggers": False,
                "formatters": {"tagged": {"format": "CFG %(message)s"}},
                "handlers": {"out": {"class": "logging.StreamHandler", "formatter": "tagged"}},
                "loggers": {"celeris": {"handlers": ["out"], "level": "INFO", "propagate": False}},
            }
        )
    )
    args = [str(log_config) if arg == "LOG_CONFIG" else arg for arg in SWITCHED_OFF]
    process = celeris("tests.cli_apps:factory", *args)
    response = httpx.get(f"http://127.0.0.1:{process.port}/")
    assert (response.status_code, response.text) == (200, "ok")
    assert "server" not in response.headers and "date" not in response.headers
    assert re.search(r"^CFG Celeris running on", process.output, re.M)
    note(process, "--http httptools: celeris has one HTTP/1.1 parser")
    note(process, "--ws websockets-sansio: celeris has one WebSocket engine")
    process.stop()
    assert '"GET /' not in process.output  # --no-access-log


def test_asgi2_interface_uvicorn_loop_names_and_colours(celeris):
    process = celeris("tests.test_dropin:ASGI2App", *ASGI2_AND_COLOURS)
    assert httpx.get(f"http://127.0.0.1:{process.port}/two").text == "asgi2 /two"
    note(process, "--http zttp: celeris has one HTTP/1.1 parser")
    note(process, "--loop zuvloop: not supported by celeris; serving as --loop auto")
    assert "\x1b[32mINFO\x1b[0m:     Started server process" in process.output


def test_workers_with_the_loop_left_to_asyncio_and_an_env_file(celeris, tmp_path):
    env_file = tmp_path / ".env"
    env_file.write_text("GREETING=from-the-env-file\n")
    args = [str(env_file) if arg == "ENV_FILE" else arg for arg in WORKERS]
    process = celeris(APP, *args, ready_count=2)
    assert httpx.get(f"http://127.0.0.1:{process.port}/env?GREETING").json() == "from-the-env-file"


def test_reload_flags(celeris, tmp_path):
    args = [str(tmp_path) if arg == "RELOAD_DIR" else arg for arg in RELOAD]
    process = celeris(APP, *args)
    assert httpx.get(f"http://127.0.0.1:{process.port}/").text == "ok"
    assert f"Watching {tmp_path} for changes" in process.output


def test_tls_flags_with_an_encrypted_key(celeris, tls_files):
    process = celeris(
        APP,
        *TLS,
        "--ssl-certfile",
        tls_files["cert"],
        "--ssl-keyfile",
        tls_files["key"],
        "--ssl-keyfile-password",
        "secret",
        "--ssl-ca-certs",
        tls_files["ca"],
    )
    with httpx.Client(verify=ssl.create_default_context(cafile=tls_files["ca"])) as client:
        assert client.get(f"https://127.0.0.1:{process.port}/").text == "ok"


def test_uds_and_fd(celeris, tmp_path):
    path = tmp_path / "c.sock"
    process = celeris(APP, "--uds", str(path))
    with httpx.Client(transport=httpx.HTTPTransport(uds=str(path))) as client:
        assert client.get("http://localhost/").text == "ok"
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen()
        fd = listener.fileno()
        process = celeris(APP, "--fd", str(fd), pass_fds=[fd])
        assert process.port == listener.getsockname()[1]
        assert httpx.get(f"http://127.0.0.1:{process.port}/").text == "ok"


def test_help_lists_every_uvicorn_flag_and_version_answers():
    result = subprocess.run(
        [sys.executable, "-m", "celeris_asgi", "--help"], cwd=ROOT, capture_output=True, text=True, timeout=20
    )
    assert result.returncode == 0
    shown = set(re.findall(r"--[a-z0-9-]+", result.stdout))
    hidden = {"--no-ws-per-message-deflate"}  # the --no- form of a BOOLEAN flag, accepted, not listed
    assert [flag for flag in UVICORN_FLAGS if flag not in shown | hidden] == []
    version = subprocess.run([sys.executable, "-m", "celeris_asgi", "--version"], capture_output=True, text=True)
    assert version.returncode == 0 and version.stdout.startswith("celeris-asgi ")


def test_no_ws_per_message_deflate_form_is_accepted_before_the_app(celeris):
    process = celeris("--no-ws-per-message-deflate", APP, "--port", "0")
    assert httpx.get(f"http://127.0.0.1:{process.port}/").text == "ok"


# ----- what cannot be honoured, what is refused ------------------------------------------------------


def run_briefly(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "celeris_asgi", *args],
        cwd=ROOT,
        env={**os.environ, **(env or {})},
        capture_output=True,
        text=True,
        timeout=20,
    )


def test_interface_wsgi_is_one_line_naming_what_to_do_and_exit_2():
    result = run_briefly(APP, "--interface", "wsgi")
    assert result.returncode == 2
    assert result.stderr.splitlines() == [
        "celeris: error: --interface wsgi: celeris serves ASGI apps only; wrap the WSGI app with "
        "a2wsgi.WSGIMiddleware (pip install a2wsgi) and serve that, or use gunicorn."
    ]


@pytest.mark.parametrize("abbreviation", ["--head", "--por", "--ws-per-message", "--log-lev"])
def test_abbreviated_flags_are_refused(abbreviation):
    result = run_briefly(APP, abbreviation, "1")
    assert result.returncode == 2
    assert f"unrecognized arguments: {abbreviation}" in result.stderr


# ----- the same names from the environment and from run(**kwargs) ---------------------------------------


def test_celeris_variables_take_uvicorn_values_and_auto_detect_asgi2(celeris):
    env = {
        "CELERIS_APP": "tests.test_dropin:asgi2_function",
        "CELERIS_PORT": "0",
        "CELERIS_HTTP": "httptools",
        "CELERIS_WS": "wsproto",
        "CELERIS_WS_PER_MESSAGE_DEFLATE": "false",
        "CELERIS_USE_COLORS": "0",
        "CELERIS_HTTP2": "true",
        "CELERIS_RESET_CONTEXTVARS": "1",
        "CELERIS_SSL_VERSION": "17",
        "CELERIS_RELOAD_DELAY": "0.5",
        "CELERIS_H11_MAX_INCOMPLETE_EVENT_SIZE": "16384",
    }
    process = celeris(env=env)
    assert httpx.get(f"http://127.0.0.1:{process.port}/env").text == "asgi2 /env"
    note(process, "--http httptools: celeris has one HTTP/1.1 parser")
    assert "\x1b[" not in process.output


def test_run_takes_uvicorn_keywords(celeris):
    code = (
        "import celeris_asgi\n"
        "celeris_asgi.run('tests.test_dropin:ASGI2App', port=0, http='httptools', interface='asgi2', ws='wsproto',"
        " use_colors=False, http2=True, ws_per_message_deflate=False, ssl_version=17, reset_contextvars=True,"
        " h11_max_incomplete_event_size=16384, reload_delay=0.5, loop='none', timeout_graceful_shutdown=None,"
        " app_dir=None, log_level='info', headers=[('x-run', 'yes')], timeout_worker_healthcheck=5)\n"
    )
    process = run_python("-c", code)
    try:
        port = int(process.read_until(READY)[0].group(1))
        response = httpx.get(f"http://127.0.0.1:{port}/py")
        assert (response.text, response.headers["x-run"]) == ("asgi2 /py", "yes")
        note(process, "--ws wsproto: celeris has one WebSocket engine")
    finally:
        assert process.stop() == 0


def test_run_with_an_interface_it_cannot_honour_exits_with_one_line():
    code = "import celeris_asgi\nceleris_asgi.run('tests.cli_apps:app', interface='wsgi')\n"
    result = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=20)
    assert result.returncode != 0
    assert len(result.stderr.splitlines()) == 1 and "--interface wsgi" in result.stderr
