"""Rules (config parsing, triggers, quiet periods) and the exact payload of every target."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from errorreplay_server.analysis.model import (
    Cause,
    Evidence,
    Propagation,
    Recommendation,
    RecommendationKind,
    ReplayAnalysis,
    RootCause,
    RootCauseCategory,
)
from errorreplay_server.domain.model import (
    MICROS_PER_SECOND,
    CaptureOutcome,
    Change,
    ChangeKind,
    ErrorReport,
    ErrorSnapshot,
    Severity,
    Source,
)
from errorreplay_server.notify import targets
from errorreplay_server.notify.config import NotifySettings, Target, TargetKind, TriggerKind
from errorreplay_server.notify.message import compose
from errorreplay_server.notify.rules import RuleEngine

T0 = 1_780_000_000 * MICROS_PER_SECOND
CONFIG = """
[notifications.targets.oncall]
kind = "slack"
url = "https://hooks.slack.com/services/T000/B000/XXXX"

[notifications.targets.audit]
kind = "webhook"
url = "https://receiver.example/hook"

[[notifications.rules]]
name = "new-in-prod"
filter = { environment = "production", min_severity = "high" }
trigger = "new_group"
target = "oncall"
quiet_period = "30m"

[[notifications.rules]]
name = "critical"
trigger = "severity"
min_severity = "critical"
target = "audit"

[[notifications.rules]]
name = "burst"
filter = { service = "orders-api" }
trigger = "burst"
burst_count = 3
burst_window = "1m"
target = "oncall"
quiet_period = 0
"""


def settings(tmp_path: Path, text: str = CONFIG, **env: str) -> NotifySettings:
    path = tmp_path / "errorreplay.toml"
    path.write_text(text)
    return NotifySettings.from_env({"ERRORREPLAY_CONFIG": str(path), **env})


def snapshot(
    group: str = "grp_a",
    severity: Severity = Severity.HIGH,
    environment: str = "production",
    service: str = "orders-api",
    received_at: int = T0,
) -> ErrorSnapshot:
    report = ErrorReport(
        message="POST /v1/orders failed: upstream <db-orders> answered 503 & gave up",
        severity=severity,
        source=Source.APPLICATION,
        resource_id="api-orders",
        service=service,
        environment=environment,
        occurred_at=received_at,
    )
    return ErrorSnapshot(f"err_{received_at}", group, received_at, report, "fp")


def outcome(snap: ErrorSnapshot, *, new_group: bool = False, regression: bool = False) -> CaptureOutcome:
    return CaptureOutcome(snap, duplicate=False, regression=regression, new_group=new_group)


def test_config_file_rules_and_env_credentials(tmp_path: Path) -> None:
    s = settings(
        tmp_path,
        ERRORREPLAY_NOTIFY_TARGET_AUDIT_SECRET="s3cret",
        ERRORREPLAY_NOTIFY_TARGET_ONCALL_URL="https://hooks.slack.com/services/T1/B1/FROMENV",
    )
    assert [r.name for r in s.rules] == ["new-in-prod", "critical", "burst"]
    first = s.rules[0]
    assert first.filter.environment == "production" and first.filter.min_severity == Severity.HIGH
    assert first.trigger.kind == TriggerKind.NEW_GROUP and first.quiet_period_seconds == 1800
    assert s.rules[1].trigger.min_severity == Severity.CRITICAL
    assert (s.rules[2].trigger.burst_count, s.rules[2].trigger.burst_window_seconds) == (3, 60)
    assert s.targets["oncall"].url.endswith("/FROMENV")  # the environment wins over the file
    assert s.targets["audit"].secret == "s3cret"
    # Credentials never show in a repr (and so in no log line that formats settings).
    assert "FROMENV" not in repr(s) and "s3cret" not in repr(s)


@pytest.mark.parametrize(
    ("replace", "by", "complaint"),
    [
        ('target = "audit"', 'target = "nowhere"', "target 'nowhere' is not in"),
        ('trigger = "severity"', 'trigger = "sometimes"', "trigger must be one of"),
        ("burst_count = 3", "burst_count = 0", "burst_count"),
        ('quiet_period = "30m"', 'quiet_period = "soon"', "quiet_period must be a duration"),
        ('environment = "production"', 'enviroment = "production"', "filter is not a valid ErrorFilter"),
    ],
)
def test_config_mistakes_are_named(tmp_path: Path, replace: str, by: str, complaint: str) -> None:
    with pytest.raises(ValueError, match=complaint):
        settings(tmp_path, CONFIG.replace(replace, by), ERRORREPLAY_NOTIFY_TARGET_AUDIT_SECRET="x")


def test_webhook_needs_a_secret(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="ERRORREPLAY_NOTIFY_TARGET_AUDIT_SECRET"):
        settings(tmp_path)


def test_triggers_filters_and_quiet_period(tmp_path: Path) -> None:
    s = settings(tmp_path, ERRORREPLAY_NOTIFY_TARGET_AUDIT_SECRET="x")
    engine = RuleEngine([r for r in s.rules if r.trigger.kind != TriggerKind.BURST])
    first = snapshot()
    assert [d.rule.name for d in engine.decide(outcome(first, new_group=True), T0)] == ["new-in-prod"]
    # Not production: the filter leaves it out.
    staging = snapshot(group="grp_b", environment="staging")
    assert engine.decide(outcome(staging, new_group=True), T0) == []
    # The same group again within 30 minutes: suppressed, counted.
    again = outcome(snapshot(received_at=T0 + 1), new_group=True)
    assert engine.decide(again, T0 + 60 * MICROS_PER_SECOND) == []
    assert engine.suppressed["new-in-prod"] == 1
    # After the quiet period it fires again.
    later = T0 + 31 * 60 * MICROS_PER_SECOND
    assert [d.rule.name for d in engine.decide(again, later)] == ["new-in-prod"]
    # Severity at or above CRITICAL.
    critical = snapshot(group="grp_c", severity=Severity.CRITICAL, service="billing")
    assert [d.rule.name for d in engine.decide(outcome(critical), T0)] == ["critical"]


def test_burst_needs_n_in_the_window(tmp_path: Path) -> None:
    s = settings(tmp_path, ERRORREPLAY_NOTIFY_TARGET_AUDIT_SECRET="x")
    engine = RuleEngine([r for r in s.rules if r.name == "burst"])
    second = MICROS_PER_SECOND

    def fire(at: int) -> bool:
        return bool(engine.decide(outcome(snapshot(received_at=at)), at))

    # Two, then a third 2 minutes later: the first two left the 1-minute window.
    assert [fire(T0), fire(T0 + second), fire(T0 + 120 * second)] == [False, False, False]
    assert fire(T0 + 121 * second) is False
    assert fire(T0 + 122 * second) is True  # three within a minute
    assert fire(T0 + 123 * second) is False  # the window starts over


def test_decisions_are_remembered_across_restart(tmp_path: Path) -> None:
    s = settings(tmp_path, ERRORREPLAY_NOTIFY_TARGET_AUDIT_SECRET="x")
    engine = RuleEngine(s.rules)
    engine.remember([("new-in-prod", "grp_a", T0)])
    assert engine.decide(outcome(snapshot(), new_group=True), T0 + MICROS_PER_SECOND) == []


def analysis() -> ReplayAnalysis:
    evidence = [Evidence(0, "chg_1", "DEPLOYMENT of db-orders v2.1.0 20m before the first error")]
    cause = Cause(RootCauseCategory.RECENT_CHANGE, "Deployment v2.1.0 of db-orders", 0.82, "db-orders", evidence)
    rollback = Recommendation(
        RecommendationKind.ROLLBACK_CHANGE, "Roll back db-orders v2.1.0", "It went out 20m before", "chg_1", 1
    )
    investigate = Recommendation(RecommendationKind.INVESTIGATE_ORIGIN, "Look at db-orders", "origin", "db-orders", 2)
    change = Change("chg_1", ChangeKind.DEPLOYMENT, "db-orders", T0 - 1200 * MICROS_PER_SECOND, "v2.1.0", "pool 20")
    return ReplayAnalysis(
        timeline=[],
        propagation=Propagation("err_db", "db-orders", [], "db-orders failed first"),
        root_cause=RootCause(cause, RootCauseCategory.RECENT_CHANGE, 0.82, [], evidence),
        recommendations=[investigate, rollback],
        related_changes=[change],
        related_errors=[],
        affected_resource_ids=[],
    )


def message(console: str = "https://er.example"):  # type: ignore[no-untyped-def]
    return compose("ntf_1", "new-in-prod", "new_group", snapshot(), "UpstreamUnavailable: POST", 7, analysis(), console)


def test_slack_block_kit_exact() -> None:
    body = targets.slack_payload(message())
    assert body == {
        "text": "[HIGH] UpstreamUnavailable: POST (orders-api)",
        "blocks": [
            {"type": "header", "text": {"type": "plain_text", "text": "UpstreamUnavailable: POST"}},
            {
                "type": "section",
                "text": {
                    "type": "mrkdwn",
                    "text": ":large_orange_circle: POST /v1/orders failed: upstream &lt;db-orders&gt; answered 503"
                    " &amp; gave up",
                },
                "fields": [
                    {"type": "mrkdwn", "text": "*Service*\norders-api"},
                    {"type": "mrkdwn", "text": "*Environment*\nproduction"},
                    {"type": "mrkdwn", "text": "*Severity*\nHIGH"},
                    {"type": "mrkdwn", "text": "*Count*\n7"},
                ],
            },
            {
                "type": "section",
                "text": {
                    "type": "mrkdwn",
                    "text": "*Root cause* (origin `db-orders`), 82% confidence: Deployment v2.1.0 of db-orders\n"
                    "> DEPLOYMENT of db-orders v2.1.0 20m before the first error",
                },
            },
            {
                "type": "section",
                "text": {
                    "type": "mrkdwn",
                    "text": "*Recommendation*: Roll back db-orders v2.1.0\nIt went out 20m before"
                    "\n*Then*: Look at db-orders",
                },
            },
            {
                "type": "section",
                "text": {
                    "type": "mrkdwn",
                    "text": "*Related changes*\n• DEPLOYMENT `db-orders` v2.1.0 at 2026-05-28T20:06:40Z: pool 20",
                },
            },
            {
                "type": "context",
                "elements": [
                    {
                        "type": "mrkdwn",
                        "text": "rule `new-in-prod` (new_group) · error `err_1780000000000000` · 2026-05-28T20:26:40Z",
                    }
                ],
            },
            {
                "type": "actions",
                "elements": [
                    {
                        "type": "button",
                        "text": {"type": "plain_text", "text": "Open replay"},
                        "url": "https://er.example/errors/err_1780000000000000",
                    }
                ],
            },
        ],
    }
    # Without a console URL there is no button.
    assert all(b["type"] != "actions" for b in targets.slack_payload(message(console=""))["blocks"])


def test_teams_adaptive_card_exact() -> None:
    body = targets.teams_payload(message())
    assert body["type"] == "message"
    (attachment,) = body["attachments"]
    assert attachment["contentType"] == "application/vnd.microsoft.card.adaptive"
    assert attachment["contentUrl"] is None
    card = attachment["content"]
    assert card["$schema"] == "http://adaptivecards.io/schemas/adaptive-card.json"
    assert (card["type"], card["version"]) == ("AdaptiveCard", "1.4")
    assert card["body"][0] == {
        "type": "TextBlock",
        "text": "UpstreamUnavailable: POST",
        "weight": "Bolder",
        "size": "Medium",
        "wrap": True,
    }
    assert card["body"][2] == {
        "type": "FactSet",
        "facts": [
            {"title": "Service", "value": "orders-api"},
            {"title": "Environment", "value": "production"},
            {"title": "Severity", "value": "HIGH"},
            {"title": "Count", "value": "7"},
        ],
    }
    texts = [b["text"] for b in card["body"] if b["type"] == "TextBlock"]
    assert "**Root cause** (origin db-orders), 82% confidence: Deployment v2.1.0 of db-orders" in texts
    assert "**Recommendations**\n\n1. Roll back db-orders v2.1.0\n2. Look at db-orders" in texts
    assert card["actions"] == [
        {"type": "Action.OpenUrl", "title": "Open replay", "url": "https://er.example/errors/err_1780000000000000"}
    ]


def test_generic_webhook_body_and_signature() -> None:
    msg = message()
    body = targets.encode(targets.payload(TargetKind.WEBHOOK, msg))
    decoded = json.loads(body)
    assert decoded["message_id"] == "ntf_1" and decoded["count"] == 7
    assert decoded["root_cause"] == {
        "category": "RECENT_CHANGE",
        "summary": "Deployment v2.1.0 of db-orders",
        "confidence": 0.82,
        "origin_resource_id": "db-orders",
        "top_evidence": "DEPLOYMENT of db-orders v2.1.0 20m before the first error",
    }
    assert [r["kind"] for r in decoded["recommendations"]] == ["ROLLBACK_CHANGE", "INVESTIGATE_ORIGIN"]  # by priority
    target = Target("audit", TargetKind.WEBHOOK, "https://receiver.example/hook", "shared-secret")
    headers = targets.headers(target, "ntf_1", body, now=1_780_000_000)
    assert headers["X-Errorreplay-Message-Id"] == "ntf_1"
    assert headers["X-Errorreplay-Timestamp"] == "1780000000"
    signature = headers["X-Errorreplay-Signature"]
    assert signature.startswith("v1=") and len(signature) == 3 + 64
    assert targets.verify("shared-secret", "1780000000", body, signature, now=1_780_000_010)
    assert not targets.verify("another-secret", "1780000000", body, signature, now=1_780_000_010)
    assert not targets.verify("shared-secret", "1780000000", body + b" ", signature, now=1_780_000_010)
    # An old timestamp is refused even with the right secret (a replayed request).
    assert not targets.verify("shared-secret", "1780000000", body, signature, now=1_780_001_000)
    # Slack and Teams get no signature headers.
    slack = Target("oncall", TargetKind.SLACK, "https://hooks.slack.com/x")
    assert targets.SIGNATURE_HEADER not in targets.headers(slack, "ntf_1", body)


def test_retry_after_seconds_and_dates() -> None:
    from errorreplay_server.notify.notifier import retry_after_seconds

    assert retry_after_seconds("120") == 120.0
    assert retry_after_seconds("Wed, 21 Oct 2015 07:28:00 GMT", now=1445412470.0) == 10.0
    assert retry_after_seconds("soon") is None
    assert retry_after_seconds(None) is None
