"""Alertmanager's webhook (payload version 4) onto ErrorReport.

A firing alert becomes a report; a resolved alert names the group to resolve. The alert's
fingerprint is the report's fingerprint, so every episode of one alert lands in one group, and
the request id is the fingerprint with `startsAt`, so Alertmanager's repeats of one episode are
stored once while a re-fire (a new `startsAt`) is a new error (and, after a resolve, a regression).

The README (HTTP ingestion: Alertmanager) has the mapping and severity tables;
tests/unit/ingest/test_alertmanager.py tests them row by row.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from errorreplay_server.domain.errors import FieldViolation, InvalidArgument
from errorreplay_server.domain.model import ErrorReport, Micros, Severity, Source
from errorreplay_server.ingest.timestamps import parse_timestamp
from errorreplay_server.settings import Limits

SUPPORTED_VERSION = "4"

SEVERITY_LABEL: dict[str, Severity] = {
    "critical": Severity.CRITICAL,
    "page": Severity.CRITICAL,
    "fatal": Severity.CRITICAL,
    "emergency": Severity.CRITICAL,
    "error": Severity.HIGH,
    "high": Severity.HIGH,
    "major": Severity.HIGH,
    "warning": Severity.MEDIUM,
    "warn": Severity.MEDIUM,
    "medium": Severity.MEDIUM,
    "low": Severity.LOW,
    "minor": Severity.LOW,
    "info": Severity.INFO,
    "informational": Severity.INFO,
    "none": Severity.INFO,
}
"""`labels.severity` (case-insensitive) to severity; missing or unknown is DEFAULT_SEVERITY."""
DEFAULT_SEVERITY = Severity.MEDIUM
FALLBACK_RESOURCE_ID = "alertmanager"
FINGERPRINT_PREFIX = "alertmanager"


@dataclass(slots=True)
class AlertReport:
    """One alert of a notification: its report and request id (firing), and whether it resolved."""

    fingerprint: str
    resolved: bool
    report: ErrorReport
    request_id: str


def _cut(text: str, limit: int) -> str:
    return text if len(text) <= limit else text[: max(0, limit - 1)] + "…"


def _strings(value: object) -> dict[str, str]:
    if not isinstance(value, dict):
        return {}
    return {str(k): v if isinstance(v, str) else str(v) for k, v in value.items()}


def _fit(attributes: dict[str, Any], max_bytes: int) -> None:
    """Drop the longest annotations until the attributes fit the limit: an alert with a long
    runbook in its annotations is still stored (summary and description are in the message)."""
    annotations: dict[str, str] = attributes.get("annotations", {})
    while annotations and len(json.dumps(attributes, ensure_ascii=False)) > max_bytes:
        del annotations[max(annotations, key=lambda k: len(annotations[k]))]
    if not annotations:
        attributes.pop("annotations", None)


def severity_of(labels: dict[str, str]) -> Severity:
    return SEVERITY_LABEL.get(labels.get("severity", "").strip().lower(), DEFAULT_SEVERITY)


def resource_id_of(labels: dict[str, str], resource_labels: tuple[str, ...]) -> str:
    for name in resource_labels:
        if labels.get(name):
            return labels[name]
    return FALLBACK_RESOURCE_ID


def request_id_for(fingerprint: str, starts_at: Micros) -> str:
    return f"alertmanager:{fingerprint}:{starts_at}"


def parse_notification(
    payload: object, limits: Limits, resource_labels: tuple[str, ...], now: Micros
) -> list[AlertReport]:
    """Every alert of one webhook notification, in order. A malformed one is INVALID_ARGUMENT."""
    if not isinstance(payload, dict):
        raise InvalidArgument.single("notification", "must be a JSON object")
    version = payload.get("version")
    if version != SUPPORTED_VERSION:
        raise InvalidArgument.single("version", f"must be {SUPPORTED_VERSION!r} (Alertmanager's webhook payload)")
    alerts = payload.get("alerts")
    if not isinstance(alerts, list):
        raise InvalidArgument.single("alerts", "must be a list")
    if len(alerts) > limits.max_batch_size:
        raise InvalidArgument.single("alerts", f"has more than {limits.max_batch_size} alerts")
    context = {
        name: _cut(payload[key], 1024)
        for name, key in (("receiver", "receiver"), ("group_key", "groupKey"), ("external_url", "externalURL"))
        if isinstance(payload.get(key), str) and payload.get(key)
    }
    out: list[AlertReport] = []
    violations: list[FieldViolation] = []
    for i, alert in enumerate(alerts):
        try:
            out.append(alert_report(alert, f"alerts[{i}]", limits, resource_labels, now, context))
        except InvalidArgument as exc:
            violations += exc.violations
    if violations:
        raise InvalidArgument(violations)
    return out


def alert_report(
    alert: object,
    where: str,
    limits: Limits,
    resource_labels: tuple[str, ...],
    now: Micros,
    notification: dict[str, str] | None = None,
) -> AlertReport:
    if not isinstance(alert, dict):
        raise InvalidArgument.single(where, "must be a JSON object")
    status = alert.get("status")
    if status not in ("firing", "resolved"):
        raise InvalidArgument.single(f"{where}.status", "must be 'firing' or 'resolved'")
    fingerprint = alert.get("fingerprint")
    if not isinstance(fingerprint, str) or not fingerprint or len(fingerprint) > limits.max_id_chars // 2:
        raise InvalidArgument.single(f"{where}.fingerprint", "is required (Alertmanager's alert fingerprint)")
    labels = _strings(alert.get("labels"))
    annotations = _strings(alert.get("annotations"))
    starts_at = parse_timestamp(alert.get("startsAt"))
    if starts_at is None:
        raise InvalidArgument.single(f"{where}.startsAt", "must be an RFC 3339 time")
    alertname = labels.get("alertname", "")
    message = annotations.get("summary") or annotations.get("description") or alertname or "alert without a name"
    tags: dict[str, str] = {}
    for key in sorted(labels)[: limits.max_tags]:
        tags[_cut(key, limits.max_tag_key_chars)] = _cut(labels[key], limits.max_tag_value_chars)
    attributes: dict[str, Any] = {}
    generator = alert.get("generatorURL")
    if isinstance(generator, str) and generator:
        attributes["generator_url"] = _cut(generator, 2048)
    if annotations:
        # At most 32, summary and description first.
        ordered = sorted(annotations.items(), key=lambda kv: (kv[0] not in ("summary", "description"), kv[0]))
        attributes["annotations"] = {k: _cut(v, 2048) for k, v in ordered[:32]}
    if notification:
        attributes["alertmanager"] = dict(notification)
    ends_at = parse_timestamp(alert.get("endsAt"))
    if status == "resolved" and ends_at is not None:
        attributes["ends_at"] = alert.get("endsAt")
    _fit(attributes, limits.max_attributes_bytes)
    report = ErrorReport(
        message=_cut(message, limits.max_message_chars),
        severity=severity_of(labels),
        source=Source.PROMETHEUS,
        resource_id=_cut(resource_id_of(labels, resource_labels), limits.max_id_chars),
        service=_cut(labels.get("service") or labels.get("job", ""), limits.max_id_chars),
        environment=_cut(labels.get("environment") or labels.get("env", ""), limits.max_id_chars),
        error_type=_cut(alertname, limits.max_id_chars),
        # A clock far ahead of ours must not make the alert unstorable; it happened "now" at the latest.
        occurred_at=min(starts_at, now) if now else starts_at,
        tags=tags,
        attributes=attributes,
        fingerprint=[FINGERPRINT_PREFIX, fingerprint],
    )
    return AlertReport(fingerprint, status == "resolved", report, request_id_for(fingerprint, starts_at))
