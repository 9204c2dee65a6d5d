"""The one duration syntax of every ERRORREPLAY_* setting: `500ms`, `2s`, `5m`, `24h`, or seconds."""

from __future__ import annotations

import re

from errorreplay_server.domain.model import MICROS_PER_SECOND, Micros

_DURATION = re.compile(r"\s*([0-9]*\.?[0-9]+)\s*(ms|s|m|h|)\s*")
_UNIT_SECONDS = {"ms": 0.001, "s": 1.0, "": 1.0, "m": 60.0, "h": 3600.0}


def parse_duration(text: str) -> float:
    """Seconds."""
    match = _DURATION.fullmatch(text)
    if not match:
        raise ValueError(f"not a duration: {text!r}")
    return float(match.group(1)) * _UNIT_SECONDS[match.group(2)]


def parse_duration_micros(text: str) -> Micros:
    return round(parse_duration(text) * MICROS_PER_SECOND)
