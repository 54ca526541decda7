"""What the prefork master knows about each worker process, and how it names their exits in logs."""

from __future__ import annotations

import os
import signal
from dataclasses import dataclass


@dataclass(eq=False)
class Worker:
    """What the master knows about one worker process."""

    pid: int
    fd: int
    generation: int
    started: float
    ready: bool = False
    ready_at: float = 0.0
    last_beat: float = 0.0
    stopping: bool = False
    stop_deadline: float = 0.0
    killed: bool = False
    retire: bytes | None = None
    replaces: int | None = None  # pid of the worker this one takes over from once READY

    @property
    def name(self) -> str:
        return f"worker [{self.pid}]"


def plural(count: int) -> str:
    return f"{count} worker{'' if count == 1 else 's'}"


def describe_exit(status: int) -> str:
    code = os.waitstatus_to_exitcode(status)
    if code < 0:
        try:
            return f"killed by {signal.Signals(-code).name}"
        except ValueError:
            return f"killed by signal {-code}"
    return f"exit code {code}"
