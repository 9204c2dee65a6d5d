"""The Alertmanager mapping (README: HTTP ingestion, Alertmanager), row by row."""

from __future__ import annotations

import json

import pytest

from errorreplay_server.domain.errors import InvalidArgument
from errorreplay_server.domain.model import Severity, Source
from errorreplay_server.ingest.alertmanager import parse_notification
from errorreplay_server.settings import Limits

LABELS = ("service", "job", "instance")
NOW = 1_800_000_000_000_000


def alert(**fields: object) -> dict[str, object]:
    values: dict[str, object] = {
        "status": "firing",
        "labels": {"alertname": "HighErrorRate", "service": "api", "severity": "critical"},
        "annotations": {"summary": "5xx above 5%", "description": "the api fails"},
        "startsAt": "2026-12-02T08:00:00.123456789Z",
        "endsAt": "0001-01-01T00:00:00Z",
        "generatorURL": "http://prometheus:9090/graph?g0.expr=x",
        "fingerprint": "c4b4ab2e1d9a9a1f",
    }
    values.update(fields)
    return values


def notification(*alerts: dict[str, object]) -> dict[str, object]:
    return {
        "version": "4",
        "groupKey": '{}:{alertname="HighErrorRate"}',
        "status": "firing",
        "receiver": "errorreplay",
        "externalURL": "http://alertmanager:9093",
        "alerts": list(alerts),
    }


def one(**fields: object):
    (mapped,) = parse_notification(notification(alert(**fields)), Limits(), LABELS, NOW)
    return mapped


def test_a_firing_alert() -> None:
    mapped = one()
    r = mapped.report
    assert not mapped.resolved
    assert r.source == Source.PROMETHEUS
    assert (r.message, r.error_type, r.resource_id, r.service) == ("5xx above 5%", "HighErrorRate", "api", "api")
    assert r.severity == Severity.CRITICAL
    assert r.tags == {"alertname": "HighErrorRate", "service": "api", "severity": "critical"}
    assert r.attributes["generator_url"] == "http://prometheus:9090/graph?g0.expr=x"
    assert r.attributes["annotations"] == {"description": "the api fails", "summary": "5xx above 5%"}
    assert r.attributes["alertmanager"]["receiver"] == "errorreplay"
    assert r.occurred_at == 1_796_198_400_123_456
    assert r.fingerprint == ["alertmanager", "c4b4ab2e1d9a9a1f"]
    assert mapped.request_id == "alertmanager:c4b4ab2e1d9a9a1f:1796198400123456"


def test_message_falls_back_from_summary_to_description_to_alertname() -> None:
    assert one(annotations={"description": "d"}).report.message == "d"
    assert one(annotations={}).report.message == "HighErrorRate"


@pytest.mark.parametrize(
    ("label", "severity"),
    [
        ("critical", Severity.CRITICAL),
        ("page", Severity.CRITICAL),
        ("error", Severity.HIGH),
        ("major", Severity.HIGH),
        ("warning", Severity.MEDIUM),
        ("Warning", Severity.MEDIUM),
        ("low", Severity.LOW),
        ("minor", Severity.LOW),
        ("info", Severity.INFO),
        ("none", Severity.INFO),
        ("bogus", Severity.MEDIUM),
        (None, Severity.MEDIUM),
    ],
)
def test_severity_table(label: str | None, severity: Severity) -> None:
    labels = {"alertname": "A"} if label is None else {"alertname": "A", "severity": label}
    assert one(labels=labels).report.severity == severity


def test_resource_id_from_the_first_configured_label_present() -> None:
    assert one(labels={"alertname": "A", "job": "node", "instance": "h:9100"}).report.resource_id == "node"
    assert one(labels={"alertname": "A", "instance": "h:9100"}).report.resource_id == "h:9100"
    assert one(labels={"alertname": "A"}).report.resource_id == "alertmanager"
    custom = parse_notification(notification(alert()), Limits(), ("instance", "service"), NOW)
    assert custom[0].report.resource_id == "api"  # no instance label: the next one


def test_episodes_of_one_alert_share_the_fingerprint_and_differ_in_request_id() -> None:
    first, again, refire = one(), one(), one(startsAt="2026-12-02T09:00:00Z")
    assert first.request_id == again.request_id != refire.request_id
    assert first.report.fingerprint == refire.report.fingerprint


def test_resolved_alert() -> None:
    mapped = one(status="resolved", endsAt="2026-12-02T08:05:00Z")
    assert mapped.resolved and mapped.report.fingerprint == ["alertmanager", "c4b4ab2e1d9a9a1f"]


def test_a_start_in_the_future_is_stored_as_now() -> None:
    assert one(startsAt="2099-01-01T00:00:00Z").report.occurred_at == NOW


@pytest.mark.parametrize(
    ("payload", "field"),
    [
        ([], "notification"),
        ({**notification(alert()), "version": "3"}, "version"),
        ({**notification(), "alerts": "x"}, "alerts"),
        (notification(alert(status="pending")), "alerts[0].status"),
        (notification(alert(fingerprint="")), "alerts[0].fingerprint"),
        (notification(alert(startsAt="yesterday")), "alerts[0].startsAt"),
    ],
)
def test_malformed_notifications_name_the_field(payload: object, field: str) -> None:
    with pytest.raises(InvalidArgument) as info:
        parse_notification(payload, Limits(), LABELS, NOW)
    assert info.value.violations[0].field == field


def test_long_annotations_are_dropped_until_the_attributes_fit() -> None:
    annotations = {f"runbook_{i}": "x" * 2000 for i in range(32)} | {"summary": "short"}
    r = one(annotations=annotations).report
    assert r.message == "short" and r.attributes["annotations"]["summary"] == "short"
    assert len(json.dumps(r.attributes)) <= Limits().max_attributes_bytes
