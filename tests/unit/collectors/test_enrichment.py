"""EnrichmentQueue against the real embedded store, a real hanging TCP backend and vendor-format
fixtures for the rest."""

from __future__ import annotations

import asyncio
import inspect
from collections.abc import AsyncIterator
from dataclasses import replace
from pathlib import Path
from typing import Any

import httpx
import pytest

from errorreplay_server.capture.enrichment import EnrichmentQueue
from errorreplay_server.capture.scrubbing import default_scrubber
from errorreplay_server.collectors.base import CollectorResult, Window, WindowSpec
from errorreplay_server.collectors.factory import build_collectors, close_collectors
from errorreplay_server.collectors.settings import CollectorSettings
from errorreplay_server.domain.model import (
    CLIENT_LOG_COLLECTOR,
    MICROS_PER_SECOND,
    CollectionState,
    CollectorStatus,
    Dependency,
    ErrorSnapshot,
    LogLine,
    NewError,
    Resource,
)
from errorreplay_server.store.sqlite import SqliteStore
from tests.factories import new_error, uid
from tests.unit.collectors.conftest import AT, Backend

S = MICROS_PER_SECOND
NAMES = [
    "prometheus",
    "loki",
    "tempo",
    "elasticsearch",
    "azure_log_analytics",
    "topology",
    "changes",
]


@pytest.fixture
async def store(tmp_path: Path) -> AsyncIterator[SqliteStore]:
    s = SqliteStore(tmp_path / "enrichment.db")
    await s.start()
    try:
        yield s
    finally:
        await s.close()


@pytest.fixture
async def hanging_url() -> AsyncIterator[str]:
    """A real TCP server that reads requests and never answers."""

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while await reader.read(65536):
                pass
        finally:
            writer.close()

    server = await asyncio.start_server(handle, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.close()
        await server.wait_closed()


def prometheus_reply(request: httpx.Request) -> httpx.Response:
    values = [[(AT + i * 15 * S) / S, "42"] for i in range(-4, 4)]
    body = {
        "status": "success",
        "data": {"resultType": "matrix", "result": [{"metric": {"resource_id": "x"}, "values": values}]},
    }
    return httpx.Response(200, json=body)


def loki_reply(*lines: str) -> Backend:
    def reply(request: httpx.Request) -> httpx.Response:
        values = [] if request.url.params["direction"] == "forward" else [[str(AT * 1000), line] for line in lines]
        body = {"status": "success", "data": {"resultType": "streams", "result": [{"stream": {}, "values": values}]}}
        return httpx.Response(200, json=body)

    return Backend(reply)


async def captured(store: SqliteStore, count: int, **fields: Any) -> list[ErrorSnapshot]:
    errors: list[NewError] = [new_error(occurred_at=AT, **fields) for _ in range(count)]
    for i in range(0, count, 200):
        await store.capture(errors[i : i + 200])
    return [e.snapshot for e in errors]


def status(snapshot: ErrorSnapshot, name: str) -> CollectorStatus:
    (found,) = [s for s in snapshot.context.statuses if s.collector == name]
    return found


async def test_load_with_a_hanging_backend(store: SqliteStore, hanging_url: str) -> None:
    settings = CollectorSettings(
        prometheus_url="http://prometheus:9090",
        loki_url=hanging_url,
        # Generous enough that the healthy backend (three range queries per metric with data) never
        # times out on a busy 2-core machine.
        timeout_seconds=3.0,
        breaker_failures=3,
        breaker_cooldown_seconds=600,
        enrichment_workers=4,
        enrichment_queue_size=1000,
    )
    prometheus = Backend(prometheus_reply)
    collectors = build_collectors(settings, store, transports={"prometheus": prometheus.transport()})
    queue = EnrichmentQueue.from_settings(store, collectors, settings)
    await queue.start()
    try:
        snapshots = await captured(store, 1000, resource_id=uid("api-"))
        # A plain function, not a coroutine: a capture cannot end up waiting on a backend.
        assert not inspect.iscoroutinefunction(queue.submit)
        assert all(queue.submit(snapshot) is True for snapshot in snapshots)
        assert queue.counters.queued == 1000

        assert await queue.wait_for(snapshots[-1].error_id, timeout=60)
        assert all([await queue.wait_for(s.error_id, timeout=60) for s in snapshots])
        assert queue.counters.completed == 1000 and queue.counters.overloaded == 0
    finally:
        await queue.stop()
        await close_collectors(collectors)

    stored = await store.get_errors([s.error_id for s in snapshots])
    loki = [status(s, "loki") for s in stored]
    timed_out = [s for s in loki if s.state is CollectionState.FAILED]
    skipped = [s for s in loki if s.state is CollectionState.SKIPPED]
    # The first jobs (one per worker at most) wait out the timeout; then the circuit opens.
    assert 3 <= len(timed_out) <= 3 + settings.enrichment_workers - 1
    assert {s.detail for s in timed_out} == {"timeout after 3.0s"}
    assert all(s.duration_ms >= 2990 for s in timed_out)
    assert len(timed_out) + len(skipped) == 1000
    assert all(s.detail.startswith("circuit open after ") for s in skipped)
    assert queue.breaker("loki").times_opened == 1
    for snapshot in stored:
        assert [s.collector for s in snapshot.context.statuses] == NAMES
        assert CollectionState.PENDING not in {s.state for s in snapshot.context.statuses}
        assert status(snapshot, "prometheus").state is CollectionState.OK
        assert status(snapshot, "tempo").state is CollectionState.SKIPPED  # not configured
        assert len(snapshot.context.metrics) == 6


async def test_a_full_queue_acknowledges_and_marks_overloaded(store: SqliteStore, hanging_url: str) -> None:
    settings = CollectorSettings(loki_url=hanging_url, timeout_seconds=0.2, enrichment_queue_size=100)
    collectors = build_collectors(settings, store)
    queue = EnrichmentQueue.from_settings(store, collectors, settings)
    snapshots = await captured(store, 1000, resource_id=uid("api-"))
    await queue.start()
    try:
        accepted = [queue.submit(s) for s in snapshots]
        assert accepted.count(True) == 100 and accepted.count(False) == 900
        assert (queue.counters.queued, queue.counters.overloaded) == (100, 900)
        assert all([await queue.wait_for(s.error_id, timeout=60) for s in snapshots])
    finally:
        await queue.stop()
        await close_collectors(collectors)
    stored = await store.get_errors([s.error_id for s in snapshots])
    for snapshot, was_accepted in zip(stored, accepted, strict=True):
        states = {(s.state, s.detail) for s in snapshot.context.statuses}
        if was_accepted:
            assert (CollectionState.FAILED, "overloaded") not in states
            assert CollectionState.PENDING not in {s.state for s in snapshot.context.statuses}
        else:
            assert states == {(CollectionState.FAILED, "overloaded")}
            assert [s.collector for s in snapshot.context.statuses] == NAMES


async def test_overload_marks_keep_the_client_logs(store: SqliteStore, hanging_url: str) -> None:
    settings = CollectorSettings(loki_url=hanging_url, timeout_seconds=0.2, enrichment_queue_size=1)
    collectors = build_collectors(settings, store)
    queue = EnrichmentQueue.from_settings(store, collectors, settings)
    errors = [new_error(occurred_at=AT, resource_id=uid("api-")) for _ in range(5)]
    for i, error in enumerate(errors):
        error.snapshot.context.logs = [LogLine(AT - S, "INFO", f"breadcrumb {i}", CLIENT_LOG_COLLECTOR)]
    await store.capture(errors)
    await queue.start()
    try:
        accepted = [queue.submit(e.snapshot) for e in errors]
        assert accepted.count(False) == 4
        assert all([await queue.wait_for(e.snapshot.error_id, timeout=60) for e in errors])
    finally:
        await queue.stop()
        await close_collectors(collectors)
    stored = await store.get_errors([e.snapshot.error_id for e in errors])
    for i, snapshot in enumerate(stored):
        assert [(x.message, x.collector) for x in snapshot.context.logs if x.collector == CLIENT_LOG_COLLECTOR] == [
            (f"breadcrumb {i}", CLIENT_LOG_COLLECTOR)
        ]
    overloaded = [s for s, ok in zip(stored, accepted, strict=True) if not ok]
    assert all({st.detail for st in s.context.statuses} == {"overloaded"} for s in overloaded)


async def test_wait_for_returns_once_the_complete_context_is_stored(store: SqliteStore) -> None:
    api, db = uid("api-"), uid("db-")
    await store.upsert_resources([Resource(api), Resource(db)], [Dependency(api, db)])
    settings = CollectorSettings(prometheus_url="http://prometheus:9090", loki_url="http://loki:3100")
    loki = loki_reply("ERROR login failed password=hunter2", "GET /health 200")
    collectors = build_collectors(
        settings,
        store,
        transports={"prometheus": Backend(prometheus_reply).transport(), "loki": loki.transport()},
    )
    queue = EnrichmentQueue(
        store, collectors, scrub_text=lambda text: text.replace("hunter2", "[REDACTED]"), workers=2, max_queued=10
    )
    (snapshot,) = await captured(store, 1, resource_id=api, trace_id="")
    await queue.start()
    try:
        assert queue.initial_context().statuses == [CollectorStatus(n, CollectionState.PENDING) for n in NAMES]
        assert queue.submit(snapshot)
        assert await queue.wait_for(snapshot.error_id, timeout=10)
        # Asked again after the job ended, the answer is still there.
        assert await queue.wait_for(snapshot.error_id, timeout=0)
        assert await queue.wait_for("err_unknown", timeout=0) is False
    finally:
        await queue.stop()
        await close_collectors(collectors)
    stored = await store.get_error(snapshot.error_id)
    ctx = stored.context
    assert {s.collector: s.state for s in ctx.statuses} == {
        "prometheus": CollectionState.OK,
        "loki": CollectionState.OK,
        "tempo": CollectionState.SKIPPED,
        "elasticsearch": CollectionState.SKIPPED,
        "azure_log_analytics": CollectionState.SKIPPED,
        "topology": CollectionState.OK,
        "changes": CollectionState.EMPTY,
    }
    assert all(s.collected_at > 0 and s.duration_ms >= 0 for s in ctx.statuses)
    assert len(ctx.metrics) == 6
    assert ctx.topology is not None and {r.id for r in ctx.topology.resources} == {api, db}
    assert [line.message for line in ctx.logs] == ["ERROR login failed password=[REDACTED]", "GET /health 200"]
    assert "hunter2" not in repr(stored)


async def test_a_failing_scrubber_drops_the_text(store: SqliteStore) -> None:
    def broken(text: str) -> str:
        raise RuntimeError("scrubber bug")

    settings = CollectorSettings(loki_url="http://loki:3100")
    collectors = build_collectors(settings, store, transports={"loki": loki_reply("token=abc").transport()})
    queue = EnrichmentQueue(store, collectors, scrub_text=broken)
    (snapshot,) = await captured(store, 1, resource_id=uid("api-"))
    try:
        context = await queue.collect(snapshot)
    finally:
        await close_collectors(collectors)
    assert context.logs == []
    assert status(replace(snapshot, context=context), "loki").detail == "scrubbing failed: RuntimeError"


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


async def test_circuit_breaker_skips_then_probes(store: SqliteStore) -> None:
    hang = True

    async def reply(request: httpx.Request) -> httpx.Response:
        if hang:
            await asyncio.sleep(3600)
        return loki_reply("ok").reply(request)

    clock = Clock()
    settings = CollectorSettings(loki_url="http://loki:3100", timeout_seconds=0.05)
    collectors = build_collectors(settings, store, transports={"loki": httpx.MockTransport(reply)})
    queue = EnrichmentQueue(
        store, collectors, timeout_seconds=0.05, breaker_failures=2, breaker_cooldown_seconds=30, clock=clock
    )
    (snapshot,) = await captured(store, 1, resource_id=uid("api-"))

    async def loki() -> CollectorStatus:
        context = await queue.collect(snapshot)
        (found,) = [s for s in context.statuses if s.collector == "loki"]
        return found

    try:
        assert [(await loki()).detail for _ in range(2)] == ["timeout after 0.05s"] * 2
        refused = await loki()
        assert refused.state is CollectionState.SKIPPED and refused.duration_ms == 0
        assert refused.detail == "circuit open after 2 consecutive failures; next probe in 30.0s"
        clock.now += 30
        assert (await loki()).state is CollectionState.FAILED  # the probe, still hanging
        assert (await loki()).state is CollectionState.SKIPPED
        clock.now += 30
        hang = False
        assert (await loki()).state is CollectionState.OK  # the probe succeeds: closed again
        assert (await loki()).state is CollectionState.OK
    finally:
        await close_collectors(collectors)


class CrashingCollector:
    name = "crashing"
    window_spec = WindowSpec(0, 0)

    async def collect(self, error: ErrorSnapshot, window: Window) -> CollectorResult:
        raise ZeroDivisionError("bug")

    async def aclose(self) -> None:
        return None


async def test_a_crashing_collector_fails_alone(store: SqliteStore) -> None:
    collectors = [CrashingCollector(), *build_collectors(CollectorSettings(), store)]
    queue = EnrichmentQueue(store, collectors)
    (snapshot,) = await captured(store, 1, resource_id=uid("api-"))
    context = await queue.collect(snapshot)
    states = {s.collector: (s.state, s.detail) for s in context.statuses}
    assert states["crashing"] == (CollectionState.FAILED, "internal error: ZeroDivisionError")
    assert states["topology"][0] is CollectionState.EMPTY


async def test_refresh_collects_again_and_keeps_what_the_backend_lost(store: SqliteStore) -> None:
    lines = ["ERROR before"]
    retention_dropped = False

    def reply(request: httpx.Request) -> httpx.Response:
        if retention_dropped:
            return httpx.Response(503, text="retention")
        return loki_reply(*lines).reply(request)

    settings = CollectorSettings(loki_url="http://loki:3100")
    collectors = build_collectors(settings, store, transports={"loki": httpx.MockTransport(reply)})
    queue = EnrichmentQueue(store, collectors)
    (snapshot,) = await captured(store, 1, resource_id=uid("api-"))
    try:
        first = await queue.refresh(snapshot)
        assert [line.message for line in first.context.logs] == ["ERROR before"]
        lines.append("INFO after")
        second = await queue.refresh(first)
        assert [line.message for line in second.context.logs] == ["ERROR before", "INFO after"]
        retention_dropped = True
        third = await queue.refresh(second)
    finally:
        await close_collectors(collectors)
    assert [line.message for line in third.context.logs] == ["ERROR before", "INFO after"]
    kept = status(third, "loki")
    assert kept.state is CollectionState.OK
    assert kept.detail == "kept from the earlier collection; refresh FAILED: HTTP 503: retention"
    assert (await store.get_error(snapshot.error_id)).context == third.context


async def test_stop_cancels_cleanly_and_answers_waiters(store: SqliteStore, hanging_url: str) -> None:
    settings = CollectorSettings(loki_url=hanging_url, timeout_seconds=30)
    collectors = build_collectors(settings, store)
    queue = EnrichmentQueue(store, collectors, workers=2, timeout_seconds=30)
    snapshots = await captured(store, 5, resource_id=uid("api-"))
    await queue.start()
    for snapshot in snapshots:
        assert queue.submit(snapshot)
    await asyncio.sleep(0.05)
    waiter = asyncio.ensure_future(queue.wait_for(snapshots[-1].error_id, timeout=None))
    # The backend hangs for 30 s; stop must cancel the jobs rather than wait them out.
    await asyncio.wait_for(queue.stop(drain_timeout=0.1), timeout=10)
    assert await waiter is False
    assert queue.submit(snapshots[0]) is False  # stopped
    await close_collectors(collectors)
    stored = await store.get_error(snapshots[-1].error_id)
    assert stored.context.statuses == []  # never enriched: still as captured


async def test_text_is_scrubbed_before_it_is_cut(store: SqliteStore) -> None:
    trace = "4bf92f3577b34da6a3ce929d0e0e4736"
    statement = "y" * 250 + " IDENTIFIED BY hunter2"
    span = {
        "traceId": trace,
        "spanId": "00f067aa0ba902b7",
        "startTimeUnixNano": AT * 1000,
        "endTimeUnixNano": AT * 1000 + 1000,
        "attributes": [{"key": "db.statement", "value": {"stringValue": statement}}],
        "status": {"code": 2, "message": "x" * 250 + " hunter2"},
    }
    tempo = Backend(lambda request: httpx.Response(200, json={"resourceSpans": [{"scopeSpans": [{"spans": [span]}]}]}))
    settings = CollectorSettings(loki_url="http://loki:3100", tempo_url="http://tempo:3200", log_line_max_chars=34)
    collectors = build_collectors(
        settings,
        store,
        transports={"loki": loki_reply("x" * 20 + " token=hunter2 tail").transport(), "tempo": tempo.transport()},
    )
    # A scrubber that only knows whole secrets: cutting first would leave "hunter" unmasked.
    queue = EnrichmentQueue.from_settings(
        store, collectors, settings, scrub_text=lambda text: text.replace("hunter2", "[REDACTED]")
    )
    (snapshot,) = await captured(store, 1, resource_id=uid("api-"), trace_id=trace)
    try:
        context = await queue.collect(snapshot)
    finally:
        await close_collectors(collectors)
    (line,) = context.logs
    assert line.message == "x" * 20 + " token=[REDAC…"  # 34 characters
    (collected,) = context.spans
    assert len(collected.attributes["db.statement"]) == 256 and len(collected.status_message) == 256
    assert "hunter" not in repr(context)


async def test_no_collected_secret_reaches_the_store(store: SqliteStore) -> None:
    secrets = {
        "jwt": "eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiIxMjMifQ.c2lnbmF0dXJlLXZhbHVl",
        "password": "hunter2",
        "url": "s3cr3t",
        "card": "4111 1111 1111 1111",
    }
    lines = [
        f"ERROR auth failed Authorization: Bearer {secrets['jwt']}",
        f"login password={secrets['password']} user=bob",
        f"connect postgres://app:{secrets['url']}@db:5432/orders",
        f"card {secrets['card']} charged",
    ]
    settings = CollectorSettings(loki_url="http://loki:3100")
    collectors = build_collectors(settings, store, transports={"loki": loki_reply(*lines).transport()})
    queue = EnrichmentQueue.from_settings(store, collectors, settings, scrub_text=default_scrubber().scrub_text)
    (snapshot,) = await captured(store, 1, resource_id=uid("api-"))
    await queue.start()
    try:
        assert queue.submit(snapshot)
        assert await queue.wait_for(snapshot.error_id, timeout=10)
    finally:
        await queue.stop()
        await close_collectors(collectors)
    stored = await store.get_error(snapshot.error_id)
    assert len(stored.context.logs) == 4
    for secret in secrets.values():
        assert secret not in repr(stored)
    assert "login password=[REDACTED:password] user=bob" in [line.message for line in stored.context.logs]


class GatedCollector:
    """Holds every job until the gate opens, as a slow backend would."""

    name = "gated"
    window_spec = WindowSpec(0, 0)

    def __init__(self) -> None:
        self.gate = asyncio.Event()
        self.collected: list[str] = []

    async def collect(self, error: ErrorSnapshot, window: Window) -> CollectorResult:
        await self.gate.wait()
        self.collected.append(error.error_id)
        return CollectorResult.empty("nothing here")

    async def aclose(self) -> None:
        return None


async def test_resume_pending_queues_the_backlog_behind_new_captures(store: SqliteStore) -> None:
    from errorreplay_server.domain.model import ErrorContext, now_micros

    gated = GatedCollector()
    queue = EnrichmentQueue(store, [gated], workers=1, max_queued=4)
    pending = ErrorContext(statuses=[CollectorStatus("gated", CollectionState.PENDING, "", 0, 0)])
    hour = 3600 * S
    left_behind = [new_error(occurred_at=now_micros() - 10 * 60 * S) for _ in range(8)]
    too_old = new_error(occurred_at=now_micros() - 3 * hour)
    for item in [*left_behind[:4], too_old, *left_behind[4:]]:
        item.snapshot.context = pending
        await store.capture([item])
    await queue.start()
    try:
        await queue.resume_pending(horizon_seconds=3600)
        # A capture after the restart: submitted by its own capture, never resumed a second time.
        (fresh,) = await captured(store, 1)
        await store.update_context(fresh.error_id, pending)
        for _ in range(50):
            await asyncio.sleep(0)
        # The backlog fills at most half the queue: a new capture still finds room.
        assert queue.depth <= 2
        assert queue.submit(fresh) is True
        gated.gate.set()
        # The backlog is queued as room frees up: an error is only waited for once it was queued
        # (wait_for answers False for an error never submitted).
        for _ in range(6000):
            if queue.counters.resumed == len(left_behind):
                break
            await asyncio.sleep(0.01)
        assert all([await queue.wait_for(n.snapshot.error_id, timeout=60) for n in left_behind])
        assert await queue.wait_for(fresh.error_id, timeout=60)
    finally:
        await queue.stop()
    assert queue.counters.resumed == 8 and queue.counters.expired == 1
    assert sorted(gated.collected) == sorted([*(n.snapshot.error_id for n in left_behind), fresh.error_id])
    old = await store.get_error(too_old.snapshot.error_id)
    assert [(s.state, s.detail) for s in old.context.statuses] == [
        (CollectionState.FAILED, "not collected before restart")
    ]
    assert await store.pending_context_errors(0, 100) == []
