"""A small hand-written client over the generated stubs: channel, token, deadlines and safe retries.

`ErrorReplayClient` is the asyncio (grpc.aio) client; `errorreplay.sync_client.SyncErrorReplayClient` is
its blocking twin with the same methods. Both retry only `UNAVAILABLE`, with exponential backoff and
jitter. Every write is made safe to retry before it is first sent: a capture always carries a
`request_id` and a recorded change always carries a `change_id`, so a retry returns the first result
instead of storing a second copy.
"""

from __future__ import annotations

import asyncio
import hashlib
import os
import random
import traceback
import uuid
from collections.abc import AsyncGenerator, Callable, Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from types import TracebackType
from typing import TYPE_CHECKING, Any, TypeVar, cast

import grpc
from google.protobuf import duration_pb2, timestamp_pb2
from google.protobuf.message import Message

from errorreplay.errors import ErrorReplayError, from_rpc_error
from errorreplay.v1 import message_pb2 as m
from errorreplay.v1 import request_response_pb2 as rr
from errorreplay.v1 import service_pb2_grpc

if TYPE_CHECKING:
    from errorreplay.v1.service_pb2_grpc import ErrorReplayServiceAsyncStub, TopologyServiceAsyncStub

__all__ = [
    "DEFAULT_TIMEOUT",
    "MAX_BATCH_ITEMS",
    "MAX_SEND_MESSAGE_BYTES",
    "RESUMABLE_CODES",
    "RETRYABLE_CODES",
    "ErrorReplayClient",
    "RetryPolicy",
    "report_from_exception",
    "retry_wait",
]

DEFAULT_TIMEOUT = 10.0
"""Seconds allowed for one attempt of a unary call. Streams get no default deadline."""

RETRYABLE_CODES = frozenset({grpc.StatusCode.UNAVAILABLE})
"""UNAVAILABLE is retried: the server stored nothing, or the idempotency key makes a repeat safe.
RESOURCE_EXHAUSTED is retried only when it carries a RetryInfo (see `retry_wait`)."""

RESUMABLE_CODES = frozenset({grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.RESOURCE_EXHAUSTED})
"""A subscription ended with one of these codes can resume from its last cursor without loss."""

MAX_BATCH_ITEMS = 1000
"""The server's batch limit (ERRORREPLAY_MAX_BATCH_SIZE): `batch_capture` sends larger batches in parts."""

MAX_SEND_MESSAGE_BYTES = 8 * 1024 * 1024
"""The server's receive limit (ERRORREPLAY_MAX_RECEIVE_MESSAGE_BYTES): the channel refuses to send more,
and `batch_capture` splits a batch so that each part stays under it."""

DEFAULT_CHANNEL_OPTIONS: tuple[tuple[str, Any], ...] = (
    ("grpc.max_send_message_length", MAX_SEND_MESSAGE_BYTES),
    # Responses are bounded by the server's page sizes; one it sent must never be refused here
    # (grpc's default of 4 MiB refused a full search page of large stack traces).
    ("grpc.max_receive_message_length", -1),
)

# Room for the batch message's own framing around its items.
_BATCH_OVERHEAD_BYTES = 1024

_R = TypeVar("_R", bound=Message)


@dataclass(frozen=True, slots=True)
class RetryPolicy:
    """Exponential backoff with jitter for calls that fail with UNAVAILABLE.

    The n-th retry waits `min(max_backoff, initial_backoff * multiplier ** (n - 1))`, shortened by a
    random fraction of up to `jitter` so that many clients do not retry in step.
    """

    max_attempts: int = 4
    """Attempts in all, the first included; 1 disables retries."""
    initial_backoff: float = 0.1
    max_backoff: float = 3.0
    multiplier: float = 2.0
    jitter: float = 0.5

    def __post_init__(self) -> None:
        if self.max_attempts < 1:
            raise ValueError("max_attempts must be at least 1")
        if self.initial_backoff < 0 or self.max_backoff < 0 or self.multiplier < 1:
            raise ValueError("backoffs must be non-negative and multiplier at least 1")
        if not 0 <= self.jitter <= 1:
            raise ValueError("jitter must be in [0, 1]")

    @classmethod
    def disabled(cls) -> RetryPolicy:
        return cls(max_attempts=1)

    def backoff(self, retry: int, rng: Callable[[], float] = random.random) -> float:
        """Seconds to wait before retry number `retry` (1 for the first retry)."""
        ceiling = min(self.max_backoff, self.initial_backoff * self.multiplier ** max(retry - 1, 0))
        return ceiling * (1 - self.jitter * rng())


def retry_wait(error: ErrorReplayError, attempt: int, policy: RetryPolicy) -> float | None:
    """Seconds to wait before retrying a failed attempt, or None to give up.

    UNAVAILABLE is retried with the policy's backoff, and RESOURCE_EXHAUSTED too when the server sent a
    RetryInfo; a RetryInfo delay is honoured (waited at least).
    """
    if attempt >= policy.max_attempts:
        return None
    code = error.code()
    if code in RETRYABLE_CODES or (code == grpc.StatusCode.RESOURCE_EXHAUSTED and error.retry_delay is not None):
        return max(policy.backoff(attempt), error.retry_delay or 0.0)
    return None


def report_from_exception(
    exc: BaseException,
    *,
    severity: m.Severity.ValueType,
    source: m.Source.ValueType = m.SOURCE_APPLICATION,
    resource_id: str = "",
    **fields: Any,
) -> m.ErrorReport:
    """An ErrorReport for a Python exception.

    The message is `message` when given, else `str(exc)`, or the type name when that is empty;
    `error_type` is the qualified class name (`builtins.` left out); `stack_trace` is the formatted
    traceback with its chained causes.
    `occurred_at` defaults to now, so that a capture delayed by retries keeps the time of the error.
    Other keyword arguments are ErrorReport fields (service, correlation_id, tags, ...).
    """
    cls = type(exc)
    error_type = cls.__qualname__ if cls.__module__ == "builtins" else f"{cls.__module__}.{cls.__qualname__}"
    occurred_at = fields.pop("occurred_at", None)
    report = m.ErrorReport(
        message=fields.pop("message", None) or str(exc) or cls.__name__,
        severity=severity,
        source=source,
        resource_id=resource_id,
        error_type=error_type,
        stack_trace="".join(traceback.format_exception(exc)),
        **fields,
    )
    report.occurred_at.CopyFrom(timestamp(occurred_at or datetime.now(UTC)))
    return report


def timestamp(value: datetime | timestamp_pb2.Timestamp) -> timestamp_pb2.Timestamp:
    """A Timestamp from an aware datetime (a naive one is taken as UTC)."""
    if isinstance(value, timestamp_pb2.Timestamp):
        return value
    ts = timestamp_pb2.Timestamp()
    ts.FromDatetime(value if value.tzinfo else value.replace(tzinfo=UTC))
    return ts


def duration(value: timedelta) -> duration_pb2.Duration:
    d = duration_pb2.Duration()
    d.FromTimedelta(value)
    return d


def new_request_id() -> str:
    return uuid.uuid4().hex


def capture_request(
    report: m.ErrorReport, request_id: str | None = None, wait_for_context: bool = False
) -> rr.CaptureErrorRequest:
    """The request is built once, id included, so every retry repeats the same idempotency key."""
    return rr.CaptureErrorRequest(
        error=report, request_id=request_id or new_request_id(), wait_for_context=wait_for_context
    )


def channel_options(options: Sequence[tuple[str, Any]]) -> list[tuple[str, Any]]:
    """DEFAULT_CHANNEL_OPTIONS, each overridden by an option of the same name in `options`."""
    given = {name for name, _ in options}
    return [*(o for o in DEFAULT_CHANNEL_OPTIONS if o[0] not in given), *options]


def stable_request_id(serialized: bytes, occurrence: int) -> str:
    """An idempotency key derived from an item's deterministic serialisation, so that sending the
    same items again (a retry by the caller after a timeout or a lost answer) repeats the same
    keys. `occurrence` tells identical items of one batch apart."""
    digest = hashlib.sha256(serialized)
    digest.update(b"#%d" % occurrence)
    return "b-" + digest.hexdigest()[:40]


def batch_request(
    items: Iterable[m.ErrorReport | rr.CaptureErrorRequest], include_snapshots: bool = False
) -> rr.BatchCaptureErrorsRequest:
    """Every item gets a request_id: the caller's, or one derived from the item.

    An ErrorReport without `occurred_at` is given the current time first (in the caller's object),
    so a later occurrence of the same error differs from a retry of this one, and a retry carries the
    time of the first attempt."""
    request = rr.BatchCaptureErrorsRequest(include_snapshots=include_snapshots)
    seen: dict[bytes, int] = {}
    for item in items:
        report = item if isinstance(item, m.ErrorReport) else item.error
        if not report.HasField("occurred_at"):
            report.occurred_at.GetCurrentTime()
        safe = request.requests.add()
        if isinstance(item, m.ErrorReport):
            safe.error.CopyFrom(item)
        else:
            safe.CopyFrom(item)
        if not safe.request_id:
            key = safe.SerializeToString(deterministic=True)
            occurrence = seen.get(key, 0)
            seen[key] = occurrence + 1
            safe.request_id = stable_request_id(key, occurrence)
    return request


def split_batch(
    request: rr.BatchCaptureErrorsRequest,
    max_items: int = MAX_BATCH_ITEMS,
    max_bytes: int = MAX_SEND_MESSAGE_BYTES,
) -> list[rr.BatchCaptureErrorsRequest]:
    """Parts of at most `max_items` items and about `max_bytes` serialised, in order (an item larger
    than `max_bytes` goes alone and the server answers for it)."""
    parts: list[rr.BatchCaptureErrorsRequest] = []
    part = rr.BatchCaptureErrorsRequest(include_snapshots=request.include_snapshots)
    size = _BATCH_OVERHEAD_BYTES
    for item in request.requests:
        item_size = item.ByteSize() + 8  # the field's tag and length
        if part.requests and (len(part.requests) >= max_items or size + item_size > max_bytes):
            parts.append(part)
            part = rr.BatchCaptureErrorsRequest(include_snapshots=request.include_snapshots)
            size = _BATCH_OVERHEAD_BYTES
        part.requests.append(item)
        size += item_size
    if part.requests or not parts:
        parts.append(part)
    return parts


def merge_batch_responses(responses: Sequence[rr.BatchCaptureErrorsResponse]) -> rr.BatchCaptureErrorsResponse:
    """One response for the parts of a split batch, with each result's index in the whole batch."""
    merged = rr.BatchCaptureErrorsResponse()
    offset = 0
    for response in responses:
        for result in response.results:
            out = merged.results.add()
            out.CopyFrom(result)
            out.index = result.index + offset
        offset += len(response.results)
        merged.stored_count += response.stored_count
        merged.duplicate_count += response.duplicate_count
        merged.failed_count += response.failed_count
    return merged


def record_change_request(change: m.Change) -> rr.RecordChangeRequest:
    request = rr.RecordChangeRequest(change=change)
    if not request.change.change_id:
        # The server upserts by change_id, so an id chosen here makes a retried record harmless.
        request.change.change_id = f"chg_{uuid.uuid4().hex}"
    return request


def statistics_request(
    *,
    start_time: datetime | None = None,
    end_time: datetime | None = None,
    bucket: timedelta | None = None,
    filter: m.ErrorFilter | None = None,
    top_groups_limit: int = 0,
    include_muted: bool = False,
) -> rr.GetStatisticsRequest:
    request = rr.GetStatisticsRequest(filter=filter, top_groups_limit=top_groups_limit, include_muted=include_muted)
    if start_time is not None:
        request.start_time.CopyFrom(timestamp(start_time))
    if end_time is not None:
        request.end_time.CopyFrom(timestamp(end_time))
    if bucket is not None:
        request.bucket.CopyFrom(duration(bucket))
    return request


def recent_request(
    page_size: int = 0, min_severity: m.Severity.ValueType = m.SEVERITY_UNSPECIFIED, window: timedelta | None = None
) -> rr.ListRecentErrorsRequest:
    request = rr.ListRecentErrorsRequest(page_size=page_size, min_severity=min_severity)
    if window is not None:
        request.window.CopyFrom(duration(window))
    return request


def list_changes_request(
    resource_ids: Sequence[str] = (),
    start_time: datetime | None = None,
    end_time: datetime | None = None,
    kinds: Sequence[m.ChangeKind.ValueType] = (),
    page_size: int = 0,
) -> rr.ListChangesRequest:
    request = rr.ListChangesRequest(resource_ids=resource_ids, kinds=kinds, page_size=page_size)
    if start_time is not None:
        request.start_time.CopyFrom(timestamp(start_time))
    if end_time is not None:
        request.end_time.CopyFrom(timestamp(end_time))
    return request


def subscribe_request(
    filter: m.ErrorFilter | None, include_correlated: bool, resume_after: str, heartbeat_interval: timedelta | None
) -> rr.SubscribeErrorsRequest:
    request = rr.SubscribeErrorsRequest(filter=filter, include_correlated=include_correlated, resume_after=resume_after)
    if heartbeat_interval is not None:
        request.heartbeat_interval.CopyFrom(duration(heartbeat_interval))
    return request


def auth_metadata(token: str | None) -> tuple[tuple[str, str], ...]:
    return (("authorization", f"Bearer {token}"),) if token else ()


def channel_credentials(
    tls: bool | grpc.ChannelCredentials, root_certificates: str | os.PathLike[str] | None
) -> grpc.ChannelCredentials | None:
    """None for a plaintext channel; a root certificate file implies TLS."""
    if not isinstance(tls, bool):
        return tls
    if not tls and root_certificates is None:
        return None
    roots = None
    if root_certificates is not None:
        with open(root_certificates, "rb") as f:
            roots = f.read()
    return grpc.ssl_channel_credentials(root_certificates=roots)


class ErrorReplayClient:
    """Async client for ErrorReplayService and TopologyService.

    Unary calls get `timeout` seconds per attempt (None: no deadline) and are retried on UNAVAILABLE
    as `retry` says. Failures raise the typed errors of `errorreplay.errors` (`InvalidArgumentError`
    with `.field_violations`, ...), which are `grpc.aio.AioRpcError`s: `.code()` and `.details()` say why.
    Single-object responses are unwrapped (`get` returns the ErrorSnapshot); list calls return the
    response message with its page token.
    """

    def __init__(
        self,
        target: str = "localhost:50051",
        *,
        tls: bool | grpc.ChannelCredentials = False,
        root_certificates: str | os.PathLike[str] | None = None,
        token: str | None = None,
        timeout: float | None = DEFAULT_TIMEOUT,
        retry: RetryPolicy | None = None,
        options: Sequence[tuple[str, Any]] = (),
    ) -> None:
        credentials = channel_credentials(tls, root_certificates)
        opts = channel_options(options)
        if credentials is None:
            self._channel = grpc.aio.insecure_channel(target, options=opts)
        else:
            self._channel = grpc.aio.secure_channel(target, credentials, options=opts)
        # Without grpc type stubs mypy cannot see that an aio channel selects the async stub overload.
        self._errors = cast("ErrorReplayServiceAsyncStub", service_pb2_grpc.ErrorReplayServiceStub(self._channel))
        self._topology = cast("TopologyServiceAsyncStub", service_pb2_grpc.TopologyServiceStub(self._channel))
        self._metadata = auth_metadata(token)
        self._timeout = timeout
        self._retry = retry or RetryPolicy()

    async def __aenter__(self) -> ErrorReplayClient:
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.close()

    async def close(self) -> None:
        await self._channel.close()

    async def _call(self, rpc: Any, request: Message, response_type: type[_R], timeout: float | None) -> _R:
        """`rpc(request)` with the deadline and token, retried as `retry_wait` says. Failures raise the
        typed errors of errorreplay.errors. `response_type` only tells the type checker what `rpc`
        returns: grpcio ships no type stubs."""
        attempt = 1
        while True:
            try:
                response = await rpc(
                    request, timeout=self._timeout if timeout is None else timeout, metadata=self._metadata
                )
                return cast(_R, response)
            except grpc.aio.AioRpcError as exc:
                error = from_rpc_error(exc)
                wait = retry_wait(error, attempt, self._retry)
                if wait is None:
                    raise error from None
            await asyncio.sleep(wait)
            attempt += 1

    # ErrorReplayService

    async def capture(
        self,
        report: m.ErrorReport,
        *,
        request_id: str | None = None,
        wait_for_context: bool = False,
        timeout: float | None = None,
    ) -> rr.CaptureErrorResponse:
        """Store one error. A uuid4 request_id is generated when none is given, so retries never duplicate."""
        request = capture_request(report, request_id, wait_for_context)
        return await self._call(self._errors.CaptureError, request, rr.CaptureErrorResponse, timeout)

    async def batch_capture(
        self,
        items: Iterable[m.ErrorReport | rr.CaptureErrorRequest],
        *,
        include_snapshots: bool = False,
        timeout: float | None = None,
    ) -> rr.BatchCaptureErrorsResponse:
        """Store errors in one call per 1,000 items (or 8 MiB); each result has error_id, group_id,
        duplicate and regression, and the stored snapshot only with `include_snapshots`.

        Every item without a request_id gets one derived from its content (see `batch_request`), so
        calling again with the same items after a failure stores nothing twice: the server answers
        `duplicate` for what the first call stored. `timeout` applies to each part."""
        parts = split_batch(batch_request(items, include_snapshots))
        responses = [
            await self._call(self._errors.BatchCaptureErrors, part, rr.BatchCaptureErrorsResponse, timeout)
            for part in parts
        ]
        return responses[0] if len(responses) == 1 else merge_batch_responses(responses)

    async def get(self, error_id: str, *, timeout: float | None = None) -> m.ErrorSnapshot:
        request = rr.GetErrorRequest(error_id=error_id)
        return (await self._call(self._errors.GetError, request, rr.GetErrorResponse, timeout)).error

    async def replay(
        self, error_id: str, *, refresh_context: bool = False, timeout: float | None = None
    ) -> rr.ReplayErrorResponse:
        request = rr.ReplayErrorRequest(error_id=error_id, refresh_context=refresh_context)
        return await self._call(self._errors.ReplayError, request, rr.ReplayErrorResponse, timeout)

    async def search(
        self,
        filter: m.ErrorFilter | None = None,
        *,
        page_size: int = 0,
        page_token: str = "",
        timeout: float | None = None,
    ) -> rr.SearchErrorsResponse:
        """One page, newest first."""
        request = rr.SearchErrorsRequest(filter=filter, page_size=page_size, page_token=page_token)
        return await self._call(self._errors.SearchErrors, request, rr.SearchErrorsResponse, timeout)

    async def search_all(
        self, filter: m.ErrorFilter | None = None, *, page_size: int = 0, timeout: float | None = None
    ) -> AsyncGenerator[m.ErrorSnapshot, None]:
        """Every matching error, newest first, fetching pages as the caller iterates."""
        token = ""
        while True:
            page = await self.search(filter, page_size=page_size, page_token=token, timeout=timeout)
            for snapshot in page.errors:
                yield snapshot
            token = page.next_page_token
            if not token:
                return

    async def statistics(
        self,
        *,
        start_time: datetime | None = None,
        end_time: datetime | None = None,
        bucket: timedelta | None = None,
        filter: m.ErrorFilter | None = None,
        top_groups_limit: int = 0,
        include_muted: bool = False,
        timeout: float | None = None,
    ) -> rr.GetStatisticsResponse:
        request = statistics_request(
            start_time=start_time,
            end_time=end_time,
            bucket=bucket,
            filter=filter,
            top_groups_limit=top_groups_limit,
            include_muted=include_muted,
        )
        return await self._call(self._errors.GetStatistics, request, rr.GetStatisticsResponse, timeout)

    async def recent(
        self,
        *,
        page_size: int = 0,
        min_severity: m.Severity.ValueType = m.SEVERITY_UNSPECIFIED,
        window: timedelta | None = None,
        timeout: float | None = None,
    ) -> rr.ListRecentErrorsResponse:
        request = recent_request(page_size, min_severity, window)
        return await self._call(self._errors.ListRecentErrors, request, rr.ListRecentErrorsResponse, timeout)

    async def by_resource(
        self, resource_id: str, *, page_size: int = 0, page_token: str = "", timeout: float | None = None
    ) -> rr.ListErrorsByResourceResponse:
        request = rr.ListErrorsByResourceRequest(resource_id=resource_id, page_size=page_size, page_token=page_token)
        return await self._call(self._errors.ListErrorsByResource, request, rr.ListErrorsByResourceResponse, timeout)

    async def by_correlation(
        self, correlation_id: str, *, page_size: int = 0, page_token: str = "", timeout: float | None = None
    ) -> rr.ListErrorsByCorrelationResponse:
        """Oldest first, with the cascade's origin_error_id and propagation."""
        request = rr.ListErrorsByCorrelationRequest(
            correlation_id=correlation_id, page_size=page_size, page_token=page_token
        )
        return await self._call(
            self._errors.ListErrorsByCorrelation, request, rr.ListErrorsByCorrelationResponse, timeout
        )

    async def subscribe(
        self,
        filter: m.ErrorFilter | None = None,
        *,
        include_correlated: bool = False,
        resume_after: str = "",
        heartbeat_interval: timedelta | None = None,
        reconnect: bool = False,
    ) -> AsyncGenerator[rr.SubscribeErrorsResponse, None]:
        """New matching errors as they arrive; heartbeats are consumed here, not yielded.

        With `reconnect`, a stream ended by UNAVAILABLE or RESOURCE_EXHAUSTED (a slow subscriber) is
        reopened with `resume_after` set to the last cursor, so nothing is lost; `retry.max_attempts`
        bounds the reconnects in a row that deliver nothing. The stream has no deadline; `aclose()` the
        generator (or leave `async for`) to cancel it.
        """
        cursor = resume_after
        failures = 0
        while True:
            call = self._errors.SubscribeErrors(
                subscribe_request(filter, include_correlated, cursor, heartbeat_interval), metadata=self._metadata
            )
            try:
                async for message in call:
                    failures = 0
                    cursor = message.cursor or cursor
                    if not message.heartbeat:
                        yield message
                return
            except grpc.aio.AioRpcError as exc:
                failures += 1
                if not reconnect or exc.code() not in RESUMABLE_CODES or failures >= self._retry.max_attempts:
                    raise
            finally:
                call.cancel()
            await asyncio.sleep(self._retry.backoff(failures))

    async def list_groups(
        self,
        *,
        statuses: Sequence[m.ErrorGroupStatus.ValueType] = (),
        order_by: rr.ErrorGroupOrder.ValueType = rr.ERROR_GROUP_ORDER_UNSPECIFIED,
        page_size: int = 0,
        page_token: str = "",
        timeout: float | None = None,
    ) -> rr.ListErrorGroupsResponse:
        request = rr.ListErrorGroupsRequest(
            statuses=statuses, order_by=order_by, page_size=page_size, page_token=page_token
        )
        return await self._call(self._errors.ListErrorGroups, request, rr.ListErrorGroupsResponse, timeout)

    async def update_group(
        self, group_id: str, status: m.ErrorGroupStatus.ValueType, *, timeout: float | None = None
    ) -> m.ErrorGroup:
        request = rr.UpdateErrorGroupRequest(group_id=group_id, status=status)
        return (await self._call(self._errors.UpdateErrorGroup, request, rr.UpdateErrorGroupResponse, timeout)).group

    # TopologyService

    async def upsert_resources(
        self,
        resources: Iterable[m.Resource],
        dependencies: Iterable[m.Dependency] = (),
        *,
        timeout: float | None = None,
    ) -> rr.UpsertResourcesResponse:
        """A dependency runs from the dependent to its dependency: api DEPENDS_ON db."""
        request = rr.UpsertResourcesRequest(resources=resources, dependencies=dependencies)
        return await self._call(self._topology.UpsertResources, request, rr.UpsertResourcesResponse, timeout)

    async def get_topology(self, resource_id: str, *, depth: int = 0, timeout: float | None = None) -> m.Topology:
        request = rr.GetTopologyRequest(resource_id=resource_id, depth=depth)
        return (await self._call(self._topology.GetTopology, request, rr.GetTopologyResponse, timeout)).topology

    async def record_change(self, change: m.Change, *, timeout: float | None = None) -> m.Change:
        """Record a deployment or config change; a change_id is assigned here when empty."""
        request = record_change_request(change)
        return (await self._call(self._topology.RecordChange, request, rr.RecordChangeResponse, timeout)).change

    async def list_changes(
        self,
        *,
        resource_ids: Sequence[str] = (),
        start_time: datetime | None = None,
        end_time: datetime | None = None,
        kinds: Sequence[m.ChangeKind.ValueType] = (),
        page_size: int = 0,
        timeout: float | None = None,
    ) -> rr.ListChangesResponse:
        request = list_changes_request(resource_ids, start_time, end_time, kinds, page_size)
        return await self._call(self._topology.ListChanges, request, rr.ListChangesResponse, timeout)
