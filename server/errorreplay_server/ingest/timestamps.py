"""Timestamps as foreign formats send them: RFC 3339 text (nanoseconds allowed) or epoch seconds."""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta

from errorreplay_server.domain.model import MICROS_PER_SECOND, Micros

_FRACTION = re.compile(r"\.(\d+)")
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


def parse_timestamp(value: object) -> Micros | None:
    """Epoch µs, or None when `value` is missing or not a timestamp (the caller decides the default)."""
    if isinstance(value, bool) or value is None:
        return None
    if isinstance(value, int | float):
        if not 0 < value < 1e11:  # seconds; anything else is not a plausible event time
            return None
        return round(value * MICROS_PER_SECOND)
    if not isinstance(value, str) or not value or len(value) > 64:
        return None
    text = value.strip()
    # Go and JavaScript send up to 9 fraction digits; datetime takes 6.
    text = _FRACTION.sub(lambda m: "." + m.group(1)[:6].ljust(6, "0"), text, count=1)
    if text.endswith(("Z", "z")):
        text = text[:-1] + "+00:00"
    try:
        parsed = datetime.fromisoformat(text)
    except ValueError:
        return None
    if parsed.tzinfo is None:
        parsed = parsed.replace(tzinfo=UTC)
    if parsed.year < 1971:  # Go's zero time (0001-01-01) means "unset" in Alertmanager's endsAt
        return None
    return (parsed - _EPOCH) // timedelta(microseconds=1)
