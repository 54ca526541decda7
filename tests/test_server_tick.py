"""The clock tick's timeout sweep: one connection's failing check never ends the tick for the rest."""

from __future__ import annotations

import logging

import pytest

from celeris_asgi.server import sweep_timeouts
from celeris_asgi.state import Connection

pytestmark = pytest.mark.timeout(10)


class Transport:
    def __init__(self) -> None:
        self.aborted = False

    def abort(self) -> None:
        self.aborted = True


class Checked:
    """A connection whose timeout check records the time it was given, or raises."""

    def __init__(self, fails: bool) -> None:
        self.fails = fails
        self.checked_at: list[float] = []
        self.transport = Transport()

    def check_timeouts(self, now: float) -> None:
        if self.fails:
            raise RuntimeError("a bug in one connection's timers")
        self.checked_at.append(now)

    def shutdown(self) -> None:
        pass


def test_a_failing_check_is_logged_and_dropped_and_the_others_are_checked(caplog: pytest.LogCaptureFixture) -> None:
    broken, healthy = Checked(fails=True), Checked(fails=False)
    connections: set[Connection] = {broken, healthy}
    with caplog.at_level(logging.ERROR, logger="celeris.error"):
        sweep_timeouts(connections, 12.5)
    assert healthy.checked_at == [12.5] and not healthy.transport.aborted
    assert broken.transport.aborted and connections == {healthy}
    assert "timeout check failed" in caplog.text and "a bug in one connection's timers" in caplog.text
    sweep_timeouts(connections, 13.0)  # the next tick goes on with the connections left
    assert healthy.checked_at == [12.5, 13.0]
