"""Builders for domain objects in tests. Every test makes its own ids, so tests never share data."""

from __future__ import annotations

import uuid
from typing import Any

from errorreplay_server.capture.clock import ReceiveClock
from errorreplay_server.domain.model import (
    MICROS_PER_HOUR,
    ErrorReport,
    ErrorSnapshot,
    NewError,
    Severity,
    Source,
    now_micros,
)

CLOCK = ReceiveClock()


def uid(prefix: str = "") -> str:
    return f"{prefix}{uuid.uuid4().hex[:12]}"


# Real epoch microseconds stay below 2**53 until the year 2255. ArcadeDB's index range scans
# answer wrongly for integers above it (store/neo4j_dialect.py), so test times stay below it too.
MAX_TEST_MICROS = 2**53
DAY = 24 * MICROS_PER_HOUR


def own_days(t0: int, run: str, slot: int) -> int:
    """The first hour of a stretch of days after `t0` that no other test writes to: for tests whose
    statistics must count only their own errors, in a database the session shares (the rollups
    are per hour, for every error). `slot` (0, 1, 2) keeps tests apart, `run` (a uid) runs."""
    base = t0 - t0 % MICROS_PER_HOUR + (1_000 + slot * 20_000 + int(run[-6:], 16) % 20_000) * DAY
    assert base + 30 * DAY < MAX_TEST_MICROS
    return base


def new_error(
    message: str = "connection refused",
    *,
    severity: Severity = Severity.HIGH,
    source: Source = Source.APPLICATION,
    occurred_at: int | None = None,
    request_id: str = "",
    group_id: str | None = None,
    **fields: Any,
) -> NewError:
    report = ErrorReport(
        message=message,
        severity=severity,
        source=source,
        occurred_at=occurred_at if occurred_at is not None else now_micros(),
        **fields,
    )
    received_at = CLOCK.next()
    gid = group_id or uid("grp_")
    snapshot = ErrorSnapshot(
        error_id=f"err_{received_at:014x}{uuid.uuid4().hex[:10]}",
        group_id=gid,
        received_at=received_at,
        report=report,
        fingerprint=gid.removeprefix("grp_"),
        request_id=request_id,
    )
    return NewError(snapshot, group_title=f"{fields.get('error_type', 'Error')}: {message[:40]}")
