"""Two `errorreplay serve` replicas on one Bolt server (ArcadeDB) and one nats-server (issue 18).

Streams and enrichment jobs go through NATS JetStream (streaming/jetstream.py,
capture/jetstream_jobs.py); the store decides idempotency. Waits here are guards against a hang
(asyncio.wait_for), never timed assertions.
"""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import grpc
import nats
import pytest
from google.protobuf import duration_pb2

from errorreplay.v1 import message_pb2 as m
from errorreplay.v1 import request_response_pb2 as rr
from errorreplay.v1 import service_pb2_grpc
from tests.bolt_server import BoltServer, bolt_server  # noqa: F401  (session fixture)
from tests.e2e.server_process import ServerProcess, free_port
from tests.nats_server import NatsServer, nats_server  # noqa: F401  (fixture)

pytestmark = [pytest.mark.bolt, pytest.mark.nats]

ROOT = Path(__file__).resolve().parents[2]
GUARD_SECONDS = 60.0
PENDING = m.COLLECTION_STATE_PENDING


def replica_env(bolt: BoltServer, nats_url: str, **extra: str) -> dict[str, str]:
    return {
        "ERRORREPLAY_STORE": "neo4j",
        "ERRORREPLAY_NEO4J_URI": bolt.uri,
        "ERRORREPLAY_NEO4J_USERNAME": bolt.username,
        "ERRORREPLAY_NEO4J_PASSWORD": bolt.password,
        "ERRORREPLAY_NEO4J_DATABASE": bolt.database,
        "ERRORREPLAY_NATS_URL": nats_url,
        **extra,
    }


def report(run: str, i: int) -> m.ErrorReport:
    return m.ErrorReport(
        message=f"payment failed {i}",
        severity=m.SEVERITY_HIGH,
        source=m.SOURCE_APPLICATION,
        # Dots and a wildcard: the subject token must escape them (streaming/jetstream.py).
        resource_id=f"{run}.payments.*",
        environment="prod eu",
        tags={"run": run},
    )


class Replica:
    def __init__(self, process: ServerProcess) -> None:
        self.process = process
        self.channel = grpc.aio.insecure_channel(process.address)
        self.errors = service_pb2_grpc.ErrorReplayServiceStub(self.channel)

    async def capture(self, run: str, i: int, request_id: str = "") -> rr.CaptureErrorResponse:
        return await self.errors.CaptureError(
            rr.CaptureErrorRequest(error=report(run, i), request_id=request_id), timeout=30
        )

    async def close(self) -> None:
        await self.channel.close()


@pytest.fixture
def replicas(tmp_path: Path, bolt_server: BoltServer, nats_server: NatsServer) -> Iterator[list[ServerProcess]]:  # noqa: F811
    started: list[ServerProcess] = []
    try:
        for name in ("r1", "r2"):
            env = replica_env(bolt_server, nats_server.url)
            started.append(ServerProcess(tmp_path / name, extra_env=env).start(timeout=60))
        yield started
    finally:
        for process in started:
            process.stop()


class Subscriber:
    """One SubscribeErrors call; `errors` are (error_id, cursor) in the order received."""

    def __init__(self, replica: Replica, run: str, resume_after: str = "") -> None:
        self.call = replica.errors.SubscribeErrors(
            rr.SubscribeErrorsRequest(
                filter=m.ErrorFilter(tags={"run": run}),
                resume_after=resume_after,
                heartbeat_interval=duration_pb2.Duration(nanos=200_000_000),
            )
        )
        self.errors: list[tuple[str, str]] = []

    async def registered(self) -> None:
        """The first message (a heartbeat, or a replayed error) proves the subscription exists."""
        first = await asyncio.wait_for(self.call.read(), GUARD_SECONDS)
        if not first.heartbeat:
            self.errors.append((first.error.error_id, first.cursor))

    async def take(self, n: int) -> list[str]:
        async def read() -> None:
            while len(self.errors) < n:
                msg = await self.call.read()
                assert msg is not grpc.aio.EOF, "the stream ended"
                if not msg.heartbeat:
                    self.errors.append((msg.error.error_id, msg.cursor))

        await asyncio.wait_for(read(), GUARD_SECONDS)
        return [error_id for error_id, _ in self.errors[:n]]

    async def quiet_for(self, heartbeats: int) -> list[str]:
        """Errors that arrive before `heartbeats` more heartbeats: none are expected."""
        extra: list[str] = []
        seen = 0
        while seen < heartbeats:
            msg = await asyncio.wait_for(self.call.read(), GUARD_SECONDS)
            if msg.heartbeat:
                seen += 1
            else:
                extra.append(msg.error.error_id)
        return extra


async def stream_order(url: str, run: str) -> list[str]:
    """The error ids of `run` in the JetStream stream, in sequence order, read straight from NATS."""
    nc = await nats.connect(url)
    try:
        js = nc.jetstream()
        info = await js.stream_info("ERRORREPLAY_ERRORS")
        sub = await js.subscribe("errorreplay.errors.>", ordered_consumer=True)
        ids = []
        for _ in range(info.state.messages):
            msg = await sub.next_msg(timeout=10)
            row = json.loads(msg.data)
            if json.loads(row[16]).get("tags", {}).get("run") == run:
                ids.append(row[0])
        await sub.unsubscribe()
        return ids
    finally:
        await nc.close()


async def both(processes: list[ServerProcess]) -> AsyncIterator[tuple[Replica, Replica]]:
    r1, r2 = Replica(processes[0]), Replica(processes[1])
    try:
        yield r1, r2
    finally:
        await r1.close()
        await r2.close()


async def test_a_subscriber_gets_every_replicas_captures_once_and_resumes_on_the_other(
    replicas: list[ServerProcess],
    nats_server: NatsServer,  # noqa: F811
) -> None:
    run = uuid.uuid4().hex
    async for r1, r2 in both(replicas):
        first = Subscriber(r1, run)
        await first.registered()
        captured = [(await (r1 if i % 2 == 0 else r2).capture(run, i)).error_id for i in range(20)]

        got = await first.take(10)
        resume_cursor = first.errors[9][1]
        first.call.cancel()

        second = Subscriber(r2, run, resume_after=resume_cursor)
        await second.registered()
        rest = await second.take(10)
        later = [(await (r2 if i % 2 == 0 else r1).capture(run, i)).error_id for i in range(20, 24)]
        live = (await second.take(14))[10:]
        assert await second.quiet_for(3) == []
        second.call.cancel()

        received = got + rest + live
        assert len(received) == len(set(received)) == 24
        assert set(received) == set(captured + later)
        assert received == await stream_order(nats_server.url, run)

        # A cursor verifies on either replica; one past the stream's end is OUT_OF_RANGE there too.
        bogus = Subscriber(r1, run, resume_after="not-a-cursor")
        with pytest.raises(grpc.aio.AioRpcError) as refused:
            await bogus.call.read()
        assert refused.value.code() is grpc.StatusCode.INVALID_ARGUMENT


async def test_nats_restart_mid_stream_loses_nothing(replicas: list[ServerProcess], nats_server: NatsServer) -> None:  # noqa: F811
    run = uuid.uuid4().hex
    async for r1, r2 in both(replicas):
        sub = Subscriber(r1, run)
        await sub.registered()
        before = [(await r2.capture(run, i)).error_id for i in range(5)]
        assert await sub.take(5) == before

        nats_server.stop()
        # Captures are acknowledged while NATS is down: the store has them, publication waits.
        during = [(await (r1 if i % 2 else r2).capture(run, i)).error_id for i in range(5, 10)]
        nats_server.start()
        after = [(await r1.capture(run, i)).error_id for i in range(10, 15)]

        received = await sub.take(15)
        assert len(received) == len(set(received)) == 15
        assert set(received) == set(before + during + after)
        assert await sub.quiet_for(3) == []
        assert received == await stream_order(nats_server.url, run)
        sub.call.cancel()


async def test_concurrent_duplicates_on_two_replicas_store_one_error(replicas: list[ServerProcess]) -> None:
    run = uuid.uuid4().hex
    async for r1, r2 in both(replicas):
        for i in range(10):
            request_id = f"{run}-{i}"
            a, b = await asyncio.gather(r1.capture(run, i, request_id), r2.capture(run, i, request_id))
            assert a.error_id == b.error_id
            assert sorted([a.duplicate, b.duplicate]) == [False, True]
        found = await r1.errors.SearchErrors(
            rr.SearchErrorsRequest(filter=m.ErrorFilter(tags={"run": run}), page_size=100), timeout=30
        )
        assert len(found.errors) == 10


@pytest.fixture
def slow_backend() -> Iterator[str]:
    """bench/slow_backend.py answering every query after 3 s: jobs stay in flight long enough."""
    port = free_port()
    process = subprocess.Popen(
        [sys.executable, str(ROOT / "bench" / "slow_backend.py"), "--port", str(port), "--delay", "3"],
        stdout=subprocess.PIPE,
    )
    try:
        assert process.stdout is not None and process.stdout.readline().strip() == b"READY"
        yield f"http://127.0.0.1:{port}"
    finally:
        process.kill()
        process.wait(10)


async def test_jobs_of_a_killed_replica_are_completed_by_the_other(
    tmp_path: Path,
    bolt_server: BoltServer,  # noqa: F811
    nats_server: NatsServer,  # noqa: F811
    slow_backend: str,
) -> None:
    env = replica_env(
        bolt_server,
        nats_server.url,
        ERRORREPLAY_PROMETHEUS_URL=slow_backend,
        ERRORREPLAY_COLLECTOR_TIMEOUT="10s",
        ERRORREPLAY_ENRICHMENT_WORKERS="4",
        ERRORREPLAY_NATS_JOB_ACK_WAIT_SECONDS="4",
    )
    run = uuid.uuid4().hex
    doomed = ServerProcess(tmp_path / "r1", extra_env=env).start(timeout=60)
    survivor: ServerProcess | None = None
    try:
        replica = Replica(doomed)
        ids = [(await replica.capture(run, i)).error_id for i in range(8)]
        await replica.close()
        # Its 4 workers pull 4 jobs and wait 3 s on the backend; it dies holding them.
        await asyncio.sleep(1.0)
        doomed.kill()
        survivor = ServerProcess(tmp_path / "r2", extra_env=env).start(timeout=60)
        other = Replica(survivor)
        try:

            async def settled() -> list[m.ErrorSnapshot]:
                while True:
                    snapshots = [
                        (await other.errors.GetError(rr.GetErrorRequest(error_id=i), timeout=30)).error for i in ids
                    ]
                    if all(PENDING not in {s.state for s in e.context.statuses} for e in snapshots):
                        return snapshots
                    await asyncio.sleep(0.5)

            snapshots = await asyncio.wait_for(settled(), 90)
        finally:
            await other.close()
        assert sorted(s.error_id for s in snapshots) == sorted(ids)
        for snapshot in snapshots:
            prometheus = next(s for s in snapshot.context.statuses if s.collector == "prometheus")
            # Collected (the slow backend answers with no series) or failed with a reason.
            assert prometheus.state in (m.COLLECTION_STATE_EMPTY, m.COLLECTION_STATE_OK) or prometheus.detail
    finally:
        doomed.stop()
        if survivor is not None:
            survivor.stop()


async def test_include_correlated_works_across_replicas(replicas: list[ServerProcess]) -> None:
    run = uuid.uuid4().hex
    async for r1, r2 in both(replicas):
        call = r1.errors.SubscribeErrors(
            rr.SubscribeErrorsRequest(
                filter=m.ErrorFilter(resource_ids=[f"{run}-db"]),
                include_correlated=True,
                heartbeat_interval=duration_pb2.Duration(nanos=200_000_000),
            )
        )
        assert (await asyncio.wait_for(call.read(), GUARD_SECONDS)).heartbeat

        def failure(resource: str) -> rr.CaptureErrorRequest:
            return rr.CaptureErrorRequest(
                error=m.ErrorReport(
                    message=f"{resource} failed",
                    severity=m.SEVERITY_HIGH,
                    source=m.SOURCE_APPLICATION,
                    resource_id=f"{run}-{resource}",
                    correlation_id=run,
                )
            )

        db = (await r2.errors.CaptureError(failure("db"), timeout=30)).error_id
        api = (await r1.errors.CaptureError(failure("api"), timeout=30)).error_id

        async def errors(stream: grpc.aio.UnaryStreamCall, n: int) -> list[rr.SubscribeErrorsResponse]:
            got = []
            while len(got) < n:
                msg = await stream.read()
                if not msg.heartbeat:
                    got.append(msg)
            return got

        first, second = await asyncio.wait_for(errors(call, 2), GUARD_SECONDS)
        call.cancel()
        assert (first.error.error_id, first.correlation.correlated) == (db, False)
        assert (second.error.error_id, second.correlation.correlated) == (api, True)
        assert second.correlation.reason == m.CORRELATION_REASON_SAME_CORRELATION_ID
        assert second.correlation.matched_error_id == db
        assert list(second.correlation.related_error_ids) == [db]


async def test_concurrent_captures_of_one_group_on_two_replicas_all_commit(replicas: list[ServerProcess]) -> None:
    """Both replicas' writers update the same group at once: the store's write conflicts
    (DeadlockDetected) are retried, not answered UNAVAILABLE."""
    run = uuid.uuid4().hex
    async for r1, r2 in both(replicas):
        outcomes = await asyncio.gather(
            *((r1 if i % 2 else r2).capture(run, i) for i in range(400)), return_exceptions=True
        )
        failures = [o for o in outcomes if isinstance(o, BaseException)]
        assert failures == []
        found = await r1.errors.SearchErrors(
            rr.SearchErrorsRequest(filter=m.ErrorFilter(tags={"run": run}), page_size=500), timeout=30
        )
        assert len(found.errors) == 400
        assert len({e.group_id for e in found.errors}) == 1


async def test_wait_for_context_returns_the_context_whichever_replica_ran_the_job(
    replicas: list[ServerProcess],
) -> None:
    """Both replicas pull from one work queue, so some of these jobs run on the other replica;
    every answer still carries the collected context, never PENDING."""
    run = uuid.uuid4().hex
    async for r1, r2 in both(replicas):
        replies = await asyncio.gather(
            *(
                (r1 if i % 2 else r2).errors.CaptureError(
                    rr.CaptureErrorRequest(error=report(run, i), wait_for_context=True), timeout=30
                )
                for i in range(16)
            )
        )
        for reply in replies:
            states = {s.state for s in reply.error.context.statuses}
            assert states and PENDING not in states
