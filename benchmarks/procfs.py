"""Readers of /proc: process trees, CPU time, RSS, open sockets, and per-CPU busy time.

CpuWindow brackets one load run and answers three questions about it: how much CPU the server
tree used (CPU per request), how busy each pinned CPU was (server-bound or load-bound), and how
much CPU went to processes that are not part of the benchmark at all (a noisy neighbour).
"""

from __future__ import annotations

import contextlib
import os
import resource
import time
from collections.abc import Callable
from pathlib import Path

CLOCK_TICKS = os.sysconf("SC_CLK_TCK")


def _stat_fields(pid: int) -> list[str]:
    """Fields of /proc/PID/stat after the command name (which may hold spaces and parentheses)."""
    data = Path(f"/proc/{pid}/stat").read_text()
    return data[data.rindex(")") + 2 :].split()


def process_tree(root: int) -> list[int]:
    """root and all its descendants, parents before children."""
    children: dict[int, list[int]] = {}
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            with contextlib.suppress(OSError, ValueError, IndexError):
                children.setdefault(int(_stat_fields(int(entry))[1]), []).append(int(entry))
    order, queue = [], [root]
    while queue:
        pid = queue.pop(0)
        order.append(pid)
        queue.extend(sorted(children.get(pid, [])))
    return order


def cpu_seconds(pids: list[int]) -> float:
    """utime+stime of the live tree plus cutime+cstime (children already reaped), in seconds."""
    ticks = 0
    for pid in pids:
        with contextlib.suppress(OSError):
            fields = _stat_fields(pid)
            ticks += sum(int(value) for value in fields[11:15])  # utime stime cutime cstime
    return ticks / CLOCK_TICKS


def rss_bytes(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024
    return 0


def socket_count(pid: int) -> int:
    count = 0
    with contextlib.suppress(OSError):
        for fd in os.listdir(f"/proc/{pid}/fd"):
            with contextlib.suppress(OSError):
                count += os.readlink(f"/proc/{pid}/fd/{fd}").startswith("socket:")
    return count


def _cpu_ticks(cpus: list[int]) -> dict[int, tuple[int, int, int]]:
    """cpu -> (busy, softirq, total) jiffies; idle and iowait are not busy."""
    found = {}
    for line in Path("/proc/stat").read_text().splitlines():
        name, *values = line.split()
        if name.startswith("cpu") and name[3:].isdigit() and int(name[3:]) in cpus:
            user, nice, system, idle, iowait, irq, softirq, steal = (int(v) for v in values[:8])
            total = user + nice + system + idle + iowait + irq + softirq + steal
            found[int(name[3:])] = (total - idle - iowait, softirq, total)
    return found


def _own_cpu() -> tuple[float, float]:
    """(this process, its reaped children) CPU seconds: the harness and the load generator."""
    me, kids = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
    return me.ru_utime + me.ru_stime, kids.ru_utime + kids.ru_stime


class CpuWindow:
    """Context manager around one load run on pinned CPUs (server_cpu, load_cpu may be None)."""

    def __init__(self, server_pids: Callable[[], list[int]], server_cpu: int | None, load_cpu: int | None):
        self.server_pids = server_pids
        self.cpus = [c for c in (server_cpu, load_cpu) if c is not None]
        self.server_cpu_s = 0.0
        self.loadgen_cpu_s = 0.0
        self.server_cpu_busy: float | None = None
        self.load_cpu_busy: float | None = None
        self.foreign_cores: float | None = None

    def __enter__(self) -> CpuWindow:
        self._ticks = _cpu_ticks(self.cpus)
        self._server = cpu_seconds(self.server_pids())
        self._own = _own_cpu()
        self._wall = time.monotonic()
        return self

    def __exit__(self, *exc: object) -> None:
        wall = time.monotonic() - self._wall
        own = _own_cpu()
        self.server_cpu_s = cpu_seconds(self.server_pids()) - self._server
        self.loadgen_cpu_s = own[1] - self._own[1]
        harness = own[0] - self._own[0]
        ticks = _cpu_ticks(self.cpus)
        if len(self.cpus) != 2 or len(ticks) != 2 or wall <= 0:
            return
        shares = []
        process_ticks = 0
        for cpu in self.cpus:
            busy, softirq, total = (after - before for after, before in zip(ticks[cpu], self._ticks[cpu], strict=True))
            shares.append(busy / total if total > 0 else 0.0)
            process_ticks += busy - softirq  # softirq (loopback TCP) is charged to no process
        self.server_cpu_busy, self.load_cpu_busy = shares
        # CPU the two pinned cores spent on anything but server, load generator and harness.
        foreign = process_ticks / CLOCK_TICKS - self.server_cpu_s - self.loadgen_cpu_s - harness
        self.foreign_cores = max(0.0, foreign / wall)
