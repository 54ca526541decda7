"""Workers killed from outside (SIGKILL, the OOM killer) before the master saw them ready.

Such a death says nothing about whether the app can start, so it must never stop a supervisor whose
workers serve or have served: the master replaces the worker with its back-off and keeps serving.

The app here writes its pid into `started/` as soon as a worker imports it and then waits for a
`go` file, so the test can kill a worker that is certainly alive and not yet ready.
"""

from __future__ import annotations

import contextlib
import os
import signal
from collections.abc import Iterator
from pathlib import Path

import pytest

from celeris_asgi.supervisor import STARTUP_KILL_RETRIES
from tests.conftest import CliProcess, start_cli, stop_process
from tests.test_supervisor import PID_APP, LogTail, fetch, wait_until, worker_pids

GATED_APP = """
import os, time
from pathlib import Path
from pidapp import app

HERE = Path(__file__).parent
(HERE / "started" / str(os.getpid())).touch()
deadline = time.monotonic() + 30
while not (HERE / "go").exists() and time.monotonic() < deadline:
    time.sleep(0.01)  # held in start-up until the test opens the gate
"""


class Gate:
    """The `go` file the app waits for, and the pids of the workers that reached it."""

    def __init__(self, app_dir: Path) -> None:
        self.app_dir = app_dir
        (app_dir / "started").mkdir()

    def arrived(self) -> set[int]:
        return {int(path.name) for path in (self.app_dir / "started").iterdir()}

    def wait_arrivals(self, count: int) -> set[int]:
        wait_until(lambda: len(self.arrived()) >= count, message=f"{count} workers in start-up")
        return self.arrived()

    def open(self) -> None:
        (self.app_dir / "go").touch()

    def close(self) -> None:
        (self.app_dir / "go").unlink()


@pytest.fixture
def gate(tmp_path: Path) -> Gate:
    (tmp_path / "pidapp.py").write_text(PID_APP)
    (tmp_path / "gated.py").write_text(GATED_APP)
    return Gate(tmp_path)


@contextlib.contextmanager
def gated_supervisor(gate: Gate, workers: int) -> Iterator[tuple[CliProcess, LogTail]]:
    """`celeris gated:app --workers N` on port 0; stopped (process group) afterwards."""
    process = start_cli(
        "gated:app", "--app-dir", str(gate.app_dir), "--port", "0", "--no-access-log",
        "--workers", str(workers), wait_ready=False,
    )  # fmt: skip
    tail = LogTail(process.proc)
    try:
        tail.wait_for(r"Started supervisor process")
        yield process, tail
    finally:
        stop_process(process.proc)


def serving_port(tail: LogTail) -> int:
    """The port, from the line a worker logs once it listens (the master logs the --port it got)."""
    return int(tail.wait_for(r"running on http://127\.0\.0\.1:(\d+)")[0][1])


def kill_before_ready(tail: LogTail, pid: int) -> None:
    os.kill(pid, signal.SIGKILL)
    tail.wait_for(rf"Worker \[{pid}\] failed to start \(killed by SIGKILL\)")


@pytest.mark.timeout(20)
def test_a_worker_killed_while_the_first_workers_start_is_replaced(gate: Gate) -> None:
    with gated_supervisor(gate, workers=2) as (process, tail):
        victim = min(gate.wait_arrivals(2))
        kill_before_ready(tail, victim)
        gate.open()
        tail.wait_for(r"is serving", count=2)
        assert len(gate.arrived()) == 3  # the replacement
        assert victim not in map(int, worker_pids(tail))
        assert fetch(serving_port(tail))[0] == 200
        assert process.proc.poll() is None
    assert "No worker could start" not in tail.text()


@pytest.mark.timeout(20)
def test_a_replacement_killed_before_ready_when_none_serves_is_replaced_again(gate: Gate) -> None:
    with gated_supervisor(gate, workers=2) as (process, tail):
        gate.open()
        tail.wait_for(r"is serving", count=2)
        first = gate.arrived()
        gate.close()
        for pid in first:  # both serving workers die: their replacements wait at the gate
            os.kill(pid, signal.SIGKILL)
        replacements = gate.wait_arrivals(4) - first
        kill_before_ready(tail, min(replacements))
        gate.open()
        tail.wait_for(r"is serving", count=4)
        assert len(worker_pids(tail)) == 2
        assert fetch(serving_port(tail))[0] == 200
        assert process.proc.poll() is None
    assert "No worker could start" not in tail.text()


@pytest.mark.timeout(30)
def test_a_start_up_killed_every_time_still_stops_the_supervisor(gate: Gate) -> None:
    with gated_supervisor(gate, workers=2) as (process, tail):
        killed: set[int] = set()
        while process.proc.poll() is None:
            wait_until(lambda: gate.arrived() - killed or process.proc.poll() is not None, timeout=15)
            for pid in gate.arrived() - killed:
                with contextlib.suppress(ProcessLookupError):  # the stopping master may have got it
                    os.kill(pid, signal.SIGKILL)
                killed.add(pid)
        assert process.proc.wait(10) == 1
    tail.wait_eof()  # the master's last lines may still be in the pipe
    failed = tail.matches(r"failed to start \(killed by SIGKILL\)")
    assert len(failed) == STARTUP_KILL_RETRIES + 1
    assert "No worker could start; stopping." in tail.text()
