"""HTTP/2 end to end: a real server on 127.0.0.1, real clients (httpx, curl, h2 on a socket, h2load)."""

from __future__ import annotations

import asyncio
import base64
import json
import os
import shutil
import socket
import ssl
import subprocess
import threading
import time
from collections import defaultdict
from typing import Any

import h2.config
import h2.connection
import h2.events
import hpack
import httpx
import pytest
import trustme
from hyperframe.frame import DataFrame, GoAwayFrame, PingFrame, SettingsFrame

from celeris_asgi.protocols.http2 import frames as f
from tests.http2.h2util import PREFACE, H2Socket, frame, parse_frames, settings_payload
from tests.rawhttp import connect, read_responses

pytestmark = pytest.mark.timeout(30)

SEEN: list[Any] = []  # what the app observed, for tests to inspect (the server runs on a thread)
STARTED: defaultdict[str, threading.Event] = defaultdict(threading.Event)  # path -> the app is handling it


async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
    if scope["type"] != "http":
        return
    path = scope["path"][len(scope["root_path"]) :]

    async def respond(body: bytes, status: int = 200, headers: Any = ()) -> None:
        await send({"type": "http.response.start", "status": status, "headers": [*headers]})
        await send({"type": "http.response.body", "body": body})

    async def read_body() -> bytes:
        body = b""
        while True:
            message = await receive()
            if message["type"] == "http.disconnect":
                SEEN.append(("disconnect", path))
                return body
            body += message["body"]
            if not message["more_body"]:
                return body

    if path == "/echo":
        await respond(await read_body(), headers=[(b"content-type", b"application/octet-stream")])
    elif path.startswith("/scope"):
        view = {k: v for k, v in scope.items() if k not in ("state", "extensions", "headers", "raw_path", "asgi")}
        view["query_string"] = scope["query_string"].decode()
        view["headers"] = [[k.decode(), v.decode()] for k, v in scope["headers"]]
        view["extensions"] = sorted(scope["extensions"])
        await respond(json.dumps(view).encode())
    elif path == "/wait-disconnect":
        STARTED[path].set()
        while (await receive())["type"] != "http.disconnect":
            pass
        SEEN.append(("disconnect", path))
    elif path == "/trailers":
        await send({"type": "http.response.start", "status": 200, "headers": [], "trailers": True})
        await send({"type": "http.response.body", "body": b"data", "more_body": False})
        await send({"type": "http.response.trailers", "headers": [(b"x-checksum", b"42")]})
    elif path == "/hints":
        await send({"type": "http.response.early_hint", "links": [b"</style.css>; rel=preload; as=style"]})
        await respond(b"after hints")
    elif path == "/big":
        await send({"type": "http.response.start", "status": 200, "headers": []})
        for _ in range(16):
            await send({"type": "http.response.body", "body": b"x" * 65536, "more_body": True})
        await send({"type": "http.response.body", "body": b""})
        SEEN.append(("big done", path))
    elif path == "/stuck":
        await send({"type": "http.response.start", "status": 200, "headers": []})
        try:
            await send({"type": "http.response.body", "body": b"x" * 100, "more_body": True})
            await send({"type": "http.response.body", "body": b"x" * 100})
        except OSError:
            SEEN.append(("send failed", path))
            raise
    elif path == "/slow":
        STARTED[path].set()
        await asyncio.sleep(0.5)
        await respond(b"slow done")
    elif path == "/lazy-reader":
        await asyncio.sleep(0.5)
        body = await read_body()
        await respond(str(len(body)).encode())
    elif path == "/boom":
        raise RuntimeError("boom")
    elif path == "/boom-late":
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": b"partial", "more_body": True})
        raise RuntimeError("boom late")
    else:
        await respond(b"Hello, HTTP/2", headers=[(b"content-type", b"text/plain")])


@pytest.fixture(autouse=True)
def _clear_seen() -> None:
    SEEN.clear()
    STARTED.clear()


def started(path: str) -> None:
    """Wait until the app is handling ``path``."""
    assert STARTED[path].wait(10), f"the app never started {path}"


def h2_client(**kwargs: Any) -> httpx.Client:
    return httpx.Client(http1=False, http2=True, timeout=10, **kwargs)


def wait_for(condition: Any, timeout: float = 5.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise TimeoutError
        time.sleep(0.02)


def test_httpx_prior_knowledge_get(serve):
    server = serve(app)
    with h2_client() as client:
        response = client.get(server.url + "/")
    assert response.http_version == "HTTP/2"
    assert response.text == "Hello, HTTP/2"
    assert response.headers["server"] == "celeris"
    assert "GMT" in response.headers["date"]
    assert "connection" not in response.headers


def test_scope_is_the_http_scope_with_version_2(serve):
    server = serve(app, root_path="/api")
    with h2_client() as client:
        scope = client.get(server.url + "/scope/a%20b?x=1", headers={"x-thing": "v"}).json()
    assert scope["http_version"] == "2"
    assert scope["method"] == "GET"
    assert scope["scheme"] == "http"
    assert scope["path"] == "/api/scope/a b"
    assert scope["root_path"] == "/api"
    assert scope["query_string"] == "x=1"
    assert scope["headers"][0] == ["host", f"127.0.0.1:{server.port}"]
    assert ["x-thing", "v"] in scope["headers"]
    assert not any(name.startswith(":") for name, _ in scope["headers"])
    assert "http.response.trailers" in scope["extensions"]


def test_large_bodies_both_ways_through_flow_control(serve):
    server = serve(app)
    body = bytes(range(256)) * 8192  # 2 MB: many windows' worth in each direction
    with h2_client() as client:
        response = client.post(server.url + "/echo", content=body)
        assert response.content == body
        assert len(client.get(server.url + "/big").content) == 16 * 65536


def test_many_concurrent_streams_on_one_connection(serve):
    server = serve(app)

    async def main() -> list[httpx.Response]:
        async with httpx.AsyncClient(http1=False, http2=True, timeout=10) as client:
            return await asyncio.gather(*(client.post(server.url + "/echo", content=b"%d" % i) for i in range(200)))

    responses = asyncio.run(main())
    assert [r.content for r in responses] == [b"%d" % i for i in range(200)]
    assert {r.http_version for r in responses} == {"HTTP/2"}


@pytest.fixture(scope="module")
def tls() -> dict[str, Any]:
    ca = trustme.CA()
    cert = ca.issue_cert("127.0.0.1", "localhost")
    stack = {"ca": ca, "cert": cert}
    key_file = cert.private_key_pem.tempfile()
    cert_file = cert.cert_chain_pems[0].tempfile()
    ca_file = ca.cert_pem.tempfile()
    stack["files"] = (key_file.__enter__(), cert_file.__enter__(), ca_file.__enter__())
    yield stack
    for handle in (key_file, cert_file, ca_file):
        handle.__exit__(None, None, None)


def test_tls_alpn_h2_and_http11_on_one_port(serve, tls):
    key, cert, ca = tls["files"]
    server = serve(app, ssl_keyfile=key, ssl_certfile=cert)
    context = ssl.create_default_context(cafile=ca)
    with httpx.Client(http2=True, verify=context, timeout=10) as client:
        response = client.get(server.url + "/scope")
        assert response.http_version == "HTTP/2"
        assert response.json()["scheme"] == "https"
    with httpx.Client(http2=False, verify=context, timeout=10) as client:
        assert client.get(server.url + "/").http_version == "HTTP/1.1"


def needs_tool(name: str) -> pytest.MarkDecorator:
    """Skip where `name` is not installed, except under CI=true (.ci/run installs it): a missing tool fails there,
    so the test count is the same on every machine that runs .ci/run."""
    missing = shutil.which(name) is None and os.environ.get("CI") != "true"
    return pytest.mark.skipif(missing, reason=f"{name} not installed")


curl = needs_tool("curl")


@curl
def test_curl_prior_knowledge(serve):
    server = serve(app)
    out = subprocess.run(
        ["curl", "-s", "--http2-prior-knowledge", "-w", "|%{http_version}", "-d", "hi", server.url + "/echo"],
        capture_output=True,
        timeout=10,
    )
    assert out.stdout == b"hi|2"


@curl
@pytest.mark.parametrize("body", [None, b"upgrade with a body"])
def test_rfc7540_3_2_curl_h2c_upgrade(serve, body):
    server = serve(app)
    command = ["curl", "-s", "--http2", "-w", "|%{http_version}", server.url + "/echo"]
    if body is not None:
        command[1:1] = ["--data-binary", body.decode()]
    out = subprocess.run(command, capture_output=True, timeout=10)
    assert out.stdout == (body or b"") + b"|2"


@curl
def test_curl_over_tls_negotiates_h2(serve, tls):
    key, cert, ca = tls["files"]
    server = serve(app, ssl_keyfile=key, ssl_certfile=cert)
    out = subprocess.run(
        ["curl", "-s", "--http2", "--cacert", ca, "-w", "|%{http_version}", server.url + "/"],
        capture_output=True,
        timeout=10,
    )
    assert out.stdout == b"Hello, HTTP/2|2"


def test_h2c_upgrade_request_with_body_becomes_stream_1_on_a_raw_socket(serve):
    server = serve(app)
    settings = base64.urlsafe_b64encode(settings_payload(max_frame_size=16384)).rstrip(b"=")
    request = (
        b"POST /echo HTTP/1.1\r\nHost: a\r\nConnection: Upgrade, HTTP2-Settings\r\nUpgrade: h2c\r\n"
        b"HTTP2-Settings: " + settings + b"\r\nContent-Length: 5\r\n\r\nhello"
    )
    with socket.create_connection(("127.0.0.1", server.port), timeout=5) as sock:
        sock.sendall(request)
        head = b""
        while b"\r\n\r\n" not in head:
            head += sock.recv(1)
        assert head.startswith(b"HTTP/1.1 101 ")
        client = h2.connection.H2Connection(h2.config.H2Configuration(client_side=True, header_encoding=None))
        client.initiate_upgrade_connection()
        sock.sendall(client.data_to_send())
        body = b""
        ended = False
        while not ended:
            for event in client.receive_data(sock.recv(65536)):
                if isinstance(event, h2.events.DataReceived):
                    body += event.data
                ended |= isinstance(event, h2.events.StreamEnded)
            sock.sendall(client.data_to_send())
    assert body == b"hello"


def test_rst_stream_disconnects_only_that_request(serve):
    server = serve(app)
    conn = H2Socket(server.port)
    waiting = conn.request("/wait-disconnect")
    other = conn.request("/slow")
    started("/wait-disconnect")
    conn.conn.reset_stream(waiting, f.CANCEL)
    conn.flush()
    conn.receive(conn.ended(other))
    assert conn.body(other) == b"slow done"
    wait_for(lambda: ("disconnect", "/wait-disconnect") in SEEN)
    conn.close()


def test_response_trailers_and_early_hints(serve):
    server = serve(app)
    conn = H2Socket(server.port)
    trailers = conn.request("/trailers")
    hints = conn.request("/hints")
    conn.receive(lambda ev: conn.ended(trailers)(ev) and conn.ended(hints)(ev))
    assert conn.body(trailers) == b"data"
    assert conn.of(h2.events.TrailersReceived, trailers)[0].headers == [(b"x-checksum", b"42")]
    (info,) = conn.of(h2.events.InformationalResponseReceived, hints)
    assert (b":status", b"103") in info.headers
    assert (b"link", b"</style.css>; rel=preload; as=style") in info.headers
    assert conn.body(hints) == b"after hints"
    conn.close()


def test_send_waits_for_a_slow_readers_window(serve):
    server = serve(app)
    conn = H2Socket(server.port, settings={f.SETTINGS_INITIAL_WINDOW_SIZE: 1000})
    sid = conn.request("/big")
    conn.receive(conn.ended(sid), timeout=15)
    assert len(conn.body(sid)) == 16 * 65536
    # The app's last send may wait for the drain: the client can hold the whole body before it resumes.
    wait_for(lambda: ("big done", "/big") in SEEN)
    conn.close()


def test_send_timeout_resets_a_stream_whose_window_never_opens(serve):
    server = serve(app, timeout_send=0.5)
    conn = H2Socket(server.port, settings={f.SETTINGS_INITIAL_WINDOW_SIZE: 0})
    sid = conn.request("/stuck")
    started = time.monotonic()
    conn.receive(conn.ended(sid), timeout=5, ack=False)
    assert conn.of(h2.events.StreamReset, sid)[0].error_code == f.CANCEL
    assert time.monotonic() - started < 3
    wait_for(lambda: ("send failed", "/stuck") in SEEN)
    conn.close()


def test_request_body_backpressure_is_the_stream_window(serve):
    server = serve(app, h2_initial_window_size=65535)
    conn = H2Socket(server.port)
    sid = conn.conn.get_next_available_stream_id()
    conn.conn.send_headers(
        sid, [(":method", "POST"), (":path", "/lazy-reader"), (":scheme", "http"), (":authority", "a")]
    )
    for size in (16384, 16384, 16384, 16383):  # exactly the stream window: then the client must wait
        conn.conn.send_data(sid, b"x" * size)
    conn.flush()
    assert conn.conn.local_flow_control_window(sid) == 0
    conn.receive(lambda ev: conn.of(h2.events.WindowUpdated, sid), timeout=5)  # the app read: window reopens
    conn.conn.send_data(sid, b"y" * 1000, end_stream=True)
    conn.flush()
    conn.receive(conn.ended(sid))
    assert conn.body(sid) == b"66535"
    conn.close()


def test_app_errors_become_500_or_a_reset(serve):
    server = serve(app)
    conn = H2Socket(server.port)
    early = conn.request("/boom")
    late = conn.request("/boom-late")
    conn.receive(lambda ev: conn.ended(early)(ev) and conn.ended(late)(ev))
    assert (b":status", b"500") in conn.of(h2.events.ResponseReceived, early)[0].headers
    assert conn.of(h2.events.StreamReset, late)[0].error_code == f.INTERNAL_ERROR
    conn.close()


def test_protocol_error_closes_only_that_connection(serve):
    server = serve(app)
    bad = H2Socket(server.port)
    bad.sock.sendall(b"\x00\x00\x08\x06\x00\x00\x00\x00\x01" + b"\x00" * 8)  # PING on stream 1
    events = bad.receive(lambda ev: bad.of(h2.events.ConnectionTerminated))
    assert bad.of(h2.events.ConnectionTerminated)[0].error_code == f.PROTOCOL_ERROR
    assert events
    bad.close()
    with h2_client() as client:
        assert client.get(server.url + "/").status_code == 200


def test_graceful_shutdown_finishes_in_flight_streams_with_two_goaways(serve):
    """Raw frames: the h2 client stops reading at the first GOAWAY, but the dance needs a PING ACK."""
    server = serve(app)
    with socket.create_connection(("127.0.0.1", server.port), timeout=5) as sock:
        request = hpack.Encoder().encode([(":method", "GET"), (":path", "/slow"), (":scheme", "http")])
        sock.sendall(PREFACE + frame(f.SETTINGS, 0, 0) + frame(f.HEADERS, 5, 1, request))
        started("/slow")
        server.server.should_exit = True
        frames = []
        buffer = b""
        while True:
            chunk = sock.recv(65536)
            if not chunk:
                break
            buffer += chunk
            while len(buffer) >= 9 and len(buffer) >= 9 + int.from_bytes(buffer[:3], "big"):
                size = 9 + int.from_bytes(buffer[:3], "big")
                (fr,) = parse_frames(buffer[:size])
                buffer = buffer[size:]
                frames.append(fr)
                if isinstance(fr, PingFrame) and "ACK" not in fr.flags:
                    sock.sendall(frame(f.PING, f.FLAG_ACK, 0, fr.opaque_data))
                if isinstance(fr, SettingsFrame) and "ACK" not in fr.flags:
                    sock.sendall(frame(f.SETTINGS, f.FLAG_ACK, 0))
    goaways = [fr for fr in frames if isinstance(fr, GoAwayFrame)]
    assert [(g.last_stream_id, g.error_code) for g in goaways] == [(f.STREAM_ID_MASK, 0), (1, 0)]
    body = b"".join(fr.data for fr in frames if isinstance(fr, DataFrame))
    assert body == b"slow done"
    server.thread.join(10)


def test_idle_connection_is_closed_after_keep_alive_timeout(serve):
    server = serve(app, timeout_keep_alive=0.5)
    conn = H2Socket(server.port)
    conn.receive(lambda ev: conn.of(h2.events.ConnectionTerminated), timeout=5)
    assert conn.of(h2.events.ConnectionTerminated)[0].error_code == f.NO_ERROR
    conn.close()


def test_limit_concurrency_answers_503(serve):
    server = serve(app, limit_concurrency=1)
    conn = H2Socket(server.port)
    slow = conn.request("/slow")
    started("/slow")
    refused = conn.request("/")
    conn.receive(lambda ev: conn.ended(slow)(ev) and conn.ended(refused)(ev))
    assert (b":status", b"503") in conn.of(h2.events.ResponseReceived, refused)[0].headers
    conn.close()


@needs_tool("h2load")
def test_h2load_smoke(serve):
    server = serve(app)
    out = subprocess.run(
        ["h2load", "-n", "3000", "-c", "4", "-m", "10", server.url + "/"], capture_output=True, timeout=30
    )
    assert b"3000 succeeded" in out.stdout, out.stdout.decode()


def test_limit_request_body_answers_413_by_content_length_and_by_counting(serve):
    server = serve(app, limit_request_body=1000)
    conn = H2Socket(server.port)
    declared = conn.request("/echo", "POST", b"x" * 2000, headers=[("content-length", "2000")])
    streamed = conn.request("/echo", "POST", b"x" * 2000)
    fine = conn.request("/echo", "POST", b"y" * 1000)
    conn.receive(lambda ev: all(conn.ended(sid)(ev) for sid in (declared, streamed, fine)))
    for sid in (declared, streamed):
        assert (b":status", b"413") in conn.of(h2.events.ResponseReceived, sid)[0].headers
    assert conn.body(fine) == b"y" * 1000
    conn.close()


def test_stalled_request_body_answers_408(serve):
    server = serve(app, timeout_request_body=0.5)
    conn = H2Socket(server.port)
    sid = conn.conn.get_next_available_stream_id()
    conn.conn.send_headers(sid, [(":method", "POST"), (":path", "/echo"), (":scheme", "http"), (":authority", "a")])
    conn.conn.send_data(sid, b"start")
    conn.flush()
    conn.receive(conn.ended(sid), timeout=5)
    assert (b":status", b"408") in conn.of(h2.events.ResponseReceived, sid)[0].headers
    wait_for(lambda: ("disconnect", "/echo") in SEEN)
    conn.close()


def test_plain_connect_gets_405_and_a_non_ascii_path_400(serve):
    server = serve(app)
    conn = H2Socket(server.port)
    connect = conn.conn.get_next_available_stream_id()
    conn.conn.send_headers(connect, [(":method", "CONNECT"), (":authority", "example.com:443")], end_stream=True)
    conn.flush()
    bad_path = conn.request("/caf\xe9".encode("latin-1").decode("latin-1"))
    conn.receive(lambda ev: conn.ended(connect)(ev) and conn.ended(bad_path)(ev))
    assert (b":status", b"405") in conn.of(h2.events.ResponseReceived, connect)[0].headers
    assert (b":status", b"400") in conn.of(h2.events.ResponseReceived, bad_path)[0].headers
    conn.close()


@curl
@pytest.mark.parametrize(
    "payload",
    [
        settings_payload(enable_push=2),
        settings_payload(max_frame_size=16383),
        settings_payload(initial_window_size=2**31),
    ],
    ids=["enable_push=2", "max_frame_size_too_small", "initial_window_too_large"],
)
def test_h2c_upgrade_with_an_out_of_range_setting_is_declined_and_served_as_http1(serve, payload):
    """RFC 9113 6.5.2 forbids these values; the upgrade is declined (RFC 9110 7.8) instead of the
    connection dropping unanswered, so the request and the one pipelined after it are answered."""
    server = serve(app)
    settings = base64.urlsafe_b64encode(payload).rstrip(b"=")
    upgrade = (
        b"POST /echo HTTP/1.1\r\nHost: a\r\nConnection: Upgrade, HTTP2-Settings\r\nUpgrade: h2c\r\n"
        b"HTTP2-Settings: " + settings + b"\r\nContent-Length: 5\r\n\r\nhello"
    )
    pipelined = b"POST /echo HTTP/1.1\r\nHost: a\r\nContent-Length: 5\r\n\r\nagain"
    with connect(server.port) as sock:
        sock.sendall(upgrade + pipelined)
        first, second = read_responses(sock, 2)
    assert (first.status, first.body) == (200, b"hello")
    assert (second.status, second.body) == (200, b"again")


def test_rfc7540_3_2_h2c_upgrade_with_a_large_body_streams_it_with_backpressure(serve, tmp_path):
    server = serve(app)
    payload = bytes(range(256)) * 4096  # 1 MB: far above what is buffered before reading pauses
    upload = tmp_path / "upload.bin"
    upload.write_bytes(payload)
    out = subprocess.run(
        [
            "curl",
            "-s",
            "--http2",
            "--data-binary",
            f"@{upload}",
            "-w",
            "|%{http_version}",
            server.url + "/echo",
        ],
        capture_output=True,
        timeout=20,
    )
    assert out.stdout == payload + b"|2"


@curl
def test_h2c_upgrade_body_over_the_limit_gets_413_on_stream_1(serve):
    server = serve(app, limit_request_body=10)
    out = subprocess.run(
        [
            "curl",
            "-s",
            "--http2",
            "-d",
            "x" * 100,
            "-o",
            "/dev/null",
            "-w",
            "%{http_code}|%{http_version}",
            server.url + "/echo",
        ],
        capture_output=True,
        timeout=10,
    )
    assert out.stdout == b"413|2"


def test_h2c_101_waits_for_the_whole_body_and_a_pipelined_preface_works(serve):
    """RFC 7540 3.2: the body comes whole before HTTP/2; the 101 is sent only once it has."""
    server = serve(app)
    settings = base64.urlsafe_b64encode(settings_payload(initial_window_size=65535)).rstrip(b"=")
    head = (
        b"POST /echo HTTP/1.1\r\nHost: a\r\nConnection: Upgrade, HTTP2-Settings\r\nUpgrade: h2c\r\n"
        b"HTTP2-Settings: " + settings + b"\r\nContent-Length: 10\r\n\r\n"
    )
    client = h2.connection.H2Connection(h2.config.H2Configuration(client_side=True, header_encoding=None))
    client.initiate_upgrade_connection()
    with socket.create_connection(("127.0.0.1", server.port), timeout=5) as sock:
        sock.sendall(head + b"01234")
        sock.settimeout(0.3)
        with pytest.raises(TimeoutError):
            sock.recv(1)  # no 101 while the body is incomplete
        sock.settimeout(5)
        sock.sendall(b"56789" + client.data_to_send())  # the rest of the body and, at once, the preface
        received = b""
        while b"\r\n\r\n" not in received:
            received += sock.recv(65536)
        head_end = received.index(b"\r\n\r\n") + 4
        assert received.startswith(b"HTTP/1.1 101 ")
        body = b""
        ended = False
        pending = received[head_end:]
        while not ended:
            for event in client.receive_data(pending or sock.recv(65536)):
                if isinstance(event, h2.events.DataReceived):
                    body += event.data
                ended |= isinstance(event, h2.events.StreamEnded)
            pending = b""
            sock.sendall(client.data_to_send())
    assert body == b"0123456789"
