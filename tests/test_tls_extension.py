"""The ASGI `tls` extension over real TLS connections, with and without a client certificate."""

from __future__ import annotations

import json
import ssl
from typing import Any

import httpx
import pytest
import trustme
from cryptography import x509

pytestmark = pytest.mark.timeout(30)


async def tls_app(scope: dict[str, Any], receive: Any, send: Any) -> None:
    """Answers with the scope's `tls` extension as JSON (null when it is absent)."""
    if scope["type"] != "http":
        return
    body = json.dumps(scope["extensions"].get("tls")).encode()
    await send({"type": "http.response.start", "status": 200, "headers": [(b"content-type", b"application/json")]})
    await send({"type": "http.response.body", "body": body})


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """A CA, the server's certificate and a client certificate for "Alice, Example Corp"."""
    ca = trustme.CA()
    folder = tmp_path_factory.mktemp("mtls")
    server = ca.issue_cert("127.0.0.1")
    client = ca.issue_cert("alice@example.org", common_name="Alice", organization_name="Example Corp")
    paths = {name: folder / f"{name}.pem" for name in ("ca", "server_cert", "server_key", "client")}
    ca.cert_pem.write_to_path(paths["ca"])
    server.cert_chain_pems[0].write_to_path(paths["server_cert"])
    server.private_key_pem.write_to_path(paths["server_key"])
    client.private_key_and_cert_chain_pem.write_to_path(paths["client"])
    return {"paths": {k: str(v) for k, v in paths.items()}, "client": client, "server": server}


def client_context(pki: dict[str, Any], with_cert: bool) -> ssl.SSLContext:
    context = ssl.create_default_context(cafile=pki["paths"]["ca"])
    if with_cert:
        context.load_cert_chain(pki["paths"]["client"])
    return context


def tls_server(serve: Any, pki: dict[str, Any], cert_reqs: int) -> Any:
    paths = pki["paths"]
    return serve(
        tls_app,
        ssl_certfile=paths["server_cert"],
        ssl_keyfile=paths["server_key"],
        ssl_ca_certs=paths["ca"],
        ssl_cert_reqs=cert_reqs,
    )


def get_tls(url: str, context: ssl.SSLContext) -> dict[str, Any]:
    with httpx.Client(verify=context, http1=False, http2=True) as client:
        response = client.get(url + "/")
    assert response.status_code == 200 and response.http_version == "HTTP/2"
    tls: dict[str, Any] = response.json()
    return tls


def test_mutual_tls_shows_the_client_certificate_its_name_and_the_session(serve: Any, pki: dict[str, Any]) -> None:
    server = tls_server(serve, pki, ssl.CERT_REQUIRED)
    tls = get_tls(server.url, client_context(pki, with_cert=True))
    client_pem = pki["client"].cert_chain_pems[0].bytes()
    assert tls["client_cert_name"] == x509.load_pem_x509_certificate(client_pem).subject.rfc4514_string()
    assert tls["client_cert_name"].startswith("CN=Alice,") and tls["client_cert_name"].endswith(",O=Example Corp")
    assert tls["client_cert_chain"][0] == pki["client"].cert_chain_pems[0].bytes().decode()
    assert tls["client_cert_error"] is None
    assert tls["server_cert"] == pki["server"].cert_chain_pems[0].bytes().decode()
    assert tls["tls_version"] == 0x0304  # TLS 1.3, both sides' default
    assert tls["cipher_suite"] in (0x1301, 0x1302, 0x1303)  # the TLS 1.3 suites


def test_without_a_client_certificate_the_chain_is_empty(serve: Any, pki: dict[str, Any]) -> None:
    server = tls_server(serve, pki, ssl.CERT_OPTIONAL)
    tls = get_tls(server.url, client_context(pki, with_cert=False))
    assert tls["client_cert_chain"] == [] and tls["client_cert_name"] is None and tls["client_cert_error"] is None
    assert tls["tls_version"] == 0x0304 and tls["server_cert"].startswith("-----BEGIN CERTIFICATE-----")


def test_a_required_certificate_that_is_missing_fails_the_handshake_not_the_server(
    serve: Any, pki: dict[str, Any]
) -> None:
    server = tls_server(serve, pki, ssl.CERT_REQUIRED)
    with pytest.raises(httpx.TransportError), httpx.Client(verify=client_context(pki, False), http2=True) as client:
        client.get(server.url + "/")
    assert get_tls(server.url, client_context(pki, with_cert=True))["client_cert_name"].startswith("CN=Alice,")


def test_cleartext_connections_have_no_tls_extension(serve: Any) -> None:
    server = serve(tls_app, http="h2")
    with httpx.Client(http1=False, http2=True) as client:
        response = client.get(server.url + "/")
    assert response.http_version == "HTTP/2" and response.json() is None


def test_mutual_tls_over_http_1_1_shows_the_client_certificate(serve: Any, pki: dict[str, Any]) -> None:
    server = tls_server(serve, pki, ssl.CERT_REQUIRED)
    with httpx.Client(verify=client_context(pki, with_cert=True)) as client:
        response = client.get(server.url + "/")
    assert response.http_version == "HTTP/1.1" and response.json()["client_cert_name"].startswith("CN=Alice,")
