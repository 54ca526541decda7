"""What --metrics-address costs: raw simple HTTP/1.1, metrics off vs on, one worker, alternating rounds.

    python -m benchmarks.metrics_cost [--rounds 3] [--duration 10]

The server (one process, --workers 1) is pinned to CPU 0 and wrk -c64 to CPU 1; each round runs
off then on, so drift in a shared machine hits both. Prints req/s and server CPU per request
(utime+stime of the server process over the run, from /proc) per round, and the medians.
"""

from __future__ import annotations

import argparse
import os
import re
import socket
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
CLOCK_TICKS = os.sysconf("SC_CLK_TCK")


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def cpu_seconds(pid: int) -> float:
    data = Path(f"/proc/{pid}/stat").read_text()
    fields = data[data.rindex(")") + 2 :].split()
    return (int(fields[11]) + int(fields[12])) / CLOCK_TICKS


def wait_listening(port: int, timeout: float = 20) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.5).close()
            return
        except OSError:
            time.sleep(0.05)
    raise RuntimeError("server did not start")


def wrk(url: str, duration: int) -> float:
    out = subprocess.run(
        ["taskset", "-c", "1", "wrk", "-t1", "-c64", f"-d{duration}s", url], capture_output=True, text=True, check=True
    ).stdout
    return float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1))  # type: ignore[union-attr]


def measure(metrics: bool, duration: int) -> tuple[float, float]:
    port = free_port()
    args = ["benchmarks.apps.raw:app", "--port", str(port), "--no-access-log", "--log-level", "warning"]
    if metrics:
        args += ["--metrics-address", f"127.0.0.1:{free_port()}"]
    server = subprocess.Popen(["taskset", "-c", "0", sys.executable, "-m", "celeris_asgi", *args], cwd=ROOT)
    try:
        wait_listening(port)
        url = f"http://127.0.0.1:{port}/"
        wrk(url, 2)  # warm-up
        before = cpu_seconds(server.pid)
        rate = wrk(url, duration)
        cpu = cpu_seconds(server.pid) - before
        return rate, cpu / (rate * duration) * 1e6
    finally:
        server.terminate()
        server.wait(20)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--duration", type=int, default=10)
    opts = parser.parse_args()
    results: dict[bool, list[tuple[float, float]]] = {False: [], True: []}
    for round_number in range(1, opts.rounds + 1):
        for metrics in (False, True):
            rate, cpu = measure(metrics, opts.duration)
            results[metrics].append((rate, cpu))
            print(
                f"round {round_number} metrics {'on ' if metrics else 'off'}: {rate:9.0f} req/s  {cpu:6.1f} us CPU/req"
            )
    off_rate = statistics.median(r for r, _ in results[False])
    on_rate = statistics.median(r for r, _ in results[True])
    off_cpu = statistics.median(c for _, c in results[False])
    on_cpu = statistics.median(c for _, c in results[True])
    print(f"median off: {off_rate:.0f} req/s {off_cpu:.1f} us/req; on: {on_rate:.0f} req/s {on_cpu:.1f} us/req")
    print(f"on/off: throughput {on_rate / off_rate - 1:+.1%}, CPU per request {on_cpu / off_cpu - 1:+.1%}")


if __name__ == "__main__":
    main()
