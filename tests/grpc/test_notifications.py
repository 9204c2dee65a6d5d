"""Notifications end to end on a real server: the demo cascade reaches a local Slack, Teams and
generic receiver, once per group, with the replay's verdict; quiet periods, regressions, retries,
dead letters and metrics."""

from __future__ import annotations

import asyncio
import json
import logging
import uuid
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from prometheus_client import generate_latest

from errorreplay.sync_client import SyncErrorReplayClient
from errorreplay.v1 import message_pb2 as m
from errorreplay.v1 import request_response_pb2 as s
from errorreplay_server import demo
from errorreplay_server.notify import targets
from errorreplay_server.notify.config import NotifySettings
from errorreplay_server.notify.outbox import OutboxState, SqliteOutbox
from errorreplay_server.server import start_server
from tests.grpc.conftest import Api, server_settings, serving
from tests.notify_sink import Sink, start_sink

SECRET = "shared-secret-for-tests"


def config(sink: Sink, tmp_path: Path, extra: str = "") -> NotifySettings:
    path = tmp_path / "errorreplay.toml"
    path.write_text(
        f"""
[notifications.targets.slack]
kind = "slack"
url = "{sink.url("/slack")}"

[notifications.targets.teams]
kind = "teams"
url = "{sink.url("/teams")}"

[notifications.targets.hook]
kind = "webhook"
url = "{sink.url("/hook")}"
secret = "{SECRET}"

[[notifications.rules]]
name = "new-groups"
filter = {{ environment = "production" }}
trigger = "new_group"
target = "slack"
quiet_period = "1h"

[[notifications.rules]]
name = "critical"
trigger = "severity"
min_severity = "critical"
target = "teams"
quiet_period = "1h"

[[notifications.rules]]
name = "regressions"
trigger = "regression"
target = "hook"
quiet_period = "1h"
{extra}
"""
    )
    return NotifySettings.from_env(
        {
            "ERRORREPLAY_CONFIG": str(path),
            "ERRORREPLAY_CONSOLE_URL": "https://errorreplay.example",
            "ERRORREPLAY_NOTIFY_BACKOFF_BASE": "50ms",
            "ERRORREPLAY_NOTIFY_MAX_ATTEMPTS": "3",
        }
    )


@pytest.fixture
async def sink() -> AsyncIterator[Sink]:
    sink, runner = await start_sink()
    yield sink
    await runner.cleanup()


@pytest.fixture
async def api(tmp_path: Path, sink: Sink) -> AsyncIterator[Api]:
    settings = server_settings(tmp_path, notify=config(sink, tmp_path))
    async with serving(await start_server(settings)) as api:
        yield api


def seed(api: Api) -> demo.SeededCascade:
    with SyncErrorReplayClient(f"127.0.0.1:{api.running.port}") as client:
        return demo.seed(client)


def blocks_text(body: dict[str, Any]) -> str:
    return json.dumps(body["blocks"])


async def test_demo_cascade_notifies_once_per_group_with_the_verdict(
    api: Api, sink: Sink, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    seeded = await asyncio.to_thread(seed, api)
    slack = await sink.wait_for(3, "/slack")
    by_error = {r.json["blocks"][-2]["elements"][0]["text"].split("`")[3]: r for r in slack}
    assert set(by_error) == set(seeded.error_ids)  # once per group, one group per cascade error
    web = by_error[seeded.error_ids[-1]].json
    assert web["blocks"][0] == {
        "type": "header",
        "text": {"type": "plain_text", "text": web["blocks"][0]["text"]["text"]},
    }
    verdict = web["blocks"][2]["text"]["text"]
    assert "origin `db-orders`" in verdict  # the root-cause origin, found through the cascade
    assert "Roll back deployment v2.1.0 on db-orders" in blocks_text(web)  # the rollback recommendation
    assert "DEPLOYMENT `db-orders` v2.1.0" in blocks_text(web)  # the related change
    assert web["blocks"][-1]["elements"][0]["url"] == f"https://errorreplay.example/errors/{seeded.error_ids[-1]}"
    # The critical db-orders error also reached Teams as an Adaptive Card.
    (teams,) = await sink.wait_for(1, "/teams")
    card = teams.json["attachments"][0]["content"]
    assert (card["type"], card["version"]) == ("AdaptiveCard", "1.4")
    assert card["body"][2]["facts"][0] == {"title": "Service", "value": "orders-db"}

    # The same database error again, within the quiet period: no new group, and the critical
    # rule is suppressed for that group.
    db = demo.CASCADE[0]
    repeat = m.ErrorReport(
        message=db.message,
        severity=db.severity,
        source=m.SOURCE_APPLICATION,
        resource_id=db.resource_id,
        resource_type=db.resource_type,
        service=db.service,
        environment="production",
        error_type=db.error_type,
        stack_trace=db.stack_trace,
    )
    await api.errors.CaptureError(s.CaptureErrorRequest(error=repeat))
    metrics = await _wait_for_metric(api, 'errorreplay_notifications_total{outcome="suppressed",rule="critical"')
    assert 'errorreplay_notifications_total{outcome="suppressed",rule="critical",target="teams"} 1.0' in metrics

    # Resolve the group; the next error is a regression and fires the regression rule.
    group_id = (await api.errors.GetError(s.GetErrorRequest(error_id=seeded.error_ids[0]))).error.group_id
    await api.errors.UpdateErrorGroup(
        s.UpdateErrorGroupRequest(group_id=group_id, status=m.ERROR_GROUP_STATUS_RESOLVED)
    )
    again = await api.errors.CaptureError(s.CaptureErrorRequest(error=repeat))
    (hook,) = await sink.wait_for(1, "/hook")
    assert hook.json["error_id"] == again.error_id and hook.json["trigger"] == "regression"
    assert targets.verify(
        SECRET, hook.headers["X-Errorreplay-Timestamp"], hook.body, hook.headers["X-Errorreplay-Signature"]
    )
    assert not targets.verify(
        "another-secret", hook.headers["X-Errorreplay-Timestamp"], hook.body, hook.headers["X-Errorreplay-Signature"]
    )
    # Nothing was sent twice, and the Slack rule did not fire for the repeats.
    assert len(sink.accepted_at("/slack")) == 3 and len(sink.accepted_at("/teams")) == 1
    assert len(sink.requests) == len(sink.accepted)
    metrics = generate_latest(api.running.metrics).decode()
    assert 'errorreplay_notifications_total{outcome="sent",rule="new-groups",target="slack"} 3.0' in metrics
    # Target URLs are credentials: no log line carries one (httpx logs request URLs at INFO).
    logged = "\n".join(r.getMessage() for r in caplog.records)
    assert "POST" not in logged or "/slack" not in logged
    assert not any(sink.url(p) in logged for p in ("/slack", "/teams", "/hook"))


async def _wait_for_metric(api: Api, prefix: str) -> str:
    async with asyncio.timeout(30):
        while True:
            text = generate_latest(api.running.metrics).decode()
            if prefix in text:
                return text
            await asyncio.sleep(0.05)


async def test_retries_honour_retry_after_then_dead_letter(tmp_path: Path, sink: Sink) -> None:
    settings = server_settings(tmp_path, notify=config(sink, tmp_path), enrichment_enabled=False)
    sink.answer("/slack", 500)
    sink.answer("/slack", 429, {"Retry-After": "1"})
    async with serving(await start_server(settings)) as api:
        report = m.ErrorReport(
            message="first failure",
            severity=m.SEVERITY_HIGH,
            source=m.SOURCE_APPLICATION,
            environment="production",
            service="a",
        )
        await api.errors.CaptureError(s.CaptureErrorRequest(error=report))
        (delivered,) = await sink.wait_for(1, "/slack")
        attempts = [r for r in sink.requests if r.message_id == delivered.message_id]
        assert [r.status for r in attempts] == [500, 429, 200]
        # Every attempt carried the same message id and the same body.
        assert len({r.body for r in attempts}) == 1

        # A receiver that keeps failing: three attempts, then a dead letter.
        for _ in range(3):
            sink.answer("/slack", 503)
        other = replace_message(report, "second failure")
        await api.errors.CaptureError(s.CaptureErrorRequest(error=other))
        await _wait_for_metric(api, 'errorreplay_notifications_total{outcome="dead_letter",rule="new-groups"')
        # A 404 (a revoked webhook) is not retried at all.
        sink.answer("/slack", 404)
        await api.errors.CaptureError(s.CaptureErrorRequest(error=replace_message(report, "third failure")))
        metrics = await _wait_for_metric(
            api, 'errorreplay_notifications_total{outcome="dead_letter",rule="new-groups",target="slack"} 2.0'
        )
        assert 'errorreplay_notifications_total{outcome="failed",rule="new-groups",target="slack"} 6.0' in metrics
    outbox = SqliteOutbox(settings.sqlite_path, read_only=True)
    outbox.start_sync()
    dead = outbox.entries_sync([OutboxState.DEAD], 10)
    assert sorted((e.attempts, e.last_error) for e in dead) == [(1, "HTTP 404"), (3, "HTTP 503")]
    assert [e.state for e in outbox.entries_sync([OutboxState.SENT], 10)] == [OutboxState.SENT]


def replace_message(report: m.ErrorReport, message: str) -> m.ErrorReport:
    copy = m.ErrorReport()
    copy.CopyFrom(report)
    copy.message = message
    copy.error_type = message.replace(" ", "_")
    return copy


async def test_capture_does_not_wait_for_a_hanging_receiver(tmp_path: Path, sink: Sink) -> None:
    """A receiver that never answers slows no capture: delivery runs in the background."""
    sink.hold = asyncio.Event()
    settings = server_settings(tmp_path, notify=config(sink, tmp_path), enrichment_enabled=False)
    settings = settings.model_copy(
        update={"notify": settings.notify.model_copy(update={"request_timeout_seconds": 3600.0})}
    )
    async with serving(await start_server(settings)) as api:
        for i in range(20):
            report = m.ErrorReport(
                message=f"new {i}",
                severity=m.SEVERITY_HIGH,
                source=m.SOURCE_APPLICATION,
                environment="production",
                error_type=f"E{i}",
            )
            await asyncio.wait_for(api.errors.CaptureError(s.CaptureErrorRequest(error=report)), 30)
        outbox = SqliteOutbox(settings.sqlite_path, read_only=True)
        outbox.start_sync()
        async with asyncio.timeout(30):
            while True:
                # Decided and written, none sent: the receiver holds every request.
                if len(outbox.entries_sync([OutboxState.PENDING], 100)) == 20:
                    break
                await asyncio.sleep(0.05)
        assert outbox.entries_sync([OutboxState.SENT], 100) == []
        notifier = api.running.notifier
        assert notifier is not None
        tasks = notifier.background_tasks
    # Stopping with deliveries in flight ends every background task (none swallowed its cancellation).
    assert tasks and all(task.done() for task in tasks)
    sink.hold.set()


async def test_on_the_bolt_store_the_outbox_is_in_the_graph(
    tmp_path: Path, sink: Sink, request: pytest.FixtureRequest
) -> None:
    from errorreplay_server.notify.neo4j_outbox import Neo4jOutbox
    from errorreplay_server.settings import Neo4jSettings

    bolt = request.getfixturevalue("bolt_server")
    neo4j = Neo4jSettings(uri=bolt.uri, username=bolt.username, password=bolt.password, database=bolt.database)
    settings = server_settings(
        tmp_path, store="neo4j", neo4j=neo4j, notify=config(sink, tmp_path), enrichment_enabled=False
    )
    async with serving(await start_server(settings)) as api:
        report = m.ErrorReport(
            message="bolt outbox",
            error_type=f"BoltOutbox{uuid.uuid4().hex}",
            severity=m.SEVERITY_HIGH,
            source=m.SOURCE_APPLICATION,
            environment="production",
        )
        reply = await api.errors.CaptureError(s.CaptureErrorRequest(error=report))
        (delivered,) = await sink.wait_for(1, "/slack")
        assert reply.error_id in delivered.body.decode()
        outbox = Neo4jOutbox(neo4j)
        await outbox.start()
        try:
            async with asyncio.timeout(30):
                while True:
                    sent = await outbox.entries([OutboxState.SENT], 100_000)
                    if any(e.message_id == delivered.message_id for e in sent):
                        break
                    await asyncio.sleep(0.05)
        finally:
            await outbox.close()
