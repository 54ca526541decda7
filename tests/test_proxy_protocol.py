"""The PROXY protocol (HAProxy's proxy-protocol.txt, v1 section 2.1, v2 section 2.2): the parser as tables,
then the server reading it from trusted peers over real sockets."""

from __future__ import annotations

import contextlib
import json
import socket
import ssl
import struct
import time
from ipaddress import ip_address
from typing import Any, cast

import h2.config
import h2.connection
import h2.events
import httpx
import pytest

from celeris_asgi.protocols.proxy_protocol import (
    V2_SIGNATURE,
    InvalidProxyHeader,
    ProxyHeader,
    parse_proxy_header,
)
from tests.apps import scope_json
from tests.rawhttp import connect, exchange, read_responses, read_until_close
from tests.test_ssl import client_context


def v2(
    command: int = 1, family: int = 1, transport: int = 1, addresses: bytes = b"", tlvs: bytes = b"", version: int = 2
) -> bytes:
    """A v2 header: signature, version/command, family/transport, length, then addresses and TLVs."""
    body = addresses + tlvs
    return V2_SIGNATURE + bytes([version << 4 | command, family << 4 | transport]) + struct.pack("!H", len(body)) + body


IPV4 = (
    socket.inet_pton(socket.AF_INET, "192.0.2.10")
    + socket.inet_pton(socket.AF_INET, "10.0.0.1")
    + struct.pack("!HH", 56324, 443)
)
IPV6 = (
    socket.inet_pton(socket.AF_INET6, "2001:db8::1")
    + socket.inet_pton(socket.AF_INET6, "2001:db8::2")
    + struct.pack("!HH", 1234, 80)
)
TLV_ALPN = b"\x01\x00\x02h2"  # PP2_TYPE_ALPN, skipped
V2_TCP4 = v2(addresses=IPV4, tlvs=TLV_ALPN)
V1_TCP4 = b"PROXY TCP4 192.0.2.10 10.0.0.1 56324 443\r\n"

PARSED = [
    ("v1", V1_TCP4, ("192.0.2.10", 56324), ("10.0.0.1", 443)),
    ("v1", b"PROXY TCP6 2001:db8::1 2001:db8::2 1234 80\r\n", ("2001:db8::1", 1234), ("2001:db8::2", 80)),
    # an IPv4-mapped address, in the form this Python's ipaddress writes it (3.13 changed the spelling)
    ("v1", b"PROXY TCP6 ::ffff:192.0.2.1 ::1 0 65535\r\n", (str(ip_address("::ffff:192.0.2.1")), 0), ("::1", 65535)),
    ("v1", b"PROXY UNKNOWN\r\n", None, None),
    ("v1", b"PROXY UNKNOWN ffff:f...f:ffff ffff:f...f:ffff 65535 65535\r\n", None, None),
    ("v2", V2_TCP4, ("192.0.2.10", 56324), ("10.0.0.1", 443)),
    ("v2", v2(family=2, addresses=IPV6), ("2001:db8::1", 1234), ("2001:db8::2", 80)),
    ("v2", v2(command=0, family=0, transport=0), None, None),  # LOCAL: the proxy's own health check
    ("v2", v2(command=0, addresses=IPV4), None, None),  # LOCAL ignores any address block
    ("v2", v2(family=0, transport=0, tlvs=TLV_ALPN), None, None),  # PROXY UNSPEC
    ("v2", v2(family=3, addresses=bytes(216)), None, None),  # AF_UNIX: no IP to show
]


@pytest.mark.parametrize(("version", "header", "client", "server"), PARSED)
def test_a_complete_header_gives_its_addresses_and_length(version, header, client, server):
    request = b"GET / HTTP/1.1\r\nHost: x\r\n\r\n"
    assert parse_proxy_header(header + request, version) == ProxyHeader(client, server, len(header))


@pytest.mark.parametrize(("version", "header"), [(row[0], row[1]) for row in PARSED])
def test_every_prefix_of_a_header_needs_more(version, header):
    for end in range(len(header)):
        assert parse_proxy_header(header[:end], version) is None, header[:end]


INVALID = [
    ("v1", b"GET / HTTP/1.1\r\n\r\n", "not a PROXY v1"),
    ("v1", b"proxy TCP4 1.2.3.4 5.6.7.8 1 2\r\n", "not a PROXY v1"),
    ("v1", V2_TCP4, "not a PROXY v1"),
    ("v1", b"PROXY TCP5 1.2.3.4 5.6.7.8 1 2\r\n", "TCP4|TCP6"),
    ("v1", b"PROXY TCP4 1.2.3.4 5.6.7.8 1\r\n", "four fields"),
    ("v1", b"PROXY TCP4 1.2.3.4  5.6.7.8 1 2\r\n", "four fields"),  # one space between fields
    ("v1", b"PROXY TCP4 1.2.3.4 5.6.7.8 1 2 3\r\n", "four fields"),
    ("v1", b"PROXY TCP4 256.2.3.4 5.6.7.8 1 2\r\n", "bad address"),
    ("v1", b"PROXY TCP4 01.2.3.4 5.6.7.8 1 2\r\n", "bad address"),
    ("v1", b"PROXY TCP4 2001:db8::1 5.6.7.8 1 2\r\n", "bad address"),
    ("v1", b"PROXY TCP6 1.2.3.4 ::1 1 2\r\n", "bad address"),
    ("v1", b"PROXY TCP4 1.2.3.4 5.6.7.8 65536 2\r\n", "bad port"),
    ("v1", b"PROXY TCP4 1.2.3.4 5.6.7.8 080 2\r\n", "bad port"),
    ("v1", b"PROXY TCP4 1.2.3.4 5.6.7.8 -1 2\r\n", "bad port"),
    ("v1", b"PROXY TCP4 1.2.3.4 5.6.7.8 1 2\n", "must end with CRLF"),
    ("v1", b"PROXY UNKNOWN " + b"x" * 120, "longer than 107"),
    ("v2", V1_TCP4, "not a PROXY v2"),
    ("v2", b"\r\n\r\n\x00\r\nQUIx" + bytes(8), "not a PROXY v2"),
    ("v2", v2(version=1, addresses=IPV4), "version other than 2"),
    ("v2", v2(command=2, addresses=IPV4), "unknown command 2"),
    ("v2", v2(family=4, addresses=IPV4), "unknown family"),
    ("v2", v2(transport=3, addresses=IPV4), "unknown family"),
    ("v2", v2(transport=2, addresses=IPV4), "datagram"),
    ("v2", v2(addresses=IPV4[:11]), "shorter than its family"),
    ("v2", v2(family=2, addresses=IPV4), "shorter than its family"),
]


@pytest.mark.parametrize(("version", "data", "reason"), INVALID)
def test_an_invalid_header_is_refused(version, data, reason):
    with pytest.raises(InvalidProxyHeader, match=reason.replace("|", r"\|")):
        parse_proxy_header(data, version)


def test_only_v1_and_v2_exist():
    with pytest.raises(ValueError, match="v1 or v2"):
        parse_proxy_header(V1_TCP4, "v3")


# ----- wired into the server: real sockets -----------------------------------------------------

V2_TCP6 = v2(family=2, addresses=IPV6)
V1_TCP6 = b"PROXY TCP6 2001:db8::1 2001:db8::2 1234 80\r\n"
REQUEST = b"GET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"
SHOWN = [
    ("v1", V1_TCP4, ["192.0.2.10", 56324], ["10.0.0.1", 443]),
    ("v1", V1_TCP6, ["2001:db8::1", 1234], ["2001:db8::2", 80]),
    ("v2", V2_TCP4, ["192.0.2.10", 56324], ["10.0.0.1", 443]),
    ("v2", V2_TCP6, ["2001:db8::1", 1234], ["2001:db8::2", 80]),
]


def scope_over_http1(port: int, data: bytes, dribble: bool = False) -> dict[str, Any]:
    with connect(port) as sock:
        if dribble:
            for index in range(len(data)):
                sock.sendall(data[index : index + 1])
        else:
            sock.sendall(data)
        (response,) = read_responses(sock, 1)
    assert response.status == 200, response
    return cast(dict[str, Any], json.loads(response.body))


def scope_over_h2c(port: int, header: bytes) -> dict[str, Any]:
    """A prior-knowledge HTTP/2 request after the PROXY header; the JSON body of its answer."""
    with connect(port) as sock:
        return scope_over_h2(sock, "http", header)


def scope_over_h2(stream: socket.socket | TLSOverBIO, scheme: str, header: bytes = b"") -> dict[str, Any]:
    """An HTTP/2 request on `stream` (after `header`, if any); the JSON body of its answer."""
    client = h2.connection.H2Connection(h2.config.H2Configuration(client_side=True, header_encoding="utf-8"))
    client.initiate_connection()
    client.send_headers(1, [(":method", "GET"), (":path", "/"), (":scheme", scheme), (":authority", "x")], True)
    body = b""
    stream.sendall(header + client.data_to_send())
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline:
        chunk = stream.recv(65536)
        assert chunk, "closed before the answer"
        for event in client.receive_data(chunk):
            if isinstance(event, h2.events.DataReceived):
                body += event.data
                client.acknowledge_received_data(event.flow_controlled_length, 1)
            elif isinstance(event, h2.events.StreamEnded):
                return cast(dict[str, Any], json.loads(body))
        stream.sendall(client.data_to_send())
    raise AssertionError("no HTTP/2 answer in time")


@pytest.mark.timeout(20)
@pytest.mark.parametrize(("version", "header", "client", "server"), SHOWN)
def test_a_trusted_peers_header_sets_the_scopes_addresses_over_http1_and_h2c(serve, version, header, client, server):
    running = serve(scope_json, proxy_protocol=version, forwarded_allow_ips="127.0.0.1")
    for scope in (scope_over_http1(running.port, header + REQUEST), scope_over_h2c(running.port, header)):
        assert (scope["client"], scope["server"]) == (client, server)


@pytest.mark.timeout(20)
@pytest.mark.parametrize("version", ["v1", "v2"])
def test_a_header_dribbled_byte_by_byte_is_read_whole(serve, version):
    header = V1_TCP4 if version == "v1" else V2_TCP4
    running = serve(scope_json, proxy_protocol=version, forwarded_allow_ips="127.0.0.1")
    scope = scope_over_http1(running.port, header + REQUEST, dribble=True)
    assert scope["client"] == ["192.0.2.10", 56324]


@pytest.mark.timeout(20)
def test_a_local_header_keeps_the_sockets_own_addresses(serve):
    running = serve(scope_json, proxy_protocol="v2", forwarded_allow_ips="127.0.0.1")
    scope = scope_over_http1(running.port, v2(command=0, family=0, transport=0) + REQUEST)
    assert scope["client"][0] == "127.0.0.1"
    assert scope["server"] == ["127.0.0.1", running.port]


@pytest.mark.timeout(20)
@pytest.mark.parametrize(
    ("version", "header", "answer"),
    # v1's line reads as a request line naming another protocol than HTTP: closed unanswered, as any such
    [("v1", V1_TCP4, b""), ("v2", V2_TCP4, b"HTTP/1.1 400 ")],
)
def test_an_untrusted_peers_header_is_not_read_and_its_request_is_refused(serve, version, header, answer):
    running = serve(scope_json, proxy_protocol=version, forwarded_allow_ips="192.0.2.99")
    data, closed = exchange(running.port, header + REQUEST)
    assert closed and data.startswith(answer) and (data == b"") == (answer == b""), data[:100]


@pytest.mark.timeout(20)
@pytest.mark.parametrize(
    ("version", "data"),
    [("v1", b"PROXY TCP4 256.0.0.1 10.0.0.1 1 2\r\n" + REQUEST), ("v1", REQUEST), ("v2", V1_TCP4 + REQUEST)],
)
def test_a_malformed_header_from_a_trusted_peer_closes_without_an_answer(serve, version, data):
    running = serve(scope_json, proxy_protocol=version, forwarded_allow_ips="127.0.0.1")
    answer, closed = exchange(running.port, data)
    assert (answer, closed) == (b"", True)


@pytest.mark.timeout(30)
@pytest.mark.parametrize("before_tls", [False, True], ids=["plain", "before-tls"])
def test_a_header_that_never_completes_is_closed_at_the_header_timeout(serve, cert_files, before_tls):
    if before_tls:
        running = tls_server(serve, cert_files, "v1", timeout_request_header=0.5)
    else:
        running = serve(scope_json, proxy_protocol="v1", forwarded_allow_ips="127.0.0.1", timeout_request_header=0.5)
    started = time.monotonic()
    with connect(running.port) as sock:
        sock.sendall(V1_TCP4[:20])
        answer, closed = read_until_close(sock, timeout=8)
    assert (answer, closed) == (b"", True)
    assert 0.4 <= time.monotonic() - started < 6


# ----- the PROXY header before TLS (protocols/tls.py) ----------------------------------------------------


class TLSOverBIO:
    """A TLS client on a connected socket through memory BIOs, so the bytes before the handshake (the
    PROXY header) can share one TCP write with the ClientHello, as a proxy's first packet often does."""

    def __init__(self, sock: socket.socket, context: ssl.SSLContext) -> None:
        self.sock = sock
        self.incoming, self.outgoing = ssl.MemoryBIO(), ssl.MemoryBIO()
        self.tls = context.wrap_bio(self.incoming, self.outgoing, server_hostname="127.0.0.1")

    def handshake(self, header: bytes, same_write: bool) -> None:
        with contextlib.suppress(ssl.SSLWantReadError):
            self.tls.do_handshake()
        hello = self.outgoing.read()
        if same_write:
            self.sock.sendall(header + hello)
        else:
            self.sock.sendall(header)
            time.sleep(0.05)  # the header alone first: the server reads it before the ClientHello comes
            self.sock.sendall(hello)
        while True:
            try:
                self.tls.do_handshake()
                break
            except ssl.SSLWantReadError:
                self.flush()
                chunk = self.sock.recv(65536)
                if not chunk:
                    raise ConnectionAbortedError("closed during the handshake") from None
                self.incoming.write(chunk)
        self.flush()

    def flush(self) -> None:
        if self.outgoing.pending:
            self.sock.sendall(self.outgoing.read())

    def sendall(self, data: bytes) -> None:
        self.tls.write(data)
        self.flush()

    def recv(self, size: int) -> bytes:
        """Up to `size` decrypted bytes; b"" once the server closed."""
        while True:
            try:
                return self.tls.read(size)
            except ssl.SSLWantReadError:
                chunk = self.sock.recv(65536)
                if not chunk:
                    return b""
                self.incoming.write(chunk)
            except ssl.SSLZeroReturnError:
                return b""

    def settimeout(self, timeout: float) -> None:
        self.sock.settimeout(timeout)


def tls_server(
    serve: Any, cert_files: dict[str, str], version: str, trusted: str = "127.0.0.1", **settings: Any
) -> Any:
    return serve(
        scope_json,
        proxy_protocol=version,
        forwarded_allow_ips=trusted,
        ssl_certfile=cert_files["cert"],
        ssl_keyfile=cert_files["key"],
        **settings,
    )


def scope_over_tls(port: int, cert_files: dict[str, str], alpn: str, header: bytes, same_write: bool) -> dict[str, Any]:
    """One request over TLS (HTTP/1.1 or HTTP/2, by ALPN) after `header`; the scope the app saw."""
    with connect(port) as sock:
        client = TLSOverBIO(sock, client_context(cert_files, [alpn]))
        client.handshake(header, same_write)
        assert client.tls.selected_alpn_protocol() == alpn
        if alpn == "h2":
            return scope_over_h2(client, "https")
        client.sendall(REQUEST)
        (response,) = read_responses(cast(socket.socket, client), 1)
    assert response.status == 200, response
    return cast(dict[str, Any], json.loads(response.body))


@pytest.mark.timeout(30)
@pytest.mark.parametrize(("version", "header"), [("v1", V1_TCP4), ("v2", V2_TCP4)], ids=["v1", "v2"])
@pytest.mark.parametrize("same_write", [True, False], ids=["hello-with-header", "hello-later"])
@pytest.mark.parametrize("alpn", ["http/1.1", "h2"])
def test_a_trusted_peers_header_before_tls_sets_the_scopes_addresses(
    serve, cert_files, version, header, same_write, alpn
):
    running = tls_server(serve, cert_files, version)
    scope = scope_over_tls(running.port, cert_files, alpn, header, same_write)
    assert (scope["client"], scope["server"], scope["scheme"]) == (["192.0.2.10", 56324], ["10.0.0.1", 443], "https")
    assert scope["http_version"] == ("2" if alpn == "h2" else "1.1")


@pytest.mark.timeout(30)
@pytest.mark.parametrize("alpn", ["http/1.1", "h2"])
def test_proxy_then_tls_on_the_asyncio_loop(serve, cert_files, alpn):
    """Without uvloop the same path runs on asyncio's own SSL protocol (--loop asyncio)."""
    running = tls_server(serve, cert_files, "v2", loop="asyncio")
    scope = scope_over_tls(running.port, cert_files, alpn, V2_TCP4, same_write=True)
    assert scope["client"] == ["192.0.2.10", 56324]


@pytest.mark.timeout(30)
def test_an_untrusted_peer_on_a_proxy_tls_port_starts_tls_at_once(serve, cert_files):
    running = tls_server(serve, cert_files, "v2", trusted="192.0.2.99")
    with httpx.Client(verify=client_context(cert_files, ["http/1.1"])) as client:
        scope = client.get(running.url).json()
    assert scope["client"][0] == "127.0.0.1" and scope["scheme"] == "https"


@pytest.mark.timeout(30)
@pytest.mark.parametrize(
    ("version", "header"),
    [("v1", b"PROXY TCP4 256.0.0.1 10.0.0.1 1 2\r\n"), ("v2", V1_TCP4), ("v1", b"")],
    ids=["bad-address", "wrong-version", "missing"],
)
def test_a_bad_or_missing_header_before_tls_closes_the_connection(serve, cert_files, version, header):
    running = tls_server(serve, cert_files, version)
    with connect(running.port) as sock:
        client = TLSOverBIO(sock, client_context(cert_files, ["http/1.1"]))
        with pytest.raises(ConnectionError):  # closed (or reset) before a byte of the handshake came back
            client.handshake(header, same_write=True)
    good_header = V1_TCP4 if version == "v1" else V2_TCP4
    assert scope_over_tls(running.port, cert_files, "http/1.1", good_header, True)["client"] == ["192.0.2.10", 56324]
