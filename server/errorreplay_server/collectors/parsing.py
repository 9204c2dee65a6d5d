"""Parsing shared by the log and trace collectors: levels, timestamps and size caps."""

from __future__ import annotations

import re
from collections.abc import Mapping
from datetime import UTC, datetime

from errorreplay_server.domain.model import MICROS_PER_SECOND, Micros

UNKNOWN_LEVEL = "unknown"

# Labels and fields that carry a level in Loki (detected_level is Loki 3's), OTel and ECS.
LEVEL_KEYS = ("level", "detected_level", "severity", "severity_text", "lvl", "loglevel", "log_level", "log.level")

_LEVEL_WORDS = {
    "trace": "trace",
    "verbose": "debug",
    "debug": "debug",
    "dbug": "debug",
    "info": "info",
    "information": "info",
    "informational": "info",
    "notice": "info",
    "warn": "warn",
    "warning": "warn",
    "error": "error",
    "err": "error",
    "eror": "error",
    "critical": "critical",
    "crit": "critical",
    "alert": "critical",
    "fatal": "fatal",
    "panic": "fatal",
    "emerg": "fatal",
}

# `level=error`, `"level":"error"`, `severity: warn` anywhere in the line, else a bare upper-case
# level word; lower-case bare words are too common in prose ("no error") to trust.
_KEYED_LEVEL = re.compile(r"""(?i)\b(?:level|lvl|severity|loglevel)["']?\s*[:=]\s*["']?([a-z]+)""")
_BARE_LEVEL = re.compile(r"\b(TRACE|DEBUG|INFO|NOTICE|WARN|WARNING|ERROR|CRITICAL|FATAL|PANIC)\b")

_ISO = re.compile(
    r"(\d{4}-\d{2}-\d{2})[T ](\d{2}:\d{2}:\d{2})(?:[.,](\d+))?\s*(Z|[+-]\d{2}:?\d{2})?",
    re.IGNORECASE,
)


def normalise_level(value: object) -> str:
    """One of trace, debug, info, warn, error, critical, fatal; else "unknown"."""
    return _LEVEL_WORDS.get(str(value).strip().lower(), UNKNOWN_LEVEL)


def detect_level(labels: Mapping[str, str], text: str) -> str:
    """The level from the labels if one is set, else from the text of the line."""
    for key in LEVEL_KEYS:
        if key in labels:
            level = normalise_level(labels[key])
            if level != UNKNOWN_LEVEL:
                return level
    match = _KEYED_LEVEL.search(text)
    if match:
        level = normalise_level(match.group(1))
        if level != UNKNOWN_LEVEL:
            return level
    match = _BARE_LEVEL.search(text)
    return normalise_level(match.group(1)) if match else UNKNOWN_LEVEL


def parse_timestamp(value: object) -> Micros | None:
    """Epoch microseconds from an ISO 8601 string (any number of fraction digits, as Azure and
    Elasticsearch send up to 9) or from epoch milliseconds; None when it is neither."""
    if isinstance(value, bool):
        return None
    if isinstance(value, int | float):
        return round(value * 1000)  # epoch_millis, Elasticsearch's numeric date
    if not isinstance(value, str):
        return None
    text = value.strip()
    if text.isdigit():
        return int(text) * 1000
    match = _ISO.fullmatch(text)
    if not match:
        return None
    date, clock, fraction, zone = match.groups()
    offset = "+00:00" if zone is None or zone.upper() == "Z" else zone
    if len(offset) == 5:
        offset = offset[:3] + ":" + offset[3:]
    try:
        whole = datetime.fromisoformat(f"{date}T{clock}{offset}")
    except ValueError:
        return None
    micros = int((fraction or "0")[:6].ljust(6, "0"))
    return int(whole.timestamp()) * MICROS_PER_SECOND + micros


def iso_utc(at: Micros) -> str:
    """`2024-05-01T12:00:00.123456Z`: exact to the microsecond, accepted by ES and KQL."""
    seconds, micros = divmod(at, MICROS_PER_SECOND)
    whole = datetime.fromtimestamp(seconds, UTC).strftime("%Y-%m-%dT%H:%M:%S")
    return f"{whole}.{micros:06d}Z"


def truncate(text: str, max_chars: int) -> str:
    if len(text) <= max_chars:
        return text
    return text[: max(max_chars - 1, 0)] + "…"
