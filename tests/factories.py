"""Builders for domain objects in tests. Every test makes its own ids, so tests never share data."""

from __future__ import annotations

import uuid
from typing import Any

from errorreplay_server.capture.clock import ReceiveClock
from errorreplay_server.domain.model import (
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
