"""The receive clock: unique, increasing microsecond stamps that order captures."""

from __future__ import annotations

from errorreplay_server.domain.model import Micros, now_micros


class ReceiveClock:
    """Wall-clock microseconds, bumped by one where two captures would share a stamp.

    `received_at` doubles as the stream cursor, so it must be unique and must increase in commit
    order; the store commits in submission order and this clock stamps in submission order.
    """

    def __init__(self) -> None:
        self._last: Micros = 0

    def advance_past(self, stamp: Micros) -> None:
        """Never stamp at or before `stamp` (the newest stored one, after a restart)."""
        self._last = max(self._last, stamp)

    def next(self) -> Micros:
        stamp = max(now_micros(), self._last + 1)
        self._last = stamp
        return stamp
