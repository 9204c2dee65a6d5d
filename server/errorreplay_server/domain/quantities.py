"""Metric values as people read them: `210 MB`, `1.05 GB`, `97%`, `0.25 s`."""

from __future__ import annotations

PERCENT_UNITS = ("percent", "%")
BYTES_UNIT = "bytes"
# Units spelled out the way people write them.
_UNIT_TEXT = {"seconds": "s", "percent_of_core": "% of a core"}
# Decimal prefixes, as Prometheus and most dashboards show bytes by default.
_BYTE_PREFIXES = (("TB", 1e12), ("GB", 1e9), ("MB", 1e6), ("kB", 1e3))


def quantity(value: float, unit: str = "", digits: int = 4) -> str:
    """`value` with its unit, to `digits` significant digits; bytes get a decimal prefix."""
    if unit == BYTES_UNIT:
        for prefix, size in _BYTE_PREFIXES:
            if abs(value) >= size:
                return f"{value / size:.{digits}g} {prefix}"
        return f"{value:.{digits}g} B"
    text = f"{value:.{digits}g}"
    if unit in PERCENT_UNITS:
        return f"{text}%"
    unit = _UNIT_TEXT.get(unit, unit)
    if unit.startswith("%"):
        return f"{text}{unit}"
    return f"{text} {unit}" if unit else text


def limit_closeness(value: float, unit: str) -> str:
    """How close a share of a capacity came to all of it ("" for other units)."""
    if unit not in PERCENT_UNITS:
        return ""
    if value >= 100.0:
        return ", at its limit (100%)"
    return f", {100.0 - value:.2g} points below its limit (100%)"
