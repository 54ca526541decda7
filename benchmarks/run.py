"""One command for the whole comparison: `python -m benchmarks.run` (or `python benchmarks/run.py`).

    --mode throughput   req/s, p50/p99, server CPU per request, per server and scenario
    --mode ramp         MaxRPS while p95 stays within --p95-bound-ms, adding clients step by step
    --mode memory       worker RSS with idle keep-alive connections and open HTTP/2 streams
    --quick             a smoke run of the harness itself: 1 round, 3 s per load, small counts

See benchmarks/README.md for what each number means.
"""

from __future__ import annotations

import argparse
import atexit
import os
import shutil
import signal
import sys
import time
from collections.abc import Callable
from pathlib import Path
from types import FrameType

if __package__ in (None, ""):  # run as a script: make `benchmarks` importable from the repo root
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from benchmarks import memory, report, scenarios
from benchmarks.servers import SERVERS, ServerSpec, stop_all
from benchmarks.throughput import Options, run_ramp, run_throughput

QUICK = {
    "rounds": 1,
    "duration": 3.0,
    "warmup": 1.0,
    "step_duration": 2.0,
    "ramp_steps": "1,8,64",
    "conns": "1,100,1000",
    "streams": 100,
}
FULL = {
    "rounds": 3,
    "duration": 10.0,
    "warmup": 2.0,
    "step_duration": 5.0,
    "ramp_steps": "1,2,4,8,16,32,64,128,256,512",
    "conns": "1,1000,10000",
    "streams": 1000,
}
Say = Callable[[str], None]
DEFAULT_SCENARIOS = {"throughput": "*", "ramp": "*-simple-h1,*-simple-h2", "memory": "*"}


def _list(text: str) -> list[str]:
    return [part for part in text.replace(",", " ").split() if part]


def _ints(text: str) -> list[int]:
    return [int(part) for part in _list(text)]


def parse(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="benchmarks.run", description=__doc__.split("\n")[0])
    p.add_argument("--mode", choices=("throughput", "ramp", "memory"), default="throughput")
    p.add_argument("--servers", default=",".join(SERVERS), help=f"comma list from: {', '.join(SERVERS)}")
    p.add_argument("--scenarios", help="comma list of patterns like raw-simple-h1, 'starlette-*', '*-h2'")
    p.add_argument("--quick", action="store_true", help="smoke-test the harness: 1 round, 3 s runs")
    p.add_argument("--rounds", type=int, help="rounds; the median is reported (default 3)")
    p.add_argument("--duration", type=float, help="seconds per measured load run (default 10)")
    p.add_argument("--warmup", type=float, help="seconds of unmeasured load after each server start (default 2)")
    p.add_argument("--connections", type=int, default=64, help="wrk keep-alive connections")
    p.add_argument("--h2-connections", type=int, default=16, help="h2load connections")
    p.add_argument("--h2-streams", type=int, default=10, help="h2load concurrent streams per connection")
    p.add_argument("--server-cpu", type=int, default=0, help="CPU the server is pinned to")
    p.add_argument("--load-cpu", type=int, default=1, help="CPU wrk/h2load and this harness are pinned to")
    p.add_argument("--startup-timeout", type=float, default=30.0, help="seconds a server may take to answer")
    p.add_argument("--ramp-steps", help="client counts for ramp mode (default 1,2,4,...,512)")
    p.add_argument("--p95-bound-ms", type=float, default=10.0, help="ramp mode latency bound")
    p.add_argument("--step-duration", type=float, help="seconds per ramp step (default 5)")
    p.add_argument("--conns", help="memory mode idle connection counts (default 1,1000,10000)")
    p.add_argument("--streams", type=int, help="memory mode open HTTP/2 streams (default 1000)")
    p.add_argument("--settle", type=float, default=1.0, help="memory mode: seconds to wait before reading RSS")
    p.add_argument(
        "--publish",
        action="store_true",
        help="also write results/published-<mode>-py3XX.md and .png, the results files meant for git",
    )
    args = p.parse_args(argv)
    for name, value in (QUICK if args.quick else FULL).items():
        if getattr(args, name) is None:
            setattr(args, name, value)
    args.scenarios = args.scenarios or DEFAULT_SCENARIOS[args.mode]
    return args


def _pinning(args: argparse.Namespace, say: Say) -> tuple[int | None, int | None]:
    """Pin only when taskset exists and both CPUs are ours; otherwise say so once and run unpinned."""
    cpus = os.sched_getaffinity(0)
    if shutil.which("taskset") is None:
        say("taskset not found: running unpinned (numbers will be noisier)")
        return None, None
    if args.server_cpu == args.load_cpu or not {args.server_cpu, args.load_cpu} <= cpus:
        say(f"CPUs {args.server_cpu} and {args.load_cpu} are not two distinct usable CPUs: running unpinned")
        return None, None
    os.sched_setaffinity(0, {args.load_cpu})  # the harness (and memory-mode client) stays off the server CPU
    return args.server_cpu, args.load_cpu


def _available(names: list[str], protos: set[str], say: Say) -> list[ServerSpec]:
    """The requested servers that can run here, one clear line for each that cannot."""
    chosen = []
    for name in names:
        spec = SERVERS.get(name)
        if spec is None:
            raise SystemExit(f"unknown server {name!r}; known: {', '.join(SERVERS)}")
        why = spec.missing()
        if why:
            say(f"skip {name}: {why}")
            continue
        chosen.append(spec)
        unsupported = sorted(protos - spec.protocols)
        if unsupported:
            say(f"note {name}: no {'/'.join(unsupported)} (h2c), those scenarios run without it")
    return chosen


def _usable_scenarios(args: argparse.Namespace, say: Say) -> list[scenarios.Scenario]:
    chosen = scenarios.select(_list(args.scenarios))
    for tool, protos in (("wrk", {"h1", "h1p"}), ("h2load", {"h2"})):
        if shutil.which(tool) is None and any(sc.proto in protos for sc in chosen):
            say(f"skip {'/'.join(sorted(protos))} scenarios: {tool} is not installed")
            chosen = [sc for sc in chosen if sc.proto not in protos]
    return chosen


def main(argv: list[str] | None = None) -> int:
    args = parse(argv)

    def say(line: str) -> None:
        print(line, flush=True)

    def on_term(signum: int, frame: FrameType | None) -> None:
        raise KeyboardInterrupt

    signal.signal(signal.SIGTERM, on_term)
    atexit.register(stop_all)
    server_cpu, load_cpu = _pinning(args, say)
    try:
        chosen = [] if args.mode == "memory" else _usable_scenarios(args, say)
    except ValueError as exc:
        raise SystemExit(str(exc)) from exc
    protos = {"h1", "h2"} if args.mode == "memory" else {sc.family for sc in chosen}
    specs = _available(_list(args.servers), protos, say)
    if not specs or (args.mode != "memory" and not chosen):
        say("nothing to run")
        return 1
    opts = Options(
        args.rounds,
        args.duration,
        args.warmup,
        args.connections,
        args.h2_connections,
        args.h2_streams,
        server_cpu,
        load_cpu,
        args.startup_timeout,
    )
    meta: dict[str, object] = {
        "date": time.strftime("%Y-%m-%d %H:%M:%S %Z"),
        "machine": report.machine(),
        "versions": {s.name: s.version() for s in specs},
        "settings": _settings(args, server_cpu, load_cpu),
    }
    started = time.monotonic()
    try:
        if args.mode == "throughput":
            records = run_throughput(specs, chosen, opts, say)
            rows, markdown, chart = report.throughput(records)
        elif args.mode == "ramp":
            steps = _ints(args.ramp_steps)
            records = run_ramp(specs, chosen, opts, steps, args.p95_bound_ms, args.step_duration, say)
            rows, markdown, chart = report.ramp(records, args.p95_bound_ms)
        else:
            counts = _ints(args.conns)
            records = memory.run(
                specs, counts, args.streams, args.rounds, server_cpu, args.startup_timeout, args.settle, say
            )
            rows, markdown, chart = report.memory(records)
    except KeyboardInterrupt:
        say("interrupted: servers stopped, nothing written")
        return 130
    finally:
        stop_all()
    say(f"\n{markdown}\n")
    for path in report.write(args.mode, meta, records, rows, markdown, chart, args.publish):
        say(f"wrote {path}")
    say(f"done in {time.monotonic() - started:.0f}s")
    return 0


def _settings(args: argparse.Namespace, server_cpu: int | None, load_cpu: int | None) -> dict[str, object]:
    common: dict[str, object] = {"rounds": args.rounds, "server_cpu": server_cpu, "load_cpu": load_cpu}
    if args.mode == "memory":
        return {**common, "conns": args.conns, "h2_streams_open": args.streams, "settle_s": args.settle}
    load = {
        "duration_s": args.duration,
        "warmup_s": args.warmup,
        "wrk_connections": args.connections,
        "pipeline_depth": scenarios.PIPELINE_DEPTH,
        "h2load": f"{args.h2_connections}x{args.h2_streams}",
    }
    if args.mode == "ramp":
        return {
            **common,
            **load,
            "steps": args.ramp_steps,
            "step_s": args.step_duration,
            "p95_bound_ms": args.p95_bound_ms,
        }
    return {**common, **load}


if __name__ == "__main__":
    sys.exit(main())
