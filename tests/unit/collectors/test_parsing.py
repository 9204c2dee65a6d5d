from __future__ import annotations

import pytest

from errorreplay_server.collectors.parsing import detect_level, iso_utc, normalise_level, parse_timestamp, truncate
from errorreplay_server.domain.model import MICROS_PER_SECOND

AT = 1_700_000_000 * MICROS_PER_SECOND


@pytest.mark.parametrize(
    ("labels", "text", "level"),
    [
        ({"level": "ERROR"}, "whatever", "error"),
        ({"detected_level": "warn"}, "", "warn"),
        ({"severity": "Information"}, "", "info"),
        ({"level": "nonsense"}, "level=debug x", "debug"),
        ({}, 'ts=1 level=warn msg="slow"', "warn"),
        ({}, '{"level":"fatal","msg":"bye"}', "fatal"),
        ({}, "severity: crit", "critical"),
        ({}, "2023-11-14 ERROR connection reset", "error"),
        ({}, "PANIC: out of memory", "fatal"),
        ({}, "there was no error here", "unknown"),  # lower-case prose is not a level
        ({}, "", "unknown"),
    ],
)
def test_detect_level(labels: dict[str, str], text: str, level: str) -> None:
    assert detect_level(labels, text) == level


def test_normalise_level() -> None:
    assert [normalise_level(x) for x in ("WARNING", " err ", "verbose", 3)] == ["warn", "error", "debug", "unknown"]


@pytest.mark.parametrize(
    ("value", "micros"),
    [
        ("2023-11-14T22:13:20Z", AT),
        ("2023-11-14T22:13:20.5Z", AT + 500_000),
        ("2023-11-14T22:13:20.123456789Z", AT + 123_456),
        ("2023-11-14T22:13:20.1234567Z", AT + 123_456),
        ("2023-11-14T23:13:20+01:00", AT),
        ("2023-11-14T23:13:20+0100", AT),
        ("2023-11-14 22:13:20", AT),
        (1_700_000_000_000, AT),  # epoch millis
        ("1700000000000", AT),
        ("yesterday", None),
        (None, None),
        (True, None),
    ],
)
def test_parse_timestamp(value: object, micros: int | None) -> None:
    assert parse_timestamp(value) == micros


def test_iso_utc_round_trips() -> None:
    assert iso_utc(AT + 7) == "2023-11-14T22:13:20.000007Z"
    assert parse_timestamp(iso_utc(AT + 7)) == AT + 7


def test_truncate() -> None:
    assert truncate("abc", 3) == "abc"
    assert truncate("abcd", 3) == "ab…"
