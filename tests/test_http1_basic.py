"""The everyday HTTP/1.1 path: a real server, httpx and raw sockets."""

from __future__ import annotations

import threading

import httpx
import pytest

from tests.apps import echo, hello, scope_json, until_set
from tests.conftest import raw_exchange, response_status
from tests.rawhttp import connect, read_until_close

pytestmark = pytest.mark.timeout(20)


def test_get_returns_body_with_content_length_date_and_server(serve):
    server = serve(hello)
    response = httpx.get(server.url + "/")
    assert response.status_code == 200
    assert response.text == "Hello"
    assert response.headers["content-length"] == "5"
    assert response.headers["server"] == "celeris"
    assert "GMT" in response.headers["date"]


def test_scope_follows_asgi_http_spec(serve):
    server = serve(scope_json, root_path="/api")
    scope = httpx.get(server.url + "/a%20b/c?x=1&y=%20", headers={"X-Thing": "v"}).json()
    assert scope["type"] == "http"
    assert scope["asgi"] == {"version": "3.0", "spec_version": "2.4"}
    assert scope["http_version"] == "1.1"
    assert scope["method"] == "GET"
    assert scope["scheme"] == "http"
    assert scope["path"] == "/api/a b/c"
    assert scope["raw_path"] == "/api/a%20b/c"
    assert scope["root_path"] == "/api"
    assert scope["query_string"] == "x=1&y=%20"
    assert ["x-thing", "v"] in scope["headers"]
    assert scope["client"][0] == "127.0.0.1"
    assert scope["server"] == ["127.0.0.1", server.port]


def test_post_body_is_echoed_with_content_length_and_chunked(serve):
    server = serve(echo)
    with httpx.Client() as client:
        assert client.post(server.url, content=b"x" * 100_000).content == b"x" * 100_000

        def chunks():
            yield b"abc"
            yield b"def"

        assert client.post(server.url, content=chunks()).content == b"abcdef"


def test_rfc9112_9_3_2_pipelined_responses_arrive_in_request_order(serve):
    server = serve(echo)
    requests = b"".join(b"POST /%d HTTP/1.1\r\nHost: a\r\nContent-Length: 1\r\n\r\n%d" % (i, i) for i in range(5))
    raw = raw_exchange(server.port, requests + b"GET /end HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n")
    bodies = [part.rsplit(b"\r\n\r\n", 1)[-1][:1] for part in raw.split(b"HTTP/1.1 200 OK")[1:6]]
    assert bodies == [b"0", b"1", b"2", b"3", b"4"]
    assert raw.count(b"HTTP/1.1 200 OK") == 6


def test_rfc9112_3_2_missing_host_is_400_and_closes(serve):
    server = serve(hello)
    raw = raw_exchange(server.port, b"GET / HTTP/1.1\r\n\r\n")
    assert response_status(raw) == 400
    assert b"connection: close" in raw


def test_rfc9112_9_3_2_a_long_pipeline_to_an_app_that_waits_is_answered_in_full(serve):
    """300 pipelined requests queued behind a slow first one, then answered without waiting: each
    queued request starts on its own (never nested inside the previous app's send, which would
    recurse 300 deep), all answered, in order."""

    all_sent = threading.Event()

    async def waits_then_answers(scope, receive, send):
        if scope["type"] != "http":
            return
        if scope["path"] == "/0":
            # The whole pipeline is in the server's socket buffer once sendall() returned (loopback),
            # and the loop reads it before this poll wakes: the rest queues up behind this one.
            await until_set(all_sent)
        body = scope["path"].encode()
        await send({"type": "http.response.start", "status": 200, "headers": [(b"content-length", b"%d" % len(body))]})
        await send({"type": "http.response.body", "body": body})

    server = serve(waits_then_answers)
    count = 300
    requests = b"".join(b"GET /%d HTTP/1.1\r\nHost: a\r\n\r\n" % i for i in range(count))
    with connect(server.port, timeout=10) as sock:
        sock.sendall(requests + b"GET /end HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n")
        all_sent.set()
        raw, closed = read_until_close(sock, timeout=10)
    assert closed
    bodies = [part.rsplit(b"\r\n\r\n", 1)[-1] for part in raw.split(b"HTTP/1.1 200 OK")[1:]]
    assert bodies == [b"/%d" % i for i in range(count)] + [b"/end"]
