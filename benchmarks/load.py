"""Load generators: wrk for HTTP/1.1 (keep-alive and pipelined), h2load for HTTP/2 over h2c.

Both run pinned to the load CPU with one thread and a hard timeout, and both are read from
machine output (a JSON line from our wrk script, h2load's per-request log), never from their
human summaries alone.

Latency, and why it differs by protocol:
- wrk (depth 1): percentiles of wrk's own histogram, which wrk corrects for coordinated
  omission (it adds synthetic samples for responses slower than twice the mean interval).
- wrk pipelined: wrk records one sample per batch and its correction assumes one request per
  sample, which corrupts the histogram, so pipelined runs report no latency.
- h2load: exact percentiles over every request in its --log-file (no correction).
"""

from __future__ import annotations

import json
import math
import re
import subprocess
import tempfile
from dataclasses import asdict, dataclass
from pathlib import Path

WRK_SCRIPT = Path(__file__).resolve().parent / "wrk" / "bench.lua"
GRACE = 30.0  # seconds a load generator may overrun its duration before it is killed


class LoadFailed(RuntimeError):
    """The load generator failed or measured nothing; the message is one line."""


@dataclass
class LoadResult:
    """One measured run. Latencies in milliseconds; None where the method cannot give them."""

    requests: int
    duration_s: float
    rps: float
    failed_requests: int  # wrk: socket errors and non-2xx; h2load: failed streams
    p50_ms: float | None
    p95_ms: float | None
    p99_ms: float | None

    def as_dict(self) -> dict[str, object]:
        return asdict(self)


def _pin(cpu: int | None) -> list[str]:
    return ["taskset", "-c", str(cpu)] if cpu is not None else []


def _run(cmd: list[str], duration: float) -> str:
    """Run a load generator to completion within its duration plus GRACE; one-line errors."""
    tool = next(part for part in cmd if part in ("wrk", "h2load"))
    try:
        done = subprocess.run(cmd, capture_output=True, text=True, timeout=duration + GRACE, check=False)
    except subprocess.TimeoutExpired as exc:
        raise LoadFailed(f"{tool} overran its {duration:.0f}s run by {GRACE:.0f}s and was killed") from exc
    if done.returncode != 0:
        tail = (done.stderr or done.stdout).strip().splitlines()
        raise LoadFailed(f"{tool} exited {done.returncode}: {tail[-1] if tail else '(no output)'}")
    return done.stdout


def wrk(url: str, connections: int, duration: float, depth: int = 1, cpu: int | None = None) -> LoadResult:
    """HTTP/1.1 keep-alive load; depth > 1 pipelines that many requests per write."""
    cmd = [*_pin(cpu), "wrk", "-t1", f"-c{connections}", f"-d{max(1, round(duration))}s", "--timeout", "10s"]
    cmd += ["-s", str(WRK_SCRIPT), url, "--", str(depth)]
    out = _run(cmd, duration)
    line = next((ln for ln in out.splitlines() if ln.startswith("BENCHJSON ")), None)
    if line is None:
        raise LoadFailed("wrk printed no result line")
    data = json.loads(line.removeprefix("BENCHJSON "))
    seconds = data["duration_us"] / 1e6
    if data["requests"] == 0 or seconds <= 0:
        raise LoadFailed("wrk completed no request")
    lat = data["latency_us"]
    pipelined = depth > 1
    return LoadResult(
        requests=data["requests"],
        duration_s=seconds,
        rps=data["requests"] / seconds,
        failed_requests=sum(data["errors"].values()),
        p50_ms=None if pipelined else lat["p50"] / 1000,
        p95_ms=None if pipelined else lat["p95"] / 1000,
        p99_ms=None if pipelined else lat["p99"] / 1000,
    )


def _percentile(sorted_values: list[int], pct: float) -> float:
    """Nearest-rank percentile (the value at or below which pct% of samples fall)."""
    rank = max(1, math.ceil(pct / 100 * len(sorted_values)))
    return float(sorted_values[rank - 1])


def h2load(
    url: str,
    connections: int,
    streams: int,
    duration: float,
    cpu: int | None = None,
    paths: list[str] | None = None,
    headers: tuple[str, ...] = (),
) -> LoadResult:
    """HTTP/2 load over h2c prior knowledge: `connections` x `streams` concurrent requests.

    `paths` (more than one) are requested in turn on every connection instead of url's path;
    `headers` (`name: value`) are added to, or replace, h2load's own request headers.
    """
    with (
        tempfile.NamedTemporaryFile(prefix="h2load-", suffix=".log") as log,
        tempfile.NamedTemporaryFile("w", prefix="h2load-", suffix=".uris") as uris,
    ):
        cmd = [
            *_pin(cpu),
            "h2load",
            "-t1",
            f"-c{connections}",
            f"-m{streams}",
            f"-D{max(1, round(duration))}",
        ]
        cmd += [f"--log-file={log.name}", *(f"-H{header}" for header in headers)]
        if paths is not None and len(paths) > 1:
            origin = url[: url.index("/", len("http://"))]
            uris.write("".join(f"{origin}{path}\n" for path in paths))
            uris.flush()
            cmd += ["-i", uris.name]
        else:
            cmd.append(url)
        out = _run(cmd, duration)
        if "Application protocol: h2c" not in out:
            raise LoadFailed("the server did not speak h2c (prior knowledge)")
        finished = re.search(r"finished in ([\d.]+)(m?s)", out)
        counts = re.search(r"requests: \d+ total, \d+ started, \d+ done, (\d+) succeeded, (\d+) failed", out)
        if finished is None or counts is None:
            raise LoadFailed("could not parse h2load's summary")
        seconds = float(finished.group(1)) / (1000 if finished.group(2) == "ms" else 1)
        succeeded, failed = int(counts.group(1)), int(counts.group(2))
        latencies = []
        for row in Path(log.name).read_text().splitlines():
            cols = row.split("\t")
            if len(cols) >= 3 and cols[1] == "200":
                latencies.append(int(cols[2]))
    if succeeded == 0 or not latencies:
        raise LoadFailed("h2load completed no request")
    latencies.sort()
    return LoadResult(
        requests=succeeded,
        duration_s=seconds,
        rps=succeeded / seconds,
        failed_requests=failed,
        p50_ms=_percentile(latencies, 50) / 1000,
        p95_ms=_percentile(latencies, 95) / 1000,
        p99_ms=_percentile(latencies, 99) / 1000,
    )
