"""SubscribeErrors over the wire: filters, correlation, resume, backpressure and lifecycle."""

from __future__ import annotations

import asyncio
import contextlib
import random
from pathlib import Path

import grpc
import pytest
from google.protobuf import duration_pb2

from errorreplay.v1 import message_pb2 as m
from errorreplay.v1 import request_response_pb2 as rr
from errorreplay.v1 import service_pb2_grpc
from errorreplay_server.server import start_server
from errorreplay_server.streaming.hub import HubSettings
from tests.grpc.conftest import Api, server_settings
from tests.grpc.helpers import T0, capture, ts, uid


async def subscribed(api: Api, request: rr.SubscribeErrorsRequest) -> grpc.aio.UnaryStreamCall:
    """A started stream; waits until the server has registered it (first heartbeat)."""
    request.heartbeat_interval.CopyFrom(duration_pb2.Duration(nanos=100_000_000))
    call = api.errors.SubscribeErrors(request)
    first = await asyncio.wait_for(call.read(), 10)
    assert first.heartbeat
    return call


async def read_errors(call: grpc.aio.UnaryStreamCall, n: int, timeout: float = 10) -> list[rr.SubscribeErrorsResponse]:
    out: list[rr.SubscribeErrorsResponse] = []

    async def pump() -> None:
        while len(out) < n:
            msg = await call.read()
            assert msg is not grpc.aio.EOF, "stream ended early"
            if not msg.heartbeat:
                out.append(msg)

    await asyncio.wait_for(pump(), timeout)
    return out


async def quiet_for(call: grpc.aio.UnaryStreamCall, seconds: float) -> list[rr.SubscribeErrorsResponse]:
    """Errors that arrive within `seconds` (there should be none)."""
    extra: list[rr.SubscribeErrorsResponse] = []
    with contextlib.suppress(TimeoutError):
        await asyncio.wait_for(_drain(call, extra), seconds)
    return extra


async def _drain(call: grpc.aio.UnaryStreamCall, into: list[rr.SubscribeErrorsResponse]) -> None:
    while True:
        msg = await call.read()
        if msg is grpc.aio.EOF:
            return
        if not msg.heartbeat:
            into.append(msg)


async def test_filter_matches_exactly_and_in_order(api: Api) -> None:
    run = uid()
    call = await subscribed(
        api,
        rr.SubscribeErrorsRequest(
            filter=m.ErrorFilter(min_severity=m.SEVERITY_HIGH, resource_ids=[f"{run}-a", f"{run}-b"], tags={"run": run})
        ),
    )
    expected = []
    for i in range(50):
        severity = [m.SEVERITY_LOW, m.SEVERITY_HIGH, m.SEVERITY_CRITICAL][i % 3]
        resource = [f"{run}-a", f"{run}-b", f"{run}-c", f"{run}-a"][i % 4]
        reply = await capture(api, severity=severity, resource_id=resource, tags={"run": run}, message=f"e{i}")
        if severity >= m.SEVERITY_HIGH and resource != f"{run}-c":
            expected.append(reply.error_id)
    got = await read_errors(call, len(expected))
    assert [g.error.error_id for g in got] == expected
    assert all(not g.correlation.correlated and g.correlation.reason == m.CORRELATION_REASON_FILTER_MATCH for g in got)
    assert await quiet_for(call, 0.5) == []
    call.cancel()


async def test_cascade_reaches_a_subscriber_of_web_as_it_happens(api: Api) -> None:
    p = uid("p")
    lb, web, svc, db = f"{p}-lb", f"{p}-web", f"{p}-api", f"{p}-db"
    await api.topology.UpsertResources(
        rr.UpsertResourcesRequest(
            dependencies=[
                m.Dependency(dependent_id=lb, dependency_id=web),
                m.Dependency(dependent_id=web, dependency_id=svc),
                m.Dependency(dependent_id=svc, dependency_id=db),
            ]
        )
    )
    call = await subscribed(
        api, rr.SubscribeErrorsRequest(filter=m.ErrorFilter(resource_ids=[web]), include_correlated=True)
    )
    corr = uid("corr-")
    db_err = await capture(api, resource_id=db, correlation_id=corr, occurred_at=ts(T0), message="pool exhausted")
    (db_msg,) = await read_errors(call, 1)  # arrives before web has failed at all
    api_err = await capture(api, resource_id=svc, correlation_id=corr, occurred_at=ts(T0 + 60), message="upstream 503")
    web_err = await capture(api, resource_id=web, correlation_id=corr, occurred_at=ts(T0 + 120), message="timeout")
    await capture(api, resource_id=uid("elsewhere"), occurred_at=ts(T0 + 120))  # unrelated: not delivered
    api_msg, web_msg = await read_errors(call, 2)
    assert [x.error.error_id for x in (db_msg, api_msg, web_msg)] == [
        db_err.error_id,
        api_err.error_id,
        web_err.error_id,
    ]
    assert db_msg.correlation.correlated and db_msg.correlation.reason == m.CORRELATION_REASON_DOWNSTREAM_FAILURE
    assert api_msg.correlation.correlated
    assert not web_msg.correlation.correlated
    assert web_msg.correlation.origin_error_id == db_err.error_id
    assert set(web_msg.correlation.related_error_ids) == {db_err.error_id, api_err.error_id}
    assert list(db_msg.correlation.affected_resource_ids) == [svc, web]
    assert await quiet_for(call, 0.3) == []
    call.cancel()


async def test_resume_delivers_exactly_what_was_missed(api: Api) -> None:
    run = uid()
    flt = m.ErrorFilter(tags={"run": run})
    call = await subscribed(api, rr.SubscribeErrorsRequest(filter=flt))
    for i in range(10):
        await capture(api, tags={"run": run}, message=f"first {i}")
    first = await read_errors(call, 10)
    call.cancel()
    missed = [(await capture(api, tags={"run": run}, message=f"missed {i}")).error_id for i in range(20)]
    await capture(api, tags={"run": uid()})  # not matching
    resumed = api.errors.SubscribeErrors(rr.SubscribeErrorsRequest(filter=flt, resume_after=first[-1].cursor))
    got = await read_errors(resumed, 20)
    assert [g.error.error_id for g in got] == missed
    assert await quiet_for(resumed, 0.3) == []
    resumed.cancel()
    # An error id works as a resume point too.
    by_id = api.errors.SubscribeErrors(rr.SubscribeErrorsRequest(filter=flt, resume_after=missed[9]))
    assert [g.error.error_id for g in await read_errors(by_id, 10)] == missed[10:]
    by_id.cancel()


@pytest.mark.parametrize("seed", range(4))
async def test_resume_during_live_captures_has_no_gap_or_duplicate(api: Api, seed: int) -> None:
    rnd = random.Random(seed)
    run = uid()
    flt = m.ErrorFilter(tags={"run": run})
    call = await subscribed(api, rr.SubscribeErrorsRequest(filter=flt))
    await capture(api, tags={"run": run})
    (first,) = await read_errors(call, 1)
    call.cancel()
    total = 60
    captured: list[str] = []

    async def producer() -> None:
        for i in range(total):
            captured.append((await capture(api, tags={"run": run}, message=f"m{i}")).error_id)
            if rnd.random() < 0.3:
                await asyncio.sleep(rnd.random() * 0.01)

    backlog = rnd.randrange(0, 30)
    for _ in range(backlog):  # some missed before the resume starts
        captured.append((await capture(api, tags={"run": run})).error_id)
    resumed = api.errors.SubscribeErrors(rr.SubscribeErrorsRequest(filter=flt, resume_after=first.cursor))
    producing = asyncio.create_task(producer())
    got = await read_errors(resumed, backlog + total, timeout=30)
    await producing
    assert [g.error.error_id for g in got] == captured
    cursors = [g.cursor for g in got]
    assert len(set(cursors)) == len(cursors)
    resumed.cancel()


async def test_bad_resume_point_and_filter_are_invalid(api: Api) -> None:
    for request in (
        rr.SubscribeErrorsRequest(resume_after="err_unknown"),
        rr.SubscribeErrorsRequest(filter=m.ErrorFilter(start_time=ts(T0), end_time=ts(T0 - 1))),
        rr.SubscribeErrorsRequest(heartbeat_interval=duration_pb2.Duration(nanos=1000)),
    ):
        call = api.errors.SubscribeErrors(request)
        with pytest.raises(grpc.aio.AioRpcError) as info:
            await call.read()
        assert info.value.code() == grpc.StatusCode.INVALID_ARGUMENT


async def test_heartbeats_keep_idle_streams_alive(api: Api) -> None:
    call = api.errors.SubscribeErrors(
        rr.SubscribeErrorsRequest(
            filter=m.ErrorFilter(tags={"run": uid()}), heartbeat_interval=duration_pb2.Duration(nanos=200_000_000)
        )
    )
    beats = [await asyncio.wait_for(call.read(), 5) for _ in range(3)]
    assert all(b.heartbeat and b.cursor.startswith("c") for b in beats)
    call.cancel()


async def test_cancel_frees_the_subscription(api: Api) -> None:
    hub = api.running.hub
    before = hub.subscriber_count
    calls = [await subscribed(api, rr.SubscribeErrorsRequest()) for _ in range(3)]
    assert hub.subscriber_count == before + 3
    for call in calls:
        call.cancel()
    for _ in range(100):
        if hub.subscriber_count == before:
            break
        await asyncio.sleep(0.02)
    assert hub.subscriber_count == before


async def test_slow_consumer_is_ended_and_others_keep_going(tmp_path: Path) -> None:
    settings = server_settings(tmp_path, hub=HubSettings(queue_size=8))
    running = await start_server(settings)
    try:
        async with (
            grpc.aio.insecure_channel(f"127.0.0.1:{running.port}") as slow_channel,
            grpc.aio.insecure_channel(f"127.0.0.1:{running.port}") as channel,
        ):
            slow_stub = service_pb2_grpc.ErrorReplayServiceStub(slow_channel)
            stub = service_pb2_grpc.ErrorReplayServiceStub(channel)
            api = Api(channel, stub, service_pb2_grpc.TopologyServiceStub(channel), running)
            slow = await subscribed(Api(slow_channel, slow_stub, None, running), rr.SubscribeErrorsRequest())  # type: ignore[arg-type]
            fast = await subscribed(api, rr.SubscribeErrorsRequest())
            big = "x" * 15_000
            got_fast: list[rr.SubscribeErrorsResponse] = []
            fast_reader = asyncio.create_task(_drain(fast, got_fast))
            ids = []
            for i in range(400):
                ids.append((await capture(api, message=f"{big} {i}")).error_id)
            for _ in range(200):
                if len(got_fast) >= 400:
                    break
                await asyncio.sleep(0.05)
            assert [g.error.error_id for g in got_fast] == ids
            with pytest.raises(grpc.aio.AioRpcError) as info:
                while True:
                    msg = await asyncio.wait_for(slow.read(), 10)
                    assert msg is not grpc.aio.EOF
            assert info.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
            assert "resume_after" in (info.value.details() or "")
            fast_reader.cancel()
    finally:
        await running.stop(None)


async def test_shutdown_ends_streams_with_unavailable(tmp_path: Path) -> None:
    running = await start_server(server_settings(tmp_path))
    async with grpc.aio.insecure_channel(f"127.0.0.1:{running.port}") as channel:
        stub = service_pb2_grpc.ErrorReplayServiceStub(channel)
        api = Api(channel, stub, service_pb2_grpc.TopologyServiceStub(channel), running)
        call = await subscribed(api, rr.SubscribeErrorsRequest())
        sent = (await capture(api)).error_id
        stopping = asyncio.create_task(running.stop(5))
        (msg,) = await read_errors(call, 1)
        assert msg.error.error_id == sent  # flushed before the end
        with pytest.raises(grpc.aio.AioRpcError) as info:
            while True:
                msg = await asyncio.wait_for(call.read(), 10)
                assert msg is not grpc.aio.EOF
        assert info.value.code() == grpc.StatusCode.UNAVAILABLE
        await stopping


async def test_topology_declared_after_subscribing_reaches_the_stream(api: Api) -> None:
    # Issue 20: a bot that subscribes before the topology is declared must still get the cascade.
    p = uid("p")
    web, svc, db = f"{p}-web", f"{p}-api", f"{p}-db"
    call = await subscribed(
        api, rr.SubscribeErrorsRequest(filter=m.ErrorFilter(resource_ids=[web]), include_correlated=True)
    )
    # Before any edge exists, a db error is not related to web: nothing arrives.
    early = await capture(api, resource_id=db, occurred_at=ts(T0 - 3600), message="before the topology")
    marker = await capture(api, resource_id=web, occurred_at=ts(T0 - 3600), message="marker")
    (first,) = await read_errors(call, 1)
    assert first.error.error_id == marker.error_id and early.error_id != marker.error_id
    await api.topology.UpsertResources(
        rr.UpsertResourcesRequest(
            dependencies=[
                m.Dependency(dependent_id=web, dependency_id=svc),
                m.Dependency(dependent_id=svc, dependency_id=db),
            ]
        )
    )
    db_err = await capture(api, resource_id=db, occurred_at=ts(T0), message="pool exhausted")
    api_err = await capture(api, resource_id=svc, occurred_at=ts(T0 + 60), message="upstream 503")
    web_err = await capture(api, resource_id=web, occurred_at=ts(T0 + 120), message="timeout")
    db_msg, api_msg, web_msg = await read_errors(call, 3)
    assert [x.error.error_id for x in (db_msg, api_msg, web_msg)] == [
        db_err.error_id,
        api_err.error_id,
        web_err.error_id,
    ]
    assert db_msg.correlation.correlated and db_msg.correlation.reason == m.CORRELATION_REASON_DOWNSTREAM_FAILURE
    assert api_msg.correlation.correlated
    assert not web_msg.correlation.correlated
    assert web_msg.correlation.origin_error_id == db_err.error_id
    assert list(db_msg.correlation.affected_resource_ids) == [svc, web]
    assert await quiet_for(call, 0.3) == []
    call.cancel()
