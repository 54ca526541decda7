"""Flood accounting: token buckets for the frames a peer can make us spend work on for nothing.

Rapid reset (CVE-2023-44487), PING, SETTINGS and empty DATA floods: at most ``limit`` of each in
any ``flood_interval`` seconds; an empty bucket ends the connection with ENHANCE_YOUR_CALM.
"""

from __future__ import annotations

from collections.abc import Callable

from . import frames as f
from .settings import H2Settings
from .stream import H2ConnectionError

RESETS, PINGS, SETTINGS, EMPTY_DATA = range(4)


class FloodGuard:
    """One token bucket per kind of frame, refilled continuously from the engine's clock."""

    __slots__ = ("_buckets", "_clock", "_rates", "limits")

    def __init__(self, settings: H2Settings, clock: Callable[[], float]) -> None:
        self.limits = (
            settings.max_resets_per_interval,
            settings.max_pings_per_interval,
            settings.max_settings_per_interval,
            settings.max_empty_data_per_interval,
        )
        self._rates = tuple(limit / settings.flood_interval for limit in self.limits)
        self._clock = clock
        now = clock()
        self._buckets = [[float(limit), now] for limit in self.limits]

    def spend(self, kind: int, message: str) -> None:
        """Spend one token of a bucket; raise H2ConnectionError(ENHANCE_YOUR_CALM) when it is empty."""
        bucket = self._buckets[kind]
        now = self._clock()
        limit = self.limits[kind]
        tokens = min(limit, bucket[0] + (now - bucket[1]) * self._rates[kind])
        if tokens < 1:
            raise H2ConnectionError(f.ENHANCE_YOUR_CALM, message)
        bucket[0] = tokens - 1
        bucket[1] = now
