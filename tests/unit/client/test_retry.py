"""Retries, idempotency keys, the token and resumable subscriptions, against a real grpc.aio server on
port 0 whose servicer fails on purpose."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from dataclasses import dataclass, field

import grpc
import pytest

from errorreplay import ErrorReplayClient, RetryPolicy, SyncErrorReplayClient
from errorreplay.client import record_change_request
from errorreplay.v1 import message_pb2 as m
from errorreplay.v1 import request_response_pb2 as rr
from errorreplay.v1 import service_pb2_grpc

FAST = RetryPolicy(max_attempts=4, initial_backoff=0.01, max_backoff=0.05)
REPORT = m.ErrorReport(message="boom", severity=m.SEVERITY_HIGH, source=m.SOURCE_APPLICATION)


@dataclass
class FlakyServicer(service_pb2_grpc.ErrorReplayServiceServicer):
    """Fails the first `failures` calls with `code`, recording what each call carried."""

    failures: int = 2
    code: grpc.StatusCode = grpc.StatusCode.UNAVAILABLE
    request_ids: list[str] = field(default_factory=list)
    authorization: list[str] = field(default_factory=list)
    batches: list[list[str]] = field(default_factory=list)
    resume_afters: list[str] = field(default_factory=list)
    get_calls: int = 0

    async def CaptureError(
        self, request: rr.CaptureErrorRequest, context: grpc.aio.ServicerContext
    ) -> rr.CaptureErrorResponse:
        self.request_ids.append(request.request_id)
        self.authorization.append(dict(context.invocation_metadata()).get("authorization", ""))
        if len(self.request_ids) <= self.failures:
            await context.abort(self.code, "store unavailable, retry with the same request_id")
        return rr.CaptureErrorResponse(error_id="err_1", duplicate=len(set(self.request_ids)) < len(self.request_ids))

    async def BatchCaptureErrors(
        self, request: rr.BatchCaptureErrorsRequest, context: grpc.aio.ServicerContext
    ) -> rr.BatchCaptureErrorsResponse:
        self.batches.append([item.request_id for item in request.requests])
        if len(self.batches) <= self.failures:
            await context.abort(self.code, "store unavailable")
        return rr.BatchCaptureErrorsResponse(stored_count=len(request.requests))

    async def GetError(self, request: rr.GetErrorRequest, context: grpc.aio.ServicerContext) -> rr.GetErrorResponse:
        self.get_calls += 1
        await asyncio.sleep(2)
        return rr.GetErrorResponse()

    async def SubscribeErrors(
        self, request: rr.SubscribeErrorsRequest, context: grpc.aio.ServicerContext
    ) -> AsyncIterator[rr.SubscribeErrorsResponse]:
        self.resume_afters.append(request.resume_after)
        if len(self.resume_afters) == 1:
            yield rr.SubscribeErrorsResponse(error=m.ErrorSnapshot(error_id="err_a"), cursor="c1")
            yield rr.SubscribeErrorsResponse(error=m.ErrorSnapshot(error_id="err_b"), cursor="c2")
            yield rr.SubscribeErrorsResponse(heartbeat=True, cursor="c3")
            await context.abort(self.code, "subscriber too slow")
        yield rr.SubscribeErrorsResponse(error=m.ErrorSnapshot(error_id="err_c"), cursor="c4")


@pytest.fixture
async def flaky() -> AsyncIterator[tuple[FlakyServicer, str]]:
    servicer = FlakyServicer()  # type: ignore[abstract]  # a partial fake: the rest answer UNIMPLEMENTED
    server = grpc.aio.server()
    service_pb2_grpc.add_ErrorReplayServiceServicer_to_server(servicer, server)
    port = server.add_insecure_port("127.0.0.1:0")
    await server.start()
    try:
        yield servicer, f"127.0.0.1:{port}"
    finally:
        await server.stop(grace=None)


async def test_capture_retries_unavailable_with_the_same_request_id(flaky: tuple[FlakyServicer, str]) -> None:
    servicer, address = flaky
    async with ErrorReplayClient(address, token="s3cret", retry=FAST) as client:
        response = await client.capture(REPORT)
    assert response.error_id == "err_1"
    assert len(servicer.request_ids) == 3
    assert len(set(servicer.request_ids)) == 1 and servicer.request_ids[0]
    assert servicer.authorization == ["Bearer s3cret"] * 3


async def test_caller_request_id_is_kept(flaky: tuple[FlakyServicer, str]) -> None:
    servicer, address = flaky
    async with ErrorReplayClient(address, retry=FAST) as client:
        await client.capture(REPORT, request_id="order-42-payment")
    assert servicer.request_ids == ["order-42-payment"] * 3
    assert servicer.authorization == [""] * 3  # no token, no header


async def test_sync_client_retries_with_the_same_request_id(flaky: tuple[FlakyServicer, str]) -> None:
    servicer, address = flaky

    def capture() -> rr.CaptureErrorResponse:
        with SyncErrorReplayClient(address, token="t", retry=FAST) as client:
            return client.capture(REPORT)

    response = await asyncio.to_thread(capture)  # the server runs on this loop
    assert response.error_id == "err_1"
    assert len(servicer.request_ids) == 3 and len(set(servicer.request_ids)) == 1
    assert servicer.authorization == ["Bearer t"] * 3


async def test_batch_items_get_stable_request_ids(flaky: tuple[FlakyServicer, str]) -> None:
    servicer, address = flaky
    async with ErrorReplayClient(address, retry=FAST) as client:
        await client.batch_capture([REPORT, rr.CaptureErrorRequest(error=REPORT, request_id="mine"), REPORT])
    assert len(servicer.batches) == 3
    first = servicer.batches[0]
    assert all(batch == first for batch in servicer.batches)
    assert first[1] == "mine" and all(first) and len(set(first)) == 3


async def test_other_codes_are_not_retried(flaky: tuple[FlakyServicer, str]) -> None:
    servicer, address = flaky
    servicer.code = grpc.StatusCode.INVALID_ARGUMENT
    async with ErrorReplayClient(address, retry=FAST) as client:
        with pytest.raises(grpc.aio.AioRpcError) as info:
            await client.capture(REPORT)
    assert info.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert len(servicer.request_ids) == 1


async def test_gives_up_after_max_attempts(flaky: tuple[FlakyServicer, str]) -> None:
    servicer, address = flaky
    servicer.failures = 100
    async with ErrorReplayClient(address, retry=RetryPolicy(max_attempts=3, initial_backoff=0.01)) as client:
        with pytest.raises(grpc.aio.AioRpcError) as info:
            await client.capture(REPORT)
    assert info.value.code() == grpc.StatusCode.UNAVAILABLE
    assert len(servicer.request_ids) == 3


async def test_disabled_retry_makes_one_attempt(flaky: tuple[FlakyServicer, str]) -> None:
    servicer, address = flaky
    async with ErrorReplayClient(address, retry=RetryPolicy.disabled()) as client:
        with pytest.raises(grpc.aio.AioRpcError):
            await client.capture(REPORT)
    assert len(servicer.request_ids) == 1


async def test_default_deadline_applies_and_is_not_retried(flaky: tuple[FlakyServicer, str]) -> None:
    servicer, address = flaky
    async with ErrorReplayClient(address, timeout=0.2, retry=FAST) as client:
        with pytest.raises(grpc.aio.AioRpcError) as info:
            await client.get("err_slow")
        assert info.value.code() == grpc.StatusCode.DEADLINE_EXCEEDED
        with pytest.raises(grpc.aio.AioRpcError):
            await client.get("err_slow", timeout=0.1)  # a per-call override
    assert servicer.get_calls == 2


async def test_subscribe_resumes_from_the_last_cursor(flaky: tuple[FlakyServicer, str]) -> None:
    servicer, address = flaky
    servicer.code = grpc.StatusCode.RESOURCE_EXHAUSTED
    async with ErrorReplayClient(address, retry=FAST) as client:
        seen = [msg.error.error_id async for msg in client.subscribe(resume_after="start", reconnect=True)]
    assert seen == ["err_a", "err_b", "err_c"]  # the heartbeat is not yielded
    assert servicer.resume_afters == ["start", "c3"]


async def test_sync_subscribe_resumes_from_the_last_cursor(flaky: tuple[FlakyServicer, str]) -> None:
    servicer, address = flaky

    def follow() -> list[str]:
        with SyncErrorReplayClient(address, retry=FAST) as client:
            return [msg.error.error_id for msg in client.subscribe(reconnect=True)]

    assert await asyncio.to_thread(follow) == ["err_a", "err_b", "err_c"]
    assert servicer.resume_afters == ["", "c3"]


async def test_subscribe_without_reconnect_raises(flaky: tuple[FlakyServicer, str]) -> None:
    servicer, address = flaky
    seen: list[str] = []
    async with ErrorReplayClient(address, retry=FAST) as client:
        with pytest.raises(grpc.aio.AioRpcError) as info:
            async for msg in client.subscribe():
                seen.append(msg.error.error_id)
    assert info.value.code() == grpc.StatusCode.UNAVAILABLE
    assert seen == ["err_a", "err_b"]
    assert servicer.resume_afters == [""]


def test_backoff_grows_caps_and_jitters() -> None:
    policy = RetryPolicy(initial_backoff=0.1, max_backoff=1.0, multiplier=2.0, jitter=0.5)
    assert [policy.backoff(n, rng=lambda: 0.0) for n in (1, 2, 3, 4, 5, 6)] == [0.1, 0.2, 0.4, 0.8, 1.0, 1.0]
    assert policy.backoff(2, rng=lambda: 1.0) == pytest.approx(0.1)  # at most half taken off
    for n in range(1, 8):
        assert 0 <= policy.backoff(n) <= 1.0


@pytest.mark.parametrize(
    "kwargs",
    [{"max_attempts": 0}, {"initial_backoff": -1}, {"multiplier": 0.5}, {"jitter": 1.5}],
)
def test_retry_policy_rejects_nonsense(kwargs: dict[str, float]) -> None:
    with pytest.raises(ValueError):
        RetryPolicy(**kwargs)  # type: ignore[arg-type]


def test_recorded_change_gets_a_stable_id() -> None:
    request = record_change_request(m.Change(kind=m.CHANGE_KIND_DEPLOYMENT, resource_id="db"))
    assert request.change.change_id.startswith("chg_")
    kept = record_change_request(m.Change(change_id="chg_mine"))
    assert kept.change.change_id == "chg_mine"
