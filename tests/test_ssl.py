"""HTTPS over HTTP/1.1 with the --ssl-* settings, a trustme CA, and ALPN http/1.1."""

from __future__ import annotations

import logging
import re
import socket
import ssl

import httpx
import pytest

from celeris_asgi.config import Config, ConfigError
from tests.apps import scope_json
from tests.conftest import metered, wait_for
from tests.rawhttp import read_until_close
from tests.test_metrics import sample, scrape

pytestmark = pytest.mark.timeout(20)


def client_context(cert_files: dict[str, str], alpn: list[str]) -> ssl.SSLContext:
    context = ssl.create_default_context(cafile=cert_files["ca"])
    context.set_alpn_protocols(alpn)
    return context


def test_https_request_over_http_1_1(serve, cert_files):
    server = serve(scope_json, ssl_certfile=cert_files["cert"], ssl_keyfile=cert_files["key"])
    assert server.url.startswith("https://")
    with httpx.Client(verify=client_context(cert_files, ["http/1.1"])) as client:
        response = client.get(server.url + "/secure")
    assert response.status_code == 200
    assert response.http_version == "HTTP/1.1"
    scope = response.json()
    assert scope["scheme"] == "https"
    assert scope["path"] == "/secure"


@pytest.mark.parametrize("http", ["h1", "auto"])
def test_alpn_selects_http_1_1_for_a_client_that_offers_only_it(serve, cert_files, http):
    server = serve(scope_json, http=http, ssl_certfile=cert_files["cert"], ssl_keyfile=cert_files["key"])
    context = client_context(cert_files, ["http/1.1"])
    with (
        socket.create_connection(("127.0.0.1", server.port), timeout=5) as raw,
        context.wrap_socket(raw, server_hostname="127.0.0.1") as tls,
    ):
        assert tls.selected_alpn_protocol() == "http/1.1"
        assert tls.version() in ("TLSv1.2", "TLSv1.3")
        tls.sendall(b"GET / HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n")
        data = b""
        while chunk := tls.recv(65536):
            data += chunk
    assert data.startswith(b"HTTP/1.1 200 OK\r\n")


def test_http_h1_setting_never_negotiates_h2(serve, cert_files):
    server = serve(scope_json, http="h1", ssl_certfile=cert_files["cert"], ssl_keyfile=cert_files["key"])
    context = client_context(cert_files, ["h2", "http/1.1"])
    with (
        socket.create_connection(("127.0.0.1", server.port), timeout=5) as raw,
        context.wrap_socket(raw, server_hostname="127.0.0.1") as tls,
    ):
        assert tls.selected_alpn_protocol() == "http/1.1"


def test_client_without_alpn_gets_http_1_1(serve, cert_files):
    server = serve(scope_json, ssl_certfile=cert_files["cert"], ssl_keyfile=cert_files["key"])
    context = ssl.create_default_context(cafile=cert_files["ca"])
    with (
        socket.create_connection(("127.0.0.1", server.port), timeout=5) as raw,
        context.wrap_socket(raw, server_hostname="127.0.0.1") as tls,
    ):
        assert tls.selected_alpn_protocol() is None
        tls.sendall(b"GET / HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n")
        assert tls.recv(65536).startswith(b"HTTP/1.1 200 OK\r\n")


def test_encrypted_key_with_password(serve, cert_files):
    server = serve(
        scope_json,
        ssl_certfile=cert_files["cert"],
        ssl_keyfile=cert_files["encrypted_key"],
        ssl_keyfile_password="secret",
    )
    with httpx.Client(verify=client_context(cert_files, ["http/1.1"])) as client:
        assert client.get(server.url).json()["scheme"] == "https"


def test_wrong_key_password_is_a_config_error(cert_files):
    config = Config(
        scope_json,
        ssl_certfile=cert_files["cert"],
        ssl_keyfile=cert_files["encrypted_key"],
        ssl_keyfile_password="wrong",
    )
    with pytest.raises(ConfigError, match="Cannot load the TLS certificate or key"):
        config.load()


def test_plain_http_to_the_tls_port_gets_no_http_answer(serve, cert_files):
    server = serve(scope_json, ssl_certfile=cert_files["cert"], ssl_keyfile=cert_files["key"])
    with socket.create_connection(("127.0.0.1", server.port), timeout=5) as sock:
        sock.sendall(b"GET / HTTP/1.1\r\nHost: t\r\n\r\n")
        data, closed = read_until_close(sock)
    assert closed
    assert not data.startswith(b"HTTP/")


def test_ssl_via_the_command_line(cli, cert_files):
    process = cli(
        "tests.cli_apps:app",
        "--port",
        "0",
        "--ssl-certfile",
        cert_files["cert"],
        "--ssl-keyfile",
        cert_files["key"],
    )
    url = f"https://127.0.0.1:{process.port}/"
    with httpx.Client(verify=client_context(cert_files, ["http/1.1"])) as client:
        response = client.get(url)
    assert response.text == "ok"


# ----- failed handshakes: counted, logged, and the server serves on ----------------------------------

# A record no TLS version starts with (content type 0), then filler.
GARBAGE = b"\x00\x03\x03\x00\x10" + bytes(range(16))


def test_failed_handshakes_are_counted_logged_and_the_server_serves_on(serve, cert_files, caplog):
    caplog.set_level(logging.DEBUG, logger="celeris.error")
    server, metrics = metered(
        serve, scope_json, ssl_certfile=cert_files["cert"], ssl_keyfile=cert_files["key"], log_level="debug"
    )
    socket.create_connection(("127.0.0.1", server.port), timeout=5).close()  # a TCP probe: not a TLS failure
    for data in (b"GET / HTTP/1.1\r\nHost: t\r\n\r\n", GARBAGE):
        with socket.create_connection(("127.0.0.1", server.port), timeout=5) as sock:
            sock.sendall(data)
            answer, closed = read_until_close(sock)
        assert closed and not answer.startswith(b"HTTP/")
    untrusting = ssl.create_default_context()  # the system's CAs: the test CA is not among them
    with (
        socket.create_connection(("127.0.0.1", server.port), timeout=5) as raw,
        pytest.raises(ssl.SSLCertVerificationError),
    ):
        untrusting.wrap_socket(raw, server_hostname="127.0.0.1")
    wait_for(lambda: sample(scrape(metrics), "celeris_tls_handshake_failures_total") == 3)
    with httpx.Client(verify=client_context(cert_files, ["http/1.1"])) as client:
        assert client.get(server.url).status_code == 200
    assert sample(scrape(metrics), "celeris_tls_handshake_failures_total") == 3
    failures = [r.getMessage() for r in caplog.records if r.getMessage().startswith("TLS handshake failed")]
    assert any("HTTP_REQUEST" in line for line in failures), failures
    assert any("UNKNOWN_CA" in line for line in failures), failures
    assert all(re.match(r"TLS handshake failed with 127\.0\.0\.1:\d+: \w+", line) for line in failures), failures
