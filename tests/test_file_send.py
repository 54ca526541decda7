"""File bodies (ASGI http.response.pathsend / zerocopysend) through real sockets and real servers.

Starlette's FileResponse takes pathsend when the scope offers it; big files go out in constant
memory over HTTP/1.1, HTTP/2 and TLS; a bad path or a file that shrinks mid-send is the app's error
(500 before the head, an aborted response after it), and the server keeps serving.
"""

from __future__ import annotations

import logging
import os
import socket
import ssl
import threading
import time
from collections.abc import MutableMapping
from pathlib import Path
from typing import Any, cast

import httpx
import pytest
import trustme
from starlette.responses import FileResponse

from tests.conftest import start_cli, stop_process, wait_for

pytestmark = pytest.mark.timeout(60)

MiB = 1024 * 1024

# Serves the file named by the URL path from its own folder through pathsend (never reading it).
FILE_APP = """
import os

HERE = os.path.dirname(os.path.abspath(__file__))


async def app(scope, receive, send):
    if scope["type"] != "http":
        return
    path = os.path.join(HERE, scope["path"].lstrip("/"))
    headers = [(b"content-type", b"application/octet-stream")]
    if os.path.isfile(path) and scope["query_string"] != b"chunked":  # ?chunked: no length, chunked framing
        headers.append((b"content-length", b"%d" % os.path.getsize(path)))
    await send({"type": "http.response.start", "status": 200, "headers": headers})
    await send({"type": "http.response.pathsend", "path": path})
"""


def sparse_file(path: Path, size: int) -> None:
    """A file of `size` zero bytes that takes no disk space."""
    with open(path, "wb") as file:
        file.truncate(size)


@pytest.fixture
def files(tmp_path: Path) -> Path:
    """A folder with the pathsend app, a directory, and a 64 MiB sparse file."""
    (tmp_path / "fileapp.py").write_text(FILE_APP)
    (tmp_path / "subdir").mkdir()
    sparse_file(tmp_path / "medium.bin", 64 * MiB)
    return tmp_path


def read_head(sock: socket.socket) -> tuple[bytes, bytes]:
    """The response head and whatever body bytes came with it."""
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = sock.recv(65536)
        assert chunk, f"closed before the head: {data!r}"
        data += chunk
    head, _, rest = data.partition(b"\r\n\r\n")
    return head, rest


def drain_socket(sock: socket.socket, limit: int | None = None) -> int:
    """Read and discard until the peer closes (or `limit` bytes); the byte count."""
    buffer = bytearray(MiB)
    total = 0
    while limit is None or total < limit:
        try:
            size = sock.recv_into(buffer)
        except (ConnectionResetError, ssl.SSLError):
            break
        if not size:
            break
        total += size
    return total


def get(port: int, path: str, wrap: ssl.SSLContext | None = None) -> socket.socket:
    sock = socket.create_connection(("127.0.0.1", port), timeout=20)
    if wrap is not None:
        sock = wrap.wrap_socket(sock, server_hostname="127.0.0.1")
    sock.sendall(f"GET {path} HTTP/1.1\r\nHost: x\r\n\r\n".encode())
    return sock


# ----- Starlette's FileResponse --------------------------------------------------------------


def recording_file_app(path: Path, sent: list[str]) -> Any:
    """Starlette's FileResponse, with the message types it sends noted in `sent`."""

    async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
        async def noting_send(message: MutableMapping[str, Any]) -> None:
            sent.append(message["type"])
            await send(message)

        await FileResponse(path)(scope, receive, noting_send)

    return app


@pytest.mark.parametrize("http2", [False, True], ids=["http1", "http2"])
def test_starlette_file_response_goes_through_pathsend(serve: Any, tmp_path: Path, http2: bool) -> None:
    content = os.urandom(3 * MiB + 7)
    (tmp_path / "data.bin").write_bytes(content)
    sent: list[str] = []
    server = serve(recording_file_app(tmp_path / "data.bin", sent), http="h2" if http2 else "h1")
    with httpx.Client(http1=not http2, http2=http2, timeout=10) as client:
        response = client.get(server.url + "/data.bin")
    assert response.status_code == 200 and response.content == content
    assert response.headers["content-length"] == str(len(content))
    assert sent == ["http.response.start", "http.response.pathsend"]  # the app never read the file


# ----- bad input ------------------------------------------------------------------------------


def serve_files(serve: Any, files: Path) -> Any:
    import importlib.util

    spec = importlib.util.spec_from_file_location("fileapp_inproc", files / "fileapp.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return serve(module.app)


@pytest.mark.parametrize(("path", "error"), [("/missing", "cannot open"), ("/subdir", "is a directory")])
def test_a_missing_path_or_a_directory_is_a_500_and_the_server_goes_on(
    serve: Any, files: Path, caplog: pytest.LogCaptureFixture, path: str, error: str
) -> None:
    server = serve_files(serve, files)
    with caplog.at_level(logging.ERROR, logger="celeris.error"):
        response = httpx.get(server.url + path, timeout=10)
    assert response.status_code == 500 and response.text == "Internal Server Error"
    errors = [record for record in caplog.records if record.levelno >= logging.ERROR]
    assert len(errors) == 1 and errors[0].exc_info is not None and error in str(errors[0].exc_info[1])
    assert httpx.get(server.url + "/fileapp.py", timeout=10).status_code == 200


def test_a_file_removed_mid_send_is_still_sent_whole(serve: Any, files: Path) -> None:
    server = serve_files(serve, files)
    with get(server.port, "/medium.bin") as sock:
        head, rest = read_head(sock)
        assert head.startswith(b"HTTP/1.1 200") and b"content-length: %d" % (64 * MiB) in head
        received = len(rest) + drain_socket(sock, MiB)
        os.unlink(files / "medium.bin")  # the open file stays readable until it is closed
        received += drain_socket(sock, 64 * MiB - received)
    assert received == 64 * MiB
    assert httpx.get(server.url + "/medium.bin", timeout=10).status_code == 500  # gone for the next one


def test_a_file_truncated_mid_send_aborts_the_response_and_the_server_goes_on(
    serve: Any, files: Path, caplog: pytest.LogCaptureFixture
) -> None:
    server = serve_files(serve, files)
    with caplog.at_level(logging.ERROR, logger="celeris.error"), get(server.port, "/medium.bin") as sock:
        head, rest = read_head(sock)
        assert head.startswith(b"HTTP/1.1 200")
        received = len(rest) + drain_socket(sock, MiB)
        os.truncate(files / "medium.bin", 2 * MiB)
        received += drain_socket(sock)  # until the server closes the connection
    assert received < 64 * MiB
    errors = [record for record in caplog.records if record.levelno >= logging.ERROR]
    assert len(errors) == 1 and errors[0].exc_info is not None and "early" in str(errors[0].exc_info[1])
    assert httpx.get(server.url + "/fileapp.py", timeout=10).status_code == 200


# ----- a big file in constant memory, in a server process --------------------------------------


class RssWatch:
    """Samples a process's VmRSS on a thread; `peak` and `baseline` in bytes."""

    def __init__(self, pid: int) -> None:
        self.pid = pid
        self.baseline = self.rss()
        self.peak = self.baseline
        self.stopped = threading.Event()
        self.thread = threading.Thread(target=self.sample, daemon=True)

    def rss(self) -> int:
        with open(f"/proc/{self.pid}/status") as status:
            line = next(line for line in status if line.startswith("VmRSS:"))
        return int(line.split()[1]) * 1024

    def sample(self) -> None:
        while not self.stopped.wait(0.02):
            self.peak = max(self.peak, self.rss())

    def __enter__(self) -> RssWatch:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stopped.set()
        self.thread.join(5)


@pytest.fixture
def pki(files: Path) -> dict[str, str]:
    """A CA and the server's certificate and key, as files."""
    ca = trustme.CA()
    leaf = ca.issue_cert("127.0.0.1")
    paths = {name: str(files / f"{name}.pem") for name in ("ca", "cert", "key")}
    ca.cert_pem.write_to_path(paths["ca"])
    leaf.cert_chain_pems[0].write_to_path(paths["cert"])
    leaf.private_key_pem.write_to_path(paths["key"])
    return paths


def download_h1(port: int, path: str, context: ssl.SSLContext | None) -> int:
    """GET over HTTP/1.1 (TLS with a context); the body's size, read and thrown away."""
    with get(port, path, context) as sock:
        head, rest = read_head(sock)
        assert head.startswith(b"HTTP/1.1 200"), head
        length = int(head.lower().split(b"content-length: ")[1].split(b"\r\n")[0])
        return len(rest) + drain_socket(sock, length - len(rest))


def download_h2(url: str, context: ssl.SSLContext | bool) -> int:
    """GET over HTTP/2 (prior knowledge on cleartext, ALPN on TLS); the body's size, thrown away."""
    with (
        httpx.Client(http1=False, http2=True, verify=context, timeout=20) as client,
        client.stream("GET", url) as response,
    ):
        assert response.status_code == 200 and response.http_version == "HTTP/2"
        return sum(len(part) for part in response.iter_raw(MiB))


# 1 GB over plain HTTP/1.1; 256 MiB over the slower Python-side paths (the h2 client's frame
# parsing, TLS on both ends) keeps the test inside ~20 s on a loaded 2-core machine.
@pytest.mark.parametrize(
    ("protocol", "size"),
    [("h1", 1024 * MiB), ("h2", 256 * MiB), ("tls-h1", 256 * MiB), ("tls-h2", 256 * MiB)],
)
def test_a_big_sparse_file_is_served_in_constant_memory(
    files: Path, pki: dict[str, str], protocol: str, size: int
) -> None:
    sparse_file(files / "big.bin", size)
    tls = protocol.startswith("tls")
    args = ["fileapp:app", "--app-dir", str(files), "--port", "0", "--no-access-log"]
    if tls:
        args += ["--ssl-certfile", pki["cert"], "--ssl-keyfile", pki["key"]]
    server = start_cli(*args)
    try:
        assert server.port is not None
        context = ssl.create_default_context(cafile=pki["ca"])
        scheme = "https" if tls else "http"
        with RssWatch(server.proc.pid) as rss:
            if protocol.endswith("h1"):
                if tls:
                    context.set_alpn_protocols(["http/1.1"])
                received = download_h1(server.port, "/big.bin", context if tls else None)
            else:
                received = download_h2(f"{scheme}://127.0.0.1:{server.port}/big.bin", context if tls else False)
        assert received == size
        assert rss.peak - rss.baseline < 64 * MiB, (rss.baseline, rss.peak)
    finally:
        stop_process(server.proc)


# ----- the os.sendfile fast path (plain HTTP/1.1 with a Content-Length) -------------------------


def process_cpu_seconds(pid: int) -> float:
    """User + system CPU time of a process so far (/proc/<pid>/stat fields 14 and 15)."""
    with open(f"/proc/{pid}/stat") as stat_file:
        fields = stat_file.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def download_and_sample(port: int, path: str, samples: dict[int, bytes]) -> int:
    """GET over HTTP/1.1 (either framing): the body's size; the bytes at the `samples` offsets must match."""
    found = {offset: bytearray(len(value)) for offset, value in samples.items()}
    received = 0

    def take(data: bytes | bytearray) -> None:
        nonlocal received
        for offset, copy in found.items():  # the part of each sampled range inside this piece
            first, last = max(offset, received), min(offset + len(copy), received + len(data))
            if first < last:
                copy[first - offset : last - offset] = data[first - received : last - received]
        received += len(data)

    with get(port, path) as sock:
        head, body = read_head(sock)
        assert head.startswith(b"HTTP/1.1 200"), head
        chunked = b"transfer-encoding: chunked" in head.lower()
        length = None if chunked else int(head.lower().split(b"content-length: ")[1].split(b"\r\n")[0])
        pending = bytearray(body)
        buffer = bytearray(MiB)
        while True:
            if chunked:
                while (line_end := pending.find(b"\r\n")) >= 0:
                    size = int(pending[:line_end], 16)
                    if len(pending) < line_end + 4 + size:
                        break
                    if size == 0:
                        assert {key: bytes(value) for key, value in found.items()} == samples
                        return received
                    take(pending[line_end + 2 : line_end + 2 + size])
                    del pending[: line_end + 4 + size]
            else:
                take(pending)
                pending.clear()
                if received >= cast(int, length):
                    assert {key: bytes(value) for key, value in found.items()} == samples
                    return received
            size = sock.recv_into(buffer)
            assert size, f"closed after {received} bytes"
            pending += buffer[:size]


def test_a_big_file_goes_out_by_sendfile_on_plain_http1_and_matches(files: Path) -> None:
    """256 MiB sparse with random marks: served whole and equal with Content-Length (os.sendfile)
    and chunked (the cycle's read loop); the time and server CPU of each are printed."""
    size = 256 * MiB
    path = files / "marked.bin"
    sparse_file(path, size)
    samples = {offset: os.urandom(4096) for offset in (0, 7 * MiB + 13, 128 * MiB - 100, size - 4096)}
    with open(path, "r+b") as file:
        for offset, value in samples.items():
            file.seek(offset)
            file.write(value)
    server = start_cli("fileapp:app", "--app-dir", str(files), "--port", "0", "--no-access-log")
    try:
        assert server.port is not None
        runs = [("read loop (chunked)", "?chunked"), ("sendfile (Content-Length)", "")] * 2  # the first warms up
        for label, query in runs:
            cpu, started = process_cpu_seconds(server.proc.pid), time.monotonic()
            received = download_and_sample(server.port, "/marked.bin" + query, samples)
            elapsed, cpu = time.monotonic() - started, process_cpu_seconds(server.proc.pid) - cpu
            print(f"{label}: {received} bytes in {elapsed:.2f} s, server CPU {cpu:.2f} s")
            assert received == size
    finally:
        stop_process(server.proc)


def test_zerocopysend_after_a_body_part_keeps_the_order_and_the_files_position(serve: Any, tmp_path: Path) -> None:
    """A body part, then a file range by zerocopysend (sendfile, after the batched head and part)."""
    content = os.urandom(300_000)
    (tmp_path / "data.bin").write_bytes(content)
    positions: list[int] = []

    async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
        headers = [(b"content-length", b"%d" % (5 + 200_000))]
        await send({"type": "http.response.start", "status": 200, "headers": headers})
        await send({"type": "http.response.body", "body": b"first", "more_body": True})
        with open(tmp_path / "data.bin", "rb") as file:
            file.seek(1000)
            await send({"type": "http.response.zerocopysend", "file": file, "count": 200_000})
            positions.append(file.tell())

    server = serve(app)
    with httpx.Client(timeout=10) as client:
        for _ in range(2):  # and the connection stays usable for the next request
            response = client.get(server.url)
            assert response.status_code == 200 and response.content == b"first" + content[1000:201_000]
        assert response.headers.get("connection") != "close"
    # The client can hold the whole body before the app resumes after its send: wait for the app.
    wait_for(lambda: len(positions) == 2)
    assert positions == [201_000, 201_000]
