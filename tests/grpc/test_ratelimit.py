"""Per-caller token bucket and stream cap: the arithmetic, then over the wire with RetryInfo."""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import AsyncIterator, Callable
from pathlib import Path

import grpc
import pytest
from google.protobuf import duration_pb2
from google.rpc import error_details_pb2
from grpc_health.v1 import health_pb2, health_pb2_grpc

from errorreplay.v1 import message_pb2 as m
from errorreplay.v1 import request_response_pb2 as rr
from errorreplay.v1 import service_pb2_grpc
from errorreplay_server.api.auth import caller_key_for_token
from errorreplay_server.api.ratelimit import (
    RateLimitInterceptor,
    StreamLimiter,
    TokenBucketLimiter,
    call_cost,
    peer_caller_key,
    peer_host,
)
from errorreplay_server.grants import Role, TokenGrant
from errorreplay_server.security_settings import SecuritySettings
from errorreplay_server.settings import Settings
from tests.grpc.conftest import status_of
from tests.grpc.test_auth import Secured, bearer, new_token, secured_server


class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def retry_delay(err: grpc.aio.AioRpcError) -> float:
    for detail in status_of(err).details:
        info = error_details_pb2.RetryInfo()
        if detail.Unpack(info):
            return info.retry_delay.ToNanoseconds() / 1e9
    raise AssertionError(f"no RetryInfo in {err.code()}: {err.details()}")


def limiter_of(srv: Secured) -> RateLimitInterceptor:
    found = [i for i in srv.interceptors if isinstance(i, RateLimitInterceptor)]
    assert found
    return found[0]


def report(run: str) -> m.ErrorReport:
    return m.ErrorReport(message="limit", severity=m.SEVERITY_LOW, source=m.SOURCE_APPLICATION, tags={"run": run})


async def eventually(check: Callable[[], bool], timeout: float = 5.0) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        assert time.monotonic() < deadline, "condition not reached"
        await asyncio.sleep(0.02)


# --- arithmetic ----------------------------------------------------------------------------------


def test_bucket_admits_the_burst_then_refills_at_the_rate() -> None:
    clock = FakeClock()
    bucket = TokenBucketLimiter(rate=2.0, burst=3, clock=clock)
    assert [bucket.take("a") for _ in range(3)] == [0.0, 0.0, 0.0]
    assert bucket.take("a") == pytest.approx(0.5)
    clock.now += 0.25
    assert bucket.take("a") == pytest.approx(0.25)  # a refusal charges nothing
    clock.now += 0.25
    assert bucket.take("a") == 0.0
    clock.now += 3600
    assert bucket.tokens("a") == 3.0  # refill stops at the burst


def test_callers_have_their_own_buckets() -> None:
    bucket = TokenBucketLimiter(rate=1.0, burst=1, clock=FakeClock())
    assert bucket.take("a") == 0.0
    assert bucket.take("a") > 0
    assert bucket.take("b") == 0.0


def test_a_batch_larger_than_the_burst_goes_through_and_is_paid_back() -> None:
    clock = FakeClock()
    bucket = TokenBucketLimiter(rate=10.0, burst=3, clock=clock)
    assert bucket.take("a", cost=10) == 0.0
    assert bucket.tokens("a") == pytest.approx(-7)
    assert bucket.take("a") == pytest.approx(0.8)  # (1 - -7) / 10
    clock.now += 0.8
    assert bucket.take("a") == 0.0


def test_only_full_buckets_are_forgotten() -> None:
    clock = FakeClock()
    bucket = TokenBucketLimiter(rate=1.0, burst=2, clock=clock, max_callers=3)
    bucket.take("debtor", cost=5)
    bucket.take("idle")
    bucket.take("busy")
    clock.now += 1.0  # idle and busy are full again; debtor is still at -2
    bucket.take("new")
    assert len(bucket) == 2
    assert bucket.tokens("debtor") == pytest.approx(-3 + 1)
    assert bucket.take("debtor") > 0


def test_stream_limiter_counts() -> None:
    streams = StreamLimiter(2)
    assert streams.try_open("a") and streams.try_open("a")
    assert not streams.try_open("a")
    assert streams.try_open("b")
    streams.close("a")
    assert streams.open_streams("a") == 1 and streams.try_open("a")
    for _ in range(5):
        streams.close("b")  # closing more than was opened never goes negative
    assert streams.open_streams("b") == 0 and streams.total() == 2


def test_call_cost() -> None:
    batch = rr.BatchCaptureErrorsRequest(requests=[rr.CaptureErrorRequest() for _ in range(7)])
    assert call_cost(batch) == 7
    assert call_cost(rr.BatchCaptureErrorsRequest()) == 1
    assert call_cost(rr.CaptureErrorRequest()) == 1
    assert call_cost(object()) == 1


@pytest.mark.parametrize(
    ("peer", "host"),
    [
        ("ipv4:127.0.0.1:53211", "ipv4:127.0.0.1"),
        ("ipv6:[::1]:53211", "ipv6:[::1]"),
        ("ipv6:[2001:db8::7]:443", "ipv6:[2001:db8::7]"),
        ("unix:/tmp/sock", "unix:/tmp/sock"),
        ("ipv6:%5B::1%5D:1", "ipv6:%5B::1%5D:1"),
    ],
)
def test_peer_host_drops_the_port(peer: str, host: str) -> None:
    assert peer_host(peer) == host


def test_limit_settings() -> None:
    assert Settings.from_env({"ERRORREPLAY_RATE_LIMIT_PER_SECOND": "2.5"}).security.effective_burst == 3
    security = Settings.from_env(
        {
            "ERRORREPLAY_RATE_LIMIT_PER_SECOND": "50",
            "ERRORREPLAY_RATE_LIMIT_BURST": "200",
            "ERRORREPLAY_MAX_STREAMS_PER_TOKEN": "0",
        }
    ).security
    assert (security.rate_limit_per_second, security.effective_burst, security.max_streams_per_token) == (50, 200, 0)
    assert not Settings.from_env({"ERRORREPLAY_RATE_LIMIT_PER_SECOND": "0"}).security.rate_limit_enabled
    for name, value in [
        ("ERRORREPLAY_RATE_LIMIT_PER_SECOND", "-1"),
        ("ERRORREPLAY_RATE_LIMIT_PER_SECOND", "nan"),
        ("ERRORREPLAY_RATE_LIMIT_PER_SECOND", "inf"),
        ("ERRORREPLAY_RATE_LIMIT_PER_SECOND", "fast"),
        ("ERRORREPLAY_RATE_LIMIT_BURST", "1.5"),
        ("ERRORREPLAY_MAX_STREAMS_PER_TOKEN", "-3"),
    ]:
        with pytest.raises(ValueError, match=name):
            Settings.from_env({name: value})


# --- over the wire: the call rate ------------------------------------------------------------------


async def test_rate_limit_is_per_token_with_retry_info(tmp_path: Path) -> None:
    first, second = new_token(), new_token()
    security = SecuritySettings(
        tokens=(TokenGrant(Role.READER, first), TokenGrant(Role.READER, second)),
        rate_limit_per_second=2.0,
        rate_limit_burst=3,
    )
    get = rr.GetErrorRequest(error_id="err_missing")
    async with secured_server(tmp_path, security) as srv:
        for _ in range(3):
            with pytest.raises(grpc.aio.AioRpcError) as info:
                await srv.errors.GetError(get, metadata=bearer(first))
            assert info.value.code() == grpc.StatusCode.NOT_FOUND
        with pytest.raises(grpc.aio.AioRpcError) as info:
            await srv.errors.GetError(get, metadata=bearer(first))
        assert info.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
        wait = retry_delay(info.value)
        assert 0 < wait <= 0.5
        assert first not in (info.value.details() or "")
        # Another token has its own bucket.
        with pytest.raises(grpc.aio.AioRpcError) as info:
            await srv.errors.GetError(get, metadata=bearer(second))
        assert info.value.code() == grpc.StatusCode.NOT_FOUND
        # Waiting as told is enough.
        await asyncio.sleep(wait + 0.02)
        with pytest.raises(grpc.aio.AioRpcError) as info:
            await srv.errors.GetError(get, metadata=bearer(first))
        assert info.value.code() == grpc.StatusCode.NOT_FOUND


async def test_rate_limit_is_per_peer_address_without_auth(tmp_path: Path) -> None:
    security = SecuritySettings(rate_limit_per_second=0.5, rate_limit_burst=2)
    get = rr.GetErrorRequest(error_id="err_missing")
    async with secured_server(tmp_path, security) as srv:
        other = grpc.aio.insecure_channel(f"127.0.0.1:{srv.running.port}")
        try:
            codes = []
            for channel in (srv.channel, other, srv.channel):  # a second connection shares the bucket
                try:
                    await service_pb2_grpc.ErrorReplayServiceStub(channel).GetError(get)
                except grpc.aio.AioRpcError as err:
                    codes.append(err.code())
            assert codes == [grpc.StatusCode.NOT_FOUND, grpc.StatusCode.NOT_FOUND, grpc.StatusCode.RESOURCE_EXHAUSTED]
            assert limiter_of(srv).limiter is not None
            assert limiter_of(srv).limiter.tokens("ipv4:127.0.0.1") < 1  # type: ignore[union-attr]
        finally:
            await other.close()


async def test_batch_capture_costs_one_token_per_item(tmp_path: Path) -> None:
    token = new_token()
    security = SecuritySettings(tokens=(TokenGrant(Role.WRITER, token),), rate_limit_per_second=1.0, rate_limit_burst=5)
    run = uuid.uuid4().hex
    async with secured_server(tmp_path, security) as srv:
        batch = rr.BatchCaptureErrorsRequest(requests=[rr.CaptureErrorRequest(error=report(run)) for _ in range(20)])
        reply = await srv.errors.BatchCaptureErrors(batch, metadata=bearer(token))
        assert reply.stored_count == 20  # larger than the burst, admitted on credit
        with pytest.raises(grpc.aio.AioRpcError) as info:
            await srv.errors.CaptureError(rr.CaptureErrorRequest(error=report(run)), metadata=bearer(token))
        assert info.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
        assert 15 <= retry_delay(info.value) <= 16.1  # 5 - 20 = -15 tokens: 16 s to hold one again


async def test_health_is_never_rate_limited(tmp_path: Path) -> None:
    async with secured_server(tmp_path, SecuritySettings(rate_limit_per_second=0.1, rate_limit_burst=1)) as srv:
        health = health_pb2_grpc.HealthStub(srv.channel)
        for _ in range(20):
            reply = await health.Check(health_pb2.HealthCheckRequest())
            assert reply.status == health_pb2.HealthCheckResponse.SERVING


# --- over the wire: the stream cap -----------------------------------------------------------------


def subscribe_request(heartbeat_nanos: int = 100_000_000) -> rr.SubscribeErrorsRequest:
    return rr.SubscribeErrorsRequest(
        filter=m.ErrorFilter(tags={"run": uuid.uuid4().hex}),
        heartbeat_interval=duration_pb2.Duration(nanos=heartbeat_nanos),
    )


async def open_stream(srv: Secured, token: str, timeout: float | None = None) -> grpc.aio.UnaryStreamCall:
    """A stream the server has accepted: its first heartbeat has arrived."""
    call = srv.errors.SubscribeErrors(subscribe_request(), metadata=bearer(token), timeout=timeout)
    first = await asyncio.wait_for(call.read(), 10)
    assert first is not grpc.aio.EOF and first.heartbeat
    return call


async def expect_refused(srv: Secured, token: str) -> grpc.aio.AioRpcError:
    call = srv.errors.SubscribeErrors(subscribe_request(), metadata=bearer(token))
    with pytest.raises(grpc.aio.AioRpcError) as info:
        await asyncio.wait_for(call.read(), 10)
    assert info.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED, info.value.details()
    return info.value


async def test_stream_cap_per_token_and_release_on_cancel(tmp_path: Path) -> None:
    first, second = new_token(), new_token()
    security = SecuritySettings(
        tokens=(TokenGrant(Role.READER, first), TokenGrant(Role.READER, second)), max_streams_per_token=2
    )
    async with secured_server(tmp_path, security) as srv:
        streams = limiter_of(srv).streams
        assert streams is not None
        key = caller_key_for_token(first)
        a = await open_stream(srv, first)
        b = await open_stream(srv, first)
        assert streams.open_streams(key) == 2
        refused = await expect_refused(srv, first)
        assert retry_delay(refused) > 0 and "at most 2" in (refused.details() or "")
        c = await open_stream(srv, second)  # another token is not affected
        a.cancel()
        await eventually(lambda: streams.open_streams(key) == 1)
        d = await open_stream(srv, first)
        assert streams.open_streams(key) == 2
        for call in (b, c, d):
            call.cancel()
        await eventually(lambda: streams.total() == 0)


async def test_stream_slot_released_on_error_and_deadline(tmp_path: Path) -> None:
    token = new_token()
    security = SecuritySettings(tokens=(TokenGrant(Role.READER, token),), max_streams_per_token=1)
    async with secured_server(tmp_path, security) as srv:
        streams = limiter_of(srv).streams
        assert streams is not None
        for _ in range(3):  # a 50 ms heartbeat is below the minimum: INVALID_ARGUMENT
            bad = srv.errors.SubscribeErrors(subscribe_request(heartbeat_nanos=50_000_000), metadata=bearer(token))
            with pytest.raises(grpc.aio.AioRpcError) as info:
                await bad.read()
            assert info.value.code() == grpc.StatusCode.INVALID_ARGUMENT
        await eventually(lambda: streams.total() == 0)
        expiring = await open_stream(srv, token, timeout=0.5)
        with pytest.raises(grpc.aio.AioRpcError) as info:
            while True:
                await expiring.read()
        assert info.value.code() == grpc.StatusCode.DEADLINE_EXCEEDED
        await eventually(lambda: streams.total() == 0)
        last = await open_stream(srv, token)
        await expect_refused(srv, token)
        last.cancel()
        await eventually(lambda: streams.total() == 0)


async def test_stream_slot_released_when_the_server_stops_streams(tmp_path: Path) -> None:
    token = new_token()
    security = SecuritySettings(tokens=(TokenGrant(Role.READER, token),), max_streams_per_token=3)
    async with secured_server(tmp_path, security) as srv:
        streams = limiter_of(srv).streams
        assert streams is not None
        calls = [await open_stream(srv, token) for _ in range(3)]
        await srv.running.hub.close()  # ends every subscription (UNAVAILABLE), as a shutdown does
        for call in calls:
            with pytest.raises(grpc.aio.AioRpcError):
                while await call.read() is not grpc.aio.EOF:
                    pass
        await eventually(lambda: streams.total() == 0)


# Completion: SubscribeErrors never completes on its own, so two tiny streaming services stand in,
# one written as an async generator and one with context.write (the shape SubscribeErrors has).


async def _generator_stream(request: bytes, context: grpc.aio.ServicerContext) -> AsyncIterator[bytes]:
    for i in range(3):
        yield bytes([i])


async def _writer_stream(request: bytes, context: grpc.aio.ServicerContext) -> None:
    for i in range(3):
        await context.write(bytes([i]))


async def _slow_stream(request: bytes, context: grpc.aio.ServicerContext) -> None:
    await context.write(b"started")
    await asyncio.sleep(60)


def test_generator_stream_handlers_are_refused_at_wrap_time() -> None:
    """The service's streams write with context.write; the interceptor has no generator path."""
    interceptor = RateLimitInterceptor(peer_caller_key, None, StreamLimiter(1))
    with pytest.raises(TypeError, match=r"context\.write"):
        interceptor._wrap(grpc.unary_stream_rpc_method_handler(_generator_stream))


async def test_stream_slot_released_on_completion() -> None:
    handler = _writer_stream
    streams = StreamLimiter(1)
    interceptor = RateLimitInterceptor(peer_caller_key, None, streams)
    server = grpc.aio.server(interceptors=[interceptor])
    server.add_generic_rpc_handlers(
        [
            grpc.method_handlers_generic_handler(
                "test.Streams",
                {
                    "Finite": grpc.unary_stream_rpc_method_handler(handler),
                    "Slow": grpc.unary_stream_rpc_method_handler(_slow_stream),
                },
            )
        ]
    )
    port = server.add_insecure_port("127.0.0.1:0")
    await server.start()
    try:
        async with grpc.aio.insecure_channel(f"127.0.0.1:{port}") as channel:
            finite = channel.unary_stream("/test.Streams/Finite")
            for _ in range(5):  # with a cap of 1, each run needs the previous slot back
                assert [item async for item in finite(b"", timeout=5)] == [b"\x00", b"\x01", b"\x02"]
                await eventually(lambda: streams.total() == 0)
            slow = channel.unary_stream("/test.Streams/Slow")(b"", timeout=30)
            assert await slow.read() == b"started"
            with pytest.raises(grpc.aio.AioRpcError) as info:
                await finite(b"", timeout=5).read()
            assert info.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
            slow.cancel()
            await eventually(lambda: streams.total() == 0)
    finally:
        await server.stop(grace=None)
