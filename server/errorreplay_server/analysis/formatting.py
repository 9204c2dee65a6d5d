"""Small text helpers for summaries and explanations. Pure and deterministic: no local time zone,
no locale."""

from __future__ import annotations

import re
from datetime import UTC, datetime

from errorreplay_server.domain.model import MICROS_PER_HOUR, MICROS_PER_MINUTE, MICROS_PER_SECOND, Micros
from errorreplay_server.domain.quantities import quantity

_SPACE = re.compile(r"\s+")
ELLIPSIS = "…"


def iso_time(us: Micros) -> str:
    """UTC, to the second: `2024-05-01T12:00:00Z`."""
    return datetime.fromtimestamp(us // MICROS_PER_SECOND, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def human_duration(us: Micros) -> str:
    """`45 s`, `30 min`, `2 h 5 min`; sub-second amounts read `0 s`. The sign is dropped."""
    us = abs(us)
    if us >= MICROS_PER_HOUR:
        hours, rest = divmod(us, MICROS_PER_HOUR)
        minutes = rest // MICROS_PER_MINUTE
        return f"{hours} h {minutes} min" if minutes else f"{hours} h"
    if us >= MICROS_PER_MINUTE:
        minutes, rest = divmod(us, MICROS_PER_MINUTE)
        seconds = rest // MICROS_PER_SECOND
        return f"{minutes} min {seconds} s" if seconds else f"{minutes} min"
    return f"{us // MICROS_PER_SECOND} s"


def one_line(text: str, max_chars: int) -> str:
    """Whitespace collapsed to single spaces, cut to max_chars with an ellipsis."""
    flat = _SPACE.sub(" ", text).strip()
    if len(flat) <= max_chars:
        return flat
    return flat[: max(0, max_chars - 1)].rstrip() + ELLIPSIS


def number(value: float, unit: str = "") -> str:
    """`97%` for percent series, `0.25 s`, `1.2e+03 req/s`, `1.05 GB`; 4 significant digits."""
    return quantity(value, unit)
