"""Sandbox time: wall time plus an offset the admin API can advance.

Advancing the clock lets a test expire a token, an authorization code or a scroll
without waiting for it.
"""

from __future__ import annotations

import time
from datetime import UTC, datetime, timedelta, timezone

BRT = timezone(timedelta(hours=-3))


class Clock:
    def __init__(self) -> None:
        self.offset_s = 0.0
        self._last_ms = 0

    def now(self) -> float:
        return time.time() + self.offset_s

    def advance(self, seconds: float) -> None:
        self.offset_s += seconds

    def tick_ms(self) -> int:
        """Milliseconds now, strictly increasing, so every change gets a later stamp."""
        ms = int(self.now() * 1000)
        if ms <= self._last_ms:
            ms = self._last_ms + 1
        self._last_ms = ms
        return ms


def iso_z(ms: int) -> str:
    """``2025-01-21T13:44:33.006Z``: the notification and item style."""
    dt = datetime.fromtimestamp(ms / 1000, tz=UTC)
    return dt.strftime("%Y-%m-%dT%H:%M:%S.") + f"{ms % 1000:03d}Z"


def iso_brt(ms: int) -> str:
    """``2022-04-08T17:01:30.000-03:00``: the order, shipment and claim style."""
    dt = datetime.fromtimestamp(ms / 1000, tz=BRT)
    return dt.strftime("%Y-%m-%dT%H:%M:%S.") + f"{ms % 1000:03d}-03:00"
