"""Builders for the analysis tests: snapshots at chosen times, on chosen resources."""

from __future__ import annotations

from typing import Any

from errorreplay_server.domain.model import (
    MICROS_PER_MINUTE,
    Change,
    ChangeKind,
    Dependency,
    ErrorContext,
    ErrorReport,
    ErrorSnapshot,
    Micros,
    Severity,
    Source,
)

# 2024-05-01T12:00:00Z: a fixed origin keeps explanations and their times reproducible.
T0: Micros = 1_714_564_800 * 1_000_000
MIN = MICROS_PER_MINUTE


def snap(
    error_id: str,
    resource_id: str = "",
    at: Micros = T0,
    *,
    message: str = "request failed",
    severity: Severity = Severity.HIGH,
    context: ErrorContext | None = None,
    **report_fields: Any,
) -> ErrorSnapshot:
    report = ErrorReport(
        message=message,
        severity=severity,
        source=Source.APPLICATION,
        resource_id=resource_id,
        occurred_at=at,
        **report_fields,
    )
    return ErrorSnapshot(
        error_id=error_id,
        group_id="grp_test",
        received_at=at,
        report=report,
        fingerprint="fp",
        context=context or ErrorContext(),
    )


def edges(*pairs: str) -> list[Dependency]:
    """edges("web>api", "api>db"): web DEPENDS_ON api, api DEPENDS_ON db."""
    out = []
    for pair in pairs:
        dependent, dependency = pair.split(">")
        out.append(Dependency(dependent, dependency))
    return out


def change(
    change_id: str,
    resource_id: str,
    at: Micros,
    version: str = "",
    kind: ChangeKind = ChangeKind.DEPLOYMENT,
    **fields: Any,
) -> Change:
    return Change(change_id=change_id, kind=kind, resource_id=resource_id, occurred_at=at, version=version, **fields)


# web -> api -> db, lb -> web (issue 5, scenario 1).
CASCADE = edges("web>api", "api>db", "lb>web")
