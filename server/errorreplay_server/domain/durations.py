"""The one duration grammar of every setting (variables, the config file) and of the CLI:
`500ms`, `30s`, `5m`, `2h`, `7d`, or plain seconds (`90`, `1.5`). A number in the TOML file is
seconds too."""

from __future__ import annotations

import re

from errorreplay_server.domain.model import MICROS_PER_SECOND, Micros

_DURATION = re.compile(r"\s*(\d+(?:\.\d*)?|\.\d+)\s*(ms|s|m|h|d|)\s*")
_UNIT_SECONDS = {"ms": 0.001, "s": 1.0, "": 1.0, "m": 60.0, "h": 3600.0, "d": 86_400.0}
DURATION_FORMS = "500ms, 30s, 5m, 2h or 7d"


def parse_duration(value: str | float) -> float:
    """Seconds; ValueError with the accepted forms otherwise."""
    if isinstance(value, bool):
        raise ValueError(f"{value!r} is not a duration such as {DURATION_FORMS}")
    if isinstance(value, int | float):
        if value >= 0 and value != float("inf"):
            return float(value)
        raise ValueError(f'"{value}" is not a duration such as {DURATION_FORMS}')
    match = _DURATION.fullmatch(value)
    if not match:
        raise ValueError(f'"{value}" is not a duration such as {DURATION_FORMS}')
    return float(match.group(1)) * _UNIT_SECONDS[match.group(2)]


def parse_duration_micros(value: str | float) -> Micros:
    return round(parse_duration(value) * MICROS_PER_SECOND)


def format_duration(seconds: float) -> str:
    """The shortest exact spelling in the grammar: 600 -> `10m`, 0.5 -> `500ms`."""
    if seconds == 0:
        return "0s"
    for unit in ("d", "h", "m", "s"):
        count = seconds / _UNIT_SECONDS[unit]
        if count == int(count):
            return f"{int(count)}{unit}"
    millis = seconds * 1000
    if abs(millis - round(millis)) < 1e-9:
        return f"{round(millis)}ms"
    return f"{seconds:g}s"
