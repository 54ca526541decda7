"""`python -m tests.fuzz --minutes M [--target NAME ...]`: the long fuzz run (see tests/fuzz/__init__.py).

Each target gets its own server and M minutes of hypothesis batches (new random inputs every batch,
failures shrunk to a small input), after one pass of its seeds split at every boundary. Prints the
inputs each target ran and every distinct failure with its exact input; exits 1 if any.
"""

from __future__ import annotations

import argparse
import logging
import sys
import time
from typing import Any

from hypothesis import HealthCheck, Phase, given, settings

from tests.fuzz.harness import FuzzServer, fuzz_server, rss_mib
from tests.fuzz.targets import TARGETS, Target

BATCH = 500  # examples per hypothesis run; the clock is checked between runs


def run_target(target: Target, minutes: float) -> tuple[int, dict[str, Any]]:
    """Fuzz one target for `minutes`; return (inputs run, {failure summary: shrunk example})."""
    failures: dict[str, Any] = {}
    last_failing: list[Any] = []
    with fuzz_server() as server:
        for seed in target.split_seeds:
            for cut in range(1, len(seed)):
                target.split(server.port, seed, cut)
            server.check(target.probe)
        splits = sum(len(seed) - 1 for seed in target.split_seeds)
        print(f"  {target.name}: {splits} valid inputs split at every boundary answered", flush=True)

        @settings(
            max_examples=BATCH,
            deadline=None,
            database=None,
            phases=[Phase.generate, Phase.shrink],
            suppress_health_check=list(HealthCheck),
        )
        @given(example=target.strategy)
        def fuzz_once(example: dict[str, Any]) -> None:
            try:
                target.exchange(server.port, example)
                server.check(target.probe)
            except BaseException:
                last_failing[:] = [example]
                raise

        deadline = time.monotonic() + minutes * 60
        while time.monotonic() < deadline:
            try:
                fuzz_once()
            except Exception as exc:  # a failure, already shrunk by hypothesis
                # The last line names the root cause (for logged errors, the server's exception).
                lines = str(exc).strip().splitlines()
                summary = f"{type(exc).__name__}: {lines[-1] if lines else ''}"[:200]
                failures.setdefault(summary, last_failing[0] if last_failing else None)
                recover(server, target)
            print(
                f"  {target.name}: {server.inputs} inputs, {len(failures)} failures, "
                f"RSS +{rss_mib() - server.rss_baseline:.0f} MiB",
                flush=True,
            )
        return server.inputs, failures


def recover(server: FuzzServer, target: Target) -> None:
    """After a failure: forget its logged errors; give up on the target if the server is gone."""
    server.errors.take()
    target.probe(server.port)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m tests.fuzz", description=__doc__.splitlines()[0])
    parser.add_argument("--minutes", type=float, default=5.0, help="per target (default 5)")
    parser.add_argument("--target", action="append", choices=sorted(TARGETS), help="default: all")
    args = parser.parse_args(argv)
    # Fuzzed input is meant to be refused: show what escaped (ERROR and above), not every 400's warning.
    stderr = logging.StreamHandler()
    stderr.setLevel(logging.ERROR)
    logging.basicConfig(handlers=[stderr])
    found = 0
    for name in args.target or list(TARGETS):
        print(f"{name}: fuzzing for {args.minutes:g} minutes", flush=True)
        inputs, failures = run_target(TARGETS[name], args.minutes)
        print(f"{name}: {inputs} inputs, {len(failures)} distinct failures", flush=True)
        for summary, example in failures.items():
            print(f"  FAILURE {summary}\n    input: {example!r}", flush=True)
        found += len(failures)
    return 1 if found else 0


if __name__ == "__main__":
    sys.exit(main())
