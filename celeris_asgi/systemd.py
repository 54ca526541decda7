"""systemd integration without a dependency: socket activation (LISTEN_FDS) and sd_notify.

Both follow sd_listen_fds(3) and sd_notify(3): the variables are for the process systemd started
(LISTEN_PID, and the main pid for NOTIFY_SOCKET), so they are taken out of the environment and
neither the workers nor the app's own subprocesses act on them.
"""

from __future__ import annotations

import os
import socket
import time

from celeris_asgi.logging import error_logger

LISTEN_FDS_START = 3  # SD_LISTEN_FDS_START: the first passed socket


def listen_fd() -> int | None:
    """The socket systemd passed to this process (LISTEN_FDS, LISTEN_PID), or None."""
    pid, count = os.environ.get("LISTEN_PID"), os.environ.get("LISTEN_FDS")
    if pid is None or count is None or pid != str(os.getpid()):
        return None
    for name in ("LISTEN_PID", "LISTEN_FDS", "LISTEN_FDNAMES"):
        os.environ.pop(name, None)
    if not count.isdigit() or int(count) < 1:
        return None
    if int(count) > 1:
        error_logger.warning("systemd passed %s sockets (LISTEN_FDS); serving on the first, fd 3.", count)
    return LISTEN_FDS_START


class Notifier:
    """sd_notify: READY=1, RELOADING=1, STOPPING=1, STATUS=... as one datagram to $NOTIFY_SOCKET.

    Only the process that read the variable sends (forked workers inherit the object, not the right).
    """

    def __init__(self) -> None:
        self.address = os.environ.pop("NOTIFY_SOCKET", None)
        self.pid = os.getpid()
        if self.address and self.address.startswith("@"):
            self.address = "\0" + self.address[1:]  # an abstract socket name

    def __call__(self, *fields: str) -> None:
        if not self.address or os.getpid() != self.pid:
            return
        try:
            with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as sock:
                sock.sendto("\n".join(fields).encode(), self.address)
        except OSError as exc:
            error_logger.warning("sd_notify to %r failed: %s; no longer notifying systemd.", self.address, exc)
            self.address = None

    def reloading(self) -> None:
        """RELOADING=1 with MONOTONIC_USEC, which Type=notify-reload (systemd 253+) requires."""
        self("RELOADING=1", f"MONOTONIC_USEC={time.clock_gettime_ns(time.CLOCK_MONOTONIC) // 1000}")
