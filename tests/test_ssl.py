"""HTTPS over HTTP/1.1 with the --ssl-* settings, a trustme CA, and ALPN http/1.1."""

from __future__ import annotations

import socket
import ssl

import httpx
import pytest
import trustme
from cryptography.hazmat.primitives import serialization

from celeris_asgi.config import Config, ConfigError
from tests.apps import scope_json
from tests.rawhttp import read_until_close

pytestmark = pytest.mark.timeout(20)


@pytest.fixture(scope="module")
def ca() -> trustme.CA:
    return trustme.CA()


@pytest.fixture(scope="module")
def cert_files(ca: trustme.CA, tmp_path_factory: pytest.TempPathFactory) -> dict[str, str]:
    """certfile, keyfile, an encrypted keyfile (password "secret") and the CA bundle, as paths."""
    leaf = ca.issue_cert("127.0.0.1", "localhost")
    folder = tmp_path_factory.mktemp("tls")
    paths = {name: folder / f"{name}.pem" for name in ("cert", "key", "encrypted_key", "ca")}
    leaf.cert_chain_pems[0].write_to_path(paths["cert"])
    leaf.private_key_pem.write_to_path(paths["key"])
    ca.cert_pem.write_to_path(paths["ca"])
    key = serialization.load_pem_private_key(leaf.private_key_pem.bytes(), password=None)
    paths["encrypted_key"].write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.BestAvailableEncryption(b"secret"),
        )
    )
    return {name: str(path) for name, path in paths.items()}


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
