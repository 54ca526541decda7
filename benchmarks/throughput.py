"""Throughput and ramp modes: start each server, warm it, load it, read its CPU, stop it.

Servers are alternated within every round (A B C A B C ...), so slow drift of the machine
(thermal, other tenants) spreads over all of them instead of biasing the one measured last.
One server process serves every scenario of its (app, protocol family) in a round.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterator
from dataclasses import dataclass

from benchmarks import load
from benchmarks.procfs import CpuWindow
from benchmarks.scenarios import PIPELINE_DEPTH, Scenario
from benchmarks.servers import HOST, RunningServer, ServerFailed, ServerSpec

Say = Callable[[str], None]


@dataclass(frozen=True)
class Options:
    rounds: int
    duration: float
    warmup: float
    connections: int  # wrk keep-alive connections (HTTP/1.1)
    h2_connections: int
    h2_streams: int  # concurrent streams per h2load connection
    server_cpu: int | None
    load_cpu: int | None
    startup_timeout: float


def _load(
    server: RunningServer, sc: Scenario, opts: Options, duration: float, clients: int | None = None
) -> load.LoadResult:
    """One load run; `clients` overrides the concurrency (ramp mode)."""
    url = f"http://{HOST}:{server.port}{sc.path}"
    if sc.proto == "h2":
        conns, streams = opts.h2_connections, opts.h2_streams
        if clients is not None:
            conns, streams = h2_shape(clients)
        return load.h2load(url, conns, streams, duration, opts.load_cpu, sc.paths, sc.headers)
    depth = PIPELINE_DEPTH if sc.proto == "h1p" else 1
    return load.wrk(url, clients or opts.connections, duration, depth, opts.load_cpu)


def h2_shape(clients: int) -> tuple[int, int]:
    """A ramp 'client' on HTTP/2 is one concurrent stream, packed up to 10 per connection."""
    conns = math.ceil(clients / 10)
    return conns, math.ceil(clients / conns)


def _servers(
    specs: list[ServerSpec], scenarios: list[Scenario], opts: Options, rnd: int, say: Say, records: list[dict]
) -> Iterator[tuple[RunningServer, list[Scenario]]]:
    """Yield each ready, warmed server with its scenarios; record one error line when one fails."""
    groups: list[tuple[str, str]] = []
    for sc in scenarios:
        if (sc.app, sc.family) not in groups:
            groups.append((sc.app, sc.family))
    for app, family in groups:
        todo = [sc for sc in scenarios if (sc.app, sc.family) == (app, family)]
        for spec in specs:
            if family not in spec.protocols:
                continue
            try:
                with RunningServer(spec, app, family, opts.server_cpu) as server:
                    server.wait_ready(opts.startup_timeout)
                    if opts.warmup > 0:
                        _load(server, todo[0], opts, opts.warmup)
                    yield server, todo
            except (ServerFailed, load.LoadFailed) as exc:
                say(f"round {rnd}: {spec.name} ({app}, {family}) skipped: {exc}")
                records += [{"round": rnd, "server": spec.name, "scenario": sc.name, "error": str(exc)} for sc in todo]


def _measure(
    server: RunningServer, sc: Scenario, opts: Options, duration: float, clients: int | None = None
) -> dict[str, object]:
    """Load once; turn the server's CPU time into CPU per request and note how busy both CPUs were.

    The busy shares tell a server-bound run (server CPU ~100%) from a load-bound one (the load
    CPU saturated first): req/s of a load-bound row understates the server, CPU/request does not.
    foreign_cores is CPU taken on the two pinned CPUs by processes outside the benchmark.
    """
    with CpuWindow(server.tree, opts.server_cpu, opts.load_cpu) as window:
        result = _load(server, sc, opts, duration, clients)
    if server.proc.poll() is not None:
        raise load.LoadFailed(f"server died during the run: {server.last_log_line()}")
    return {
        **result.as_dict(),
        "cpu_s": window.server_cpu_s,
        "cpu_us_per_req": window.server_cpu_s / result.requests * 1e6,
        "server_cpu_share": window.server_cpu_s / result.duration_s,  # cores the server itself used
        "loadgen_cpu_s": window.loadgen_cpu_s,
        "server_cpu_busy": window.server_cpu_busy,
        "load_cpu_busy": window.load_cpu_busy,
        "foreign_cores": window.foreign_cores,
    }


def run_throughput(specs: list[ServerSpec], scenarios: list[Scenario], opts: Options, say: Say) -> list[dict]:
    records: list[dict] = []
    for rnd in range(1, opts.rounds + 1):
        for server, todo in _servers(specs, scenarios, opts, rnd, say, records):
            for sc in todo:
                try:
                    found = _measure(server, sc, opts, opts.duration)
                except load.LoadFailed as exc:
                    say(f"round {rnd}: {server.spec.name} {sc.name} failed: {exc}")
                    records.append({"round": rnd, "server": server.spec.name, "scenario": sc.name, "error": str(exc)})
                    continue
                records.append({"round": rnd, "server": server.spec.name, "scenario": sc.name, **found})
                say(
                    f"round {rnd}: {server.spec.name:<13} {sc.name:<22} {found['rps']:>10,.0f} req/s"
                    f"  cpu {found['cpu_us_per_req']:.1f} us/req{_busy(found)}"
                )
    return records


def _busy(found: dict[str, object]) -> str:
    if found["server_cpu_busy"] is None or found["load_cpu_busy"] is None:
        return ""
    return (
        f"  busy server/load {found['server_cpu_busy']:.0%}/{found['load_cpu_busy']:.0%}"
        f"  other {found['foreign_cores']:.2f} cores"
    )


def run_ramp(
    specs: list[ServerSpec],
    scenarios: list[Scenario],
    opts: Options,
    steps: list[int],
    bound_ms: float,
    step_duration: float,
    say: Say,
) -> list[dict]:
    """Per scenario, add clients step by step; MaxRPS is the best step whose p95 is within bound.

    Two breaches in a row end the ramp: in a closed loop more clients past saturation only add
    queueing delay, and one breach may be noise.
    """
    records: list[dict] = []
    usable = [sc for sc in scenarios if sc.proto != "h1p"]
    if len(usable) < len(scenarios):
        say("ramp: pipelined scenarios skipped (wrk gives no sound latency for pipelined batches)")
    for rnd in range(1, opts.rounds + 1):
        for server, todo in _servers(specs, usable, opts, rnd, say, records):
            for sc in todo:
                points, breaches = [], 0
                for clients in steps:
                    shape = h2_shape(clients) if sc.proto == "h2" else (clients, 1)
                    try:
                        found = _measure(server, sc, opts, step_duration, clients)
                    except load.LoadFailed as exc:
                        say(f"round {rnd}: {server.spec.name} {sc.name} {clients} clients failed: {exc}")
                        break
                    point = {"clients": shape[0] * shape[1], **found}
                    points.append(point)
                    within = point["p95_ms"] is not None and point["p95_ms"] <= bound_ms
                    breaches = 0 if within else breaches + 1
                    say(
                        f"round {rnd}: {server.spec.name:<13} {sc.name:<20} {point['clients']:>4} clients "
                        f"{point['rps']:>10,.0f} req/s  p95 {point['p95_ms']:.2f} ms"
                    )
                    if breaches >= 2:
                        break
                ok = [p for p in points if p["p95_ms"] is not None and p["p95_ms"] <= bound_ms]
                best = max(ok, key=lambda p: p["rps"]) if ok else None
                records.append(
                    {
                        "round": rnd,
                        "server": server.spec.name,
                        "scenario": sc.name,
                        "bound_ms": bound_ms,
                        "max_rps": best["rps"] if best else None,
                        "clients": best["clients"] if best else None,
                        "p95_ms": best["p95_ms"] if best else None,
                        "steps": points,
                        **({} if best else {"error": f"no step had p95 <= {bound_ms} ms"}),
                    }
                )
    return records
