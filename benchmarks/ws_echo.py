"""1 KiB WebSocket echo over one connection: celeris vs uvicorn, same app, servers alternated.

Server pinned to CPU 0, client to CPU 1. Two clients: a raw socket client (fixed masked frame,
no extensions: measures the server) and the websockets asyncio client (permessage-deflate on,
as negotiated by default). Each measurement: N round trips or 10 s, whichever first.
"""

import argparse
import base64
import os
import socket
import statistics
import subprocess
import sys
import time

from websockets.asyncio.client import connect
from websockets.frames import Frame, Opcode

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
APP = "examples.websocket_echo:app"
PY = sys.executable
SERVERS = {
    "celeris": [PY, "-m", "celeris_asgi", APP, "--log-level", "warning", "--no-access-log", "--port"],
    "uvicorn": [
        PY,
        "-m",
        "uvicorn",
        APP,
        "--ws",
        "websockets",
        "--log-level",
        "warning",
        "--no-access-log",
        "--port",
    ],
    "uvicorn-sansio": [
        PY,
        "-m",
        "uvicorn",
        APP,
        "--ws",
        "websockets-sansio",
        "--log-level",
        "warning",
        "--no-access-log",
        "--port",
    ],
}
PAYLOAD = b"x" * 1024


def start(name: str, port: int) -> subprocess.Popen:
    proc = subprocess.Popen(
        ["taskset", "-c", "0", *SERVERS[name], str(port)],
        cwd=ROOT,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
            return proc
        except OSError:
            time.sleep(0.05)
    proc.kill()
    raise RuntimeError(f"{name} did not start")


def cpu_seconds(pid: int) -> float:
    """utime + stime of a process (its threads included), from /proc."""
    with open(f"/proc/{pid}/stat") as file:
        fields = file.read().rpartition(")")[2].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def raw_client(port: int, n: int, limit: float) -> tuple[float, int]:
    sock = socket.create_connection(("127.0.0.1", port))
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    key = base64.b64encode(os.urandom(16))
    sock.sendall(
        b"GET / HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
        b"Sec-WebSocket-Key: %s\r\nSec-WebSocket-Version: 13\r\n\r\n" % key
    )
    head = b""
    while b"\r\n\r\n" not in head:
        head += sock.recv(4096)
    assert head.startswith(b"HTTP/1.1 101"), head
    frame = Frame(Opcode.TEXT, PAYLOAD).serialize(mask=True, extensions=[])
    expected = 4 + len(PAYLOAD)
    buf = bytearray(expected)
    view = memoryview(buf)
    done = 0
    started = time.perf_counter()
    while done < n:
        sock.sendall(frame)
        got = 0
        while got < expected:
            got += sock.recv_into(view[got:])
        done += 1
        if done % 1000 == 0 and time.perf_counter() - started > limit:
            break
    elapsed = time.perf_counter() - started
    assert bytes(buf[4:]) == PAYLOAD
    sock.close()
    return done / elapsed, done


async def lib_client(port: int, n: int, limit: float) -> float:
    async with connect(f"ws://127.0.0.1:{port}/", proxy=None, max_size=None) as ws:
        text = PAYLOAD.decode()
        done = 0
        started = time.perf_counter()
        while done < n:
            await ws.send(text)
            assert await ws.recv() == text
            done += 1
            if done % 1000 == 0 and time.perf_counter() - started > limit:
                break
        return done / (time.perf_counter() - started)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("-n", type=int, default=20000)
    parser.add_argument("--limit", type=float, default=10.0)
    parser.add_argument("--servers", default="celeris,uvicorn,uvicorn-sansio")
    args = parser.parse_args()
    os.sched_setaffinity(0, {1})
    import uvloop

    names = args.servers.split(",")
    results: dict[tuple[str, str], list[float]] = {}
    port = 18700
    for rnd in range(args.rounds):
        for name in names if rnd % 2 == 0 else reversed(names):
            port += 1
            proc = start(name, port)
            try:
                raw_client(port, 2000, 5)  # warm-up
                before = cpu_seconds(proc.pid)
                raw, done = raw_client(port, args.n, args.limit)
                cpu = (cpu_seconds(proc.pid) - before) / done * 1e6
                lib = uvloop.run(lib_client(port, args.n, args.limit))
            finally:
                proc.terminate()
                proc.wait(10)
            results.setdefault((name, "raw"), []).append(raw)
            results.setdefault((name, "lib"), []).append(lib)
            results.setdefault((name, "cpu"), []).append(cpu)
            print(
                f"round {rnd + 1} {name:15s} raw {raw:8.0f} msg/s ({cpu:5.1f} us server CPU/msg)   "
                f"websockets-client {lib:8.0f} msg/s",
                flush=True,
            )
    print()
    print("| server | raw client msg/s | server CPU us/msg | websockets client msg/s |")
    print("|---|---|---|---|")
    for name in names:
        raw = statistics.median(results[(name, "raw")])
        cpu = statistics.median(results[(name, "cpu")])
        lib = statistics.median(results[(name, "lib")])
        print(f"| {name} | {raw:,.0f} | {cpu:.1f} | {lib:,.0f} |")
    print("(medians over rounds)")


if __name__ == "__main__":
    sys.exit(main())
