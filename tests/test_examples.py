"""Every example in examples/ works as its docstring says, on a real server."""

from __future__ import annotations

import hashlib
import time

import httpx
import pytest

from examples import fastapi_app, hello, starlette_app, streaming, upload
from tests.rawhttp import connect, read_responses

pytestmark = pytest.mark.timeout(20)


def test_hello(serve):
    response = httpx.get(serve(hello.app).url)
    assert (response.status_code, response.text) == (200, "Hello\n")


def test_starlette_app_with_lifespan_state(serve):
    server = serve(starlette_app.app, lifespan="on")
    with httpx.Client(base_url=server.url) as client:
        assert client.get("/").text == "Hello from Starlette\n"
        assert client.get("/users/ada?x=1").json() == {"user": "ada", "query": {"x": "1"}}
        assert client.post("/echo", json={"a": [1, 2]}).json() == {"received": {"a": [1, 2]}}
        assert client.get("/missing").status_code == 404


def test_fastapi_app(serve):
    server = serve(fastapi_app.app)
    with httpx.Client(base_url=server.url) as client:
        assert client.get("/").json() == {"message": "Hello from FastAPI"}
        assert client.get("/items/1").json() == {"id": 1, "name": "first"}
        assert client.get("/items/2").status_code == 404
        assert client.get("/items/abc").status_code == 422
        assert client.post("/items", json={"name": "pen", "price": 10}).json() == {
            "name": "pen",
            "price_with_tax": 12.0,
        }
        assert client.get("/openapi.json").json()["info"]["title"] == "celeris example"


def test_streaming_sends_parts_as_they_are_produced(serve):
    server = serve(streaming.app)
    arrivals = []
    started = time.monotonic()
    # 0.9 s from the first line to the last: a first read delayed on a loaded machine keeps it over 0.5 s.
    with httpx.stream("GET", server.url + "/?count=4&delay=0.3") as response:
        assert response.headers["transfer-encoding"] == "chunked"
        for line in response.iter_lines():
            arrivals.append((line, time.monotonic() - started))
    assert [line for line, _ in arrivals] == ["line 1", "line 2", "line 3", "line 4"]
    assert arrivals[-1][1] - arrivals[0][1] >= 0.5  # each line came when it was produced, not all at the end


def test_upload_hashes_a_large_body_as_it_arrives(serve):
    server = serve(upload.app)
    piece = bytes(range(256)) * 4096  # 1 MiB
    total = 24

    def body():
        for _ in range(total):
            yield piece

    response = httpx.post(server.url, content=body(), timeout=15)
    result = response.json()
    expected = hashlib.sha256(piece * total).hexdigest()
    assert result["size"] == len(piece) * total
    assert result["sha256"] == expected
    assert result["pieces"] > 1


def test_upload_with_content_length_on_a_raw_socket(serve):
    server = serve(upload.app)
    data = b"z" * 3_000_000
    with connect(server.port, timeout=10) as sock:
        sock.sendall(b"PUT /big HTTP/1.1\r\nHost: t\r\nContent-Length: %d\r\n\r\n" % len(data) + data)
        (response,) = read_responses(sock, 1, timeout=10)
    assert response.status == 200
    assert b'"size": 3000000' in response.body


@pytest.mark.parametrize(
    ("module", "path", "expected"),
    [
        ("hello", "/", "Hello"),
        ("starlette_app", "/", "Hello from Starlette"),
        ("fastapi_app", "/", "Hello from FastAPI"),
        ("streaming", "/?count=2&delay=0", "line 2"),
        ("upload", "/", '"size": 0'),
    ],
)
def test_each_example_runs_from_the_command_line(cli, module, path, expected):
    process = cli(f"examples.{module}:app", "--port", "0")
    assert expected in httpx.get(process.url + path).text
