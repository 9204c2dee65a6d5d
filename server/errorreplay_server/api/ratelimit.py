"""Per-caller limits: a token bucket for calls, and a cap on concurrent server streams.

Who is a caller is decided outside (auth.build_interceptors): the bearer token when auth is on, the
client's address without its port when it is off (so that opening more connections gains nothing).

Rate limit (`ERRORREPLAY_RATE_LIMIT_PER_SECOND`, `ERRORREPLAY_RATE_LIMIT_BURST`):
- Every call costs one token; `BatchCaptureErrors` costs one per item and an OTLP export one per
  error it holds, so the limit reads as "errors per second" whichever RPC a client uses. Opening a
  stream costs one token too, which throttles reconnect loops; the messages of an open stream cost
  nothing.
- A call is admitted when its caller holds at least one whole token. A batch may cost more than the
  caller holds: the balance goes negative and later calls wait the debt out. So a batch larger than
  the burst still goes through, and the sustained rate still holds.
- A refused call ends with RESOURCE_EXHAUSTED carrying google.rpc.RetryInfo: the time until the
  caller holds a whole token again.

Stream cap (`ERRORREPLAY_MAX_STREAMS_PER_TOKEN`): a caller with that many open server streams gets
RESOURCE_EXHAUSTED (RetryInfo: STREAM_RETRY_AFTER_SECONDS) for the next one. A stream's slot is
released however it ends: completion, error, client cancellation or deadline.
"""

from __future__ import annotations

import inspect
import logging
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

import grpc
from grpc_status import rpc_status
from opentelemetry.proto.collector.logs.v1.logs_service_pb2 import ExportLogsServiceRequest
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest

from errorreplay.v1 import request_response_pb2 as rr
from errorreplay_server.api.errors import status_for
from errorreplay_server.domain.errors import ResourceExhausted
from errorreplay_server.ingest.otlp import OtlpAdapter
from errorreplay_server.settings import OtlpSettings

log = logging.getLogger(__name__)

CallerKey = Callable[[grpc.aio.ServicerContext], str]
Clock = Callable[[], float]

STREAM_RETRY_AFTER_SECONDS = 1.0
"""RetryInfo for a refused stream: slots free up when streams end, which no clock predicts."""
MAX_TRACKED_CALLERS = 10_000
"""Above this many buckets, full ones (indistinguishable from new ones) are dropped."""

_ROUNDING = 1e-9
"""A client that waits exactly the RetryInfo delay must not be refused by a floating-point residue."""


class CallCost:
    """Tokens a unary call costs: one, or one per item of a batch capture, or one per error in an
    OTLP export (counted by the OTLP adapter's own rules, so the settings that decide what is an
    error decide the cost too)."""

    def __init__(self, otlp: OtlpSettings | None = None) -> None:
        self._otlp = OtlpAdapter(otlp or OtlpSettings())

    def __call__(self, request: Any) -> int:
        if isinstance(request, rr.BatchCaptureErrorsRequest):
            return max(1, len(request.requests))
        if isinstance(request, ExportTraceServiceRequest | ExportLogsServiceRequest):
            return max(1, self._otlp.count_errors(request))
        return 1


call_cost = CallCost()


@dataclass(slots=True)
class _Bucket:
    tokens: float
    updated_at: float


class TokenBucketLimiter:
    """Token buckets keyed by caller: `rate` tokens per second, holding at most `burst`."""

    def __init__(
        self, rate: float, burst: int, clock: Clock = time.monotonic, max_callers: int = MAX_TRACKED_CALLERS
    ) -> None:
        if rate <= 0 or burst < 1:
            raise ValueError("a token bucket needs rate > 0 and burst >= 1")
        self.rate = rate
        self.burst = burst
        self._clock = clock
        self._max_callers = max_callers
        self._buckets: dict[str, _Bucket] = {}

    def take(self, key: str, cost: int = 1) -> float:
        """Charge `cost` tokens. Returns 0.0 when admitted, else the seconds to wait (nothing charged)."""
        now = self._clock()
        bucket = self._buckets.get(key)
        if bucket is None:
            if len(self._buckets) >= self._max_callers:
                self._drop_full(now)
            bucket = self._buckets[key] = _Bucket(float(self.burst), now)
        else:
            bucket.tokens = min(float(self.burst), bucket.tokens + (now - bucket.updated_at) * self.rate)
            bucket.updated_at = now
        if bucket.tokens < 1.0 - _ROUNDING:
            return (1.0 - bucket.tokens) / self.rate
        bucket.tokens -= cost
        return 0.0

    def tokens(self, key: str) -> float:
        """The caller's balance now (the burst for an unknown caller)."""
        bucket = self._buckets.get(key)
        if bucket is None:
            return float(self.burst)
        return min(float(self.burst), bucket.tokens + (self._clock() - bucket.updated_at) * self.rate)

    def _drop_full(self, now: float) -> None:
        full = [k for k, b in self._buckets.items() if b.tokens + (now - b.updated_at) * self.rate >= self.burst]
        for key in full:
            del self._buckets[key]

    def __len__(self) -> int:
        return len(self._buckets)


class StreamLimiter:
    """Counts open streams per caller; `try_open` refuses beyond `max_streams`."""

    def __init__(self, max_streams: int) -> None:
        if max_streams < 1:
            raise ValueError("max_streams must be >= 1")
        self.max_streams = max_streams
        self._open: dict[str, int] = {}

    def try_open(self, key: str) -> bool:
        count = self._open.get(key, 0)
        if count >= self.max_streams:
            return False
        self._open[key] = count + 1
        return True

    def close(self, key: str) -> None:
        count = self._open.get(key, 0) - 1
        if count > 0:
            self._open[key] = count
        else:
            self._open.pop(key, None)

    def open_streams(self, key: str) -> int:
        return self._open.get(key, 0)

    def total(self) -> int:
        return sum(self._open.values())


def peer_caller_key(context: grpc.aio.ServicerContext) -> str:
    """The client's address without the port: `ipv4:10.0.0.7`, `ipv6:[::1]`, `unix:/path`."""
    return peer_host(context.peer() or "unknown")


def peer_host(peer: str) -> str:
    if peer.startswith("ipv4:"):
        return peer.rpartition(":")[0]
    if peer.startswith("ipv6:"):
        host, sep, _port = peer.rpartition("]:")
        return host + "]" if sep else peer
    return peer


async def _abort(exc: ResourceExhausted, context: grpc.aio.ServicerContext) -> None:
    await context.abort_with_status(rpc_status.to_status(status_for(exc)))


class RateLimitInterceptor(grpc.aio.ServerInterceptor):
    """Applies the call rate limit and the stream cap to every method that `exempt` does not name."""

    def __init__(
        self,
        caller_key: CallerKey,
        limiter: TokenBucketLimiter | None,
        streams: StreamLimiter | None,
        exempt: Callable[[str], bool] = lambda method: False,
        cost: Callable[[Any], int] = call_cost,
    ) -> None:
        self._caller_key = caller_key
        self._cost = cost
        self._limiter = limiter
        self._streams = streams
        self._exempt = exempt
        self._wrapped: dict[str, grpc.RpcMethodHandler] = {}

    @property
    def limiter(self) -> TokenBucketLimiter | None:
        return self._limiter

    @property
    def streams(self) -> StreamLimiter | None:
        return self._streams

    async def intercept_service(
        self,
        continuation: Callable[[grpc.HandlerCallDetails], Awaitable[grpc.RpcMethodHandler]],
        handler_call_details: grpc.HandlerCallDetails,
    ) -> grpc.RpcMethodHandler:
        method = handler_call_details.method
        cached = self._wrapped.get(method)
        if cached is not None:
            return cached
        handler = await continuation(handler_call_details)
        if handler is None or self._exempt(method):
            return handler
        wrapped = self._wrap(handler)
        self._wrapped[method] = wrapped
        return wrapped

    def _refusal(self, key: str, cost: int) -> ResourceExhausted | None:
        if self._limiter is None:
            return None
        wait = self._limiter.take(key, cost)
        if not wait:
            return None
        return ResourceExhausted(
            f"rate limit: {self._limiter.rate:g} calls/s with a burst of {self._limiter.burst} per caller; "
            f"retry in {wait:.3f} s",
            retry_after_seconds=wait,
        )

    def _stream_refusal(self, key: str) -> ResourceExhausted | None:
        refusal = self._refusal(key, 1)
        if refusal is not None:
            return refusal
        if self._streams is not None and not self._streams.try_open(key):
            return ResourceExhausted(
                f"too many concurrent streams: at most {self._streams.max_streams} per caller",
                retry_after_seconds=STREAM_RETRY_AFTER_SECONDS,
            )
        return None

    def _release(self, key: str) -> None:
        if self._streams is not None:
            self._streams.close(key)

    def _wrap(self, handler: grpc.RpcMethodHandler) -> grpc.RpcMethodHandler:
        if handler.unary_unary is not None:
            if self._limiter is None:
                return handler
            inner = handler.unary_unary

            async def unary(request: Any, context: grpc.aio.ServicerContext) -> Any:
                refusal = self._refusal(self._caller_key(context), self._cost(request))
                if refusal is not None:
                    await _abort(refusal, context)
                return await inner(request, context)

            return grpc.unary_unary_rpc_method_handler(
                unary,
                request_deserializer=handler.request_deserializer,
                response_serializer=handler.response_serializer,
            )
        if handler.unary_stream is None:
            # No client-streaming RPC is served; such handlers pass unlimited rather than half-limited.
            return handler
        # Every streaming method here writes with context.write (SubscribeErrors, health Watch);
        # an async generator would need its own wrapper, so refuse one loudly rather than misuse it.
        inner_stream = handler.unary_stream
        if inspect.isasyncgenfunction(inner_stream):
            raise TypeError("a rate-limited stream handler must write with context.write, not yield")

        async def writer(request: Any, context: grpc.aio.ServicerContext) -> Any:
            key = self._caller_key(context)
            refusal = self._stream_refusal(key)
            if refusal is not None:
                await _abort(refusal, context)
                return None
            try:
                return await inner_stream(request, context)
            finally:
                self._release(key)

        return grpc.unary_stream_rpc_method_handler(
            writer,
            request_deserializer=handler.request_deserializer,
            response_serializer=handler.response_serializer,
        )
