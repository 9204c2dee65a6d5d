"""The lines nearest the error: newest-first up to the error, oldest-first after it.

A dense window holds far more lines than the cap, and one query in either direction would
return only one edge of it, far from the error. Two queries bound the cap on each side.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

from errorreplay_server.collectors.base import CollectorFailure, CollectorResult, Window
from errorreplay_server.domain.model import CollectionState, LogLine, Micros


@dataclass(slots=True, frozen=True)
class Side:
    """One half of the window. `start` and `end` are inclusive, in microseconds."""

    start: Micros
    end: Micros
    limit: int
    newest_first: bool


def sides(window: Window, at: Micros, before: int, after: int) -> list[Side]:
    at = min(max(at, window.start), window.end)
    result = []
    if before > 0:
        result.append(Side(window.start, at, before, newest_first=True))
    if after > 0 and at < window.end:
        result.append(Side(at + 1, window.end, after, newest_first=False))
    return result


async def collect_sides(
    fetch: Callable[[Side], Awaitable[list[LogLine]]], window: Window, at: Micros, before: int, after: int
) -> CollectorResult:
    """Run `fetch` for both sides concurrently; a side that fails leaves a note, not a failure,
    unless both do."""
    parts = sides(window, at, before, after)
    outcomes = await asyncio.gather(*(fetch(side) for side in parts), return_exceptions=True)
    lines: list[LogLine] = []
    failures: list[CollectorFailure] = []
    for outcome in outcomes:
        if isinstance(outcome, CollectorFailure):
            failures.append(outcome)
        elif isinstance(outcome, BaseException):
            raise outcome
        else:
            lines.extend(outcome)
    lines.sort(key=lambda line: line.time)
    if not lines:
        # With a side unread, "no lines" would be a guess: report the failure instead.
        return CollectorResult.failed(str(failures[0])) if failures else CollectorResult.empty("no log lines")
    detail = f"partial: {failures[0]}" if failures else ""
    return CollectorResult(CollectionState.OK, detail, logs=lines)


def nearest(lines: list[LogLine], side: Side) -> list[LogLine]:
    """The `side.limit` lines nearest the error, as a backend may return more across streams."""
    lines.sort(key=lambda line: line.time, reverse=side.newest_first)
    return lines[: side.limit]
