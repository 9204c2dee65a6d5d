"""The blocking twin of `errorreplay.client.ErrorReplayClient`: the same methods, on a grpc.Channel."""

from __future__ import annotations

import os
import time
from collections.abc import Generator, Iterable, Sequence
from datetime import datetime, timedelta
from types import TracebackType
from typing import Any, TypeVar, cast

import grpc
from google.protobuf.message import Message

from errorreplay.client import (
    DEFAULT_TIMEOUT,
    RESUMABLE_CODES,
    RetryPolicy,
    auth_metadata,
    batch_request,
    capture_request,
    channel_credentials,
    channel_options,
    list_changes_request,
    merge_batch_responses,
    recent_request,
    record_change_request,
    retry_wait,
    split_batch,
    statistics_request,
    subscribe_request,
)
from errorreplay.errors import from_rpc_error
from errorreplay.v1 import message_pb2 as m
from errorreplay.v1 import request_response_pb2 as rr
from errorreplay.v1 import service_pb2_grpc

__all__ = ["SyncErrorReplayClient"]

_R = TypeVar("_R", bound=Message)


class SyncErrorReplayClient:
    """Blocking client for ErrorReplayService and TopologyService; see ErrorReplayClient.

    Failures raise the typed errors of `errorreplay.errors` (`InvalidArgumentError` with
    `.field_violations`, ...); they are `grpc.RpcError`s whose `.code()` and `.details()` say why.
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
            self._channel = grpc.insecure_channel(target, options=opts)
        else:
            self._channel = grpc.secure_channel(target, credentials, options=opts)
        self._errors = service_pb2_grpc.ErrorReplayServiceStub(self._channel)
        self._topology = service_pb2_grpc.TopologyServiceStub(self._channel)
        self._metadata = auth_metadata(token)
        self._timeout = timeout
        self._retry = retry or RetryPolicy()

    def __enter__(self) -> SyncErrorReplayClient:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()

    def close(self) -> None:
        self._channel.close()

    def _call(self, rpc: Any, request: Message, response_type: type[_R], timeout: float | None) -> _R:
        attempt = 1
        while True:
            try:
                response = rpc(request, timeout=self._timeout if timeout is None else timeout, metadata=self._metadata)
                return cast(_R, response)
            except grpc.RpcError as exc:
                error = from_rpc_error(exc)
                wait = retry_wait(error, attempt, self._retry)
                if wait is None:
                    raise error from None
            time.sleep(wait)
            attempt += 1

    # ErrorReplayService

    def capture(
        self,
        report: m.ErrorReport,
        *,
        request_id: str | None = None,
        wait_for_context: bool = False,
        timeout: float | None = None,
    ) -> rr.CaptureErrorResponse:
        request = capture_request(report, request_id, wait_for_context)
        return self._call(self._errors.CaptureError, request, rr.CaptureErrorResponse, timeout)

    def batch_capture(
        self,
        items: Iterable[m.ErrorReport | rr.CaptureErrorRequest],
        *,
        include_snapshots: bool = False,
        timeout: float | None = None,
    ) -> rr.BatchCaptureErrorsResponse:
        parts = split_batch(batch_request(items, include_snapshots))
        responses = [
            self._call(self._errors.BatchCaptureErrors, part, rr.BatchCaptureErrorsResponse, timeout) for part in parts
        ]
        return responses[0] if len(responses) == 1 else merge_batch_responses(responses)

    def get(self, error_id: str, *, timeout: float | None = None) -> m.ErrorSnapshot:
        request = rr.GetErrorRequest(error_id=error_id)
        return self._call(self._errors.GetError, request, rr.GetErrorResponse, timeout).error

    def replay(
        self, error_id: str, *, refresh_context: bool = False, timeout: float | None = None
    ) -> rr.ReplayErrorResponse:
        request = rr.ReplayErrorRequest(error_id=error_id, refresh_context=refresh_context)
        return self._call(self._errors.ReplayError, request, rr.ReplayErrorResponse, timeout)

    def search(
        self,
        filter: m.ErrorFilter | None = None,
        *,
        page_size: int = 0,
        page_token: str = "",
        timeout: float | None = None,
    ) -> rr.SearchErrorsResponse:
        request = rr.SearchErrorsRequest(filter=filter, page_size=page_size, page_token=page_token)
        return self._call(self._errors.SearchErrors, request, rr.SearchErrorsResponse, timeout)

    def search_all(
        self, filter: m.ErrorFilter | None = None, *, page_size: int = 0, timeout: float | None = None
    ) -> Generator[m.ErrorSnapshot, None, None]:
        token = ""
        while True:
            page = self.search(filter, page_size=page_size, page_token=token, timeout=timeout)
            yield from page.errors
            token = page.next_page_token
            if not token:
                return

    def statistics(
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
        return self._call(self._errors.GetStatistics, request, rr.GetStatisticsResponse, timeout)

    def recent(
        self,
        *,
        page_size: int = 0,
        min_severity: m.Severity.ValueType = m.SEVERITY_UNSPECIFIED,
        window: timedelta | None = None,
        timeout: float | None = None,
    ) -> rr.ListRecentErrorsResponse:
        request = recent_request(page_size, min_severity, window)
        return self._call(self._errors.ListRecentErrors, request, rr.ListRecentErrorsResponse, timeout)

    def by_resource(
        self, resource_id: str, *, page_size: int = 0, page_token: str = "", timeout: float | None = None
    ) -> rr.ListErrorsByResourceResponse:
        request = rr.ListErrorsByResourceRequest(resource_id=resource_id, page_size=page_size, page_token=page_token)
        return self._call(self._errors.ListErrorsByResource, request, rr.ListErrorsByResourceResponse, timeout)

    def by_correlation(
        self, correlation_id: str, *, page_size: int = 0, page_token: str = "", timeout: float | None = None
    ) -> rr.ListErrorsByCorrelationResponse:
        request = rr.ListErrorsByCorrelationRequest(
            correlation_id=correlation_id, page_size=page_size, page_token=page_token
        )
        return self._call(self._errors.ListErrorsByCorrelation, request, rr.ListErrorsByCorrelationResponse, timeout)

    def subscribe(
        self,
        filter: m.ErrorFilter | None = None,
        *,
        include_correlated: bool = False,
        resume_after: str = "",
        heartbeat_interval: timedelta | None = None,
        reconnect: bool = False,
    ) -> Generator[rr.SubscribeErrorsResponse, None, None]:
        """New matching errors as they arrive; see ErrorReplayClient.subscribe."""
        cursor = resume_after
        failures = 0
        while True:
            call = self._errors.SubscribeErrors(
                subscribe_request(filter, include_correlated, cursor, heartbeat_interval), metadata=self._metadata
            )
            try:
                for message in call:
                    failures = 0
                    cursor = message.cursor or cursor
                    if not message.heartbeat:
                        yield message
                return
            except grpc.RpcError as exc:
                failures += 1
                if not reconnect or exc.code() not in RESUMABLE_CODES or failures >= self._retry.max_attempts:
                    raise
            finally:
                call.cancel()
            time.sleep(self._retry.backoff(failures))

    def list_groups(
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
        return self._call(self._errors.ListErrorGroups, request, rr.ListErrorGroupsResponse, timeout)

    def update_group(
        self, group_id: str, status: m.ErrorGroupStatus.ValueType, *, timeout: float | None = None
    ) -> m.ErrorGroup:
        request = rr.UpdateErrorGroupRequest(group_id=group_id, status=status)
        return self._call(self._errors.UpdateErrorGroup, request, rr.UpdateErrorGroupResponse, timeout).group

    # TopologyService

    def upsert_resources(
        self,
        resources: Iterable[m.Resource],
        dependencies: Iterable[m.Dependency] = (),
        *,
        timeout: float | None = None,
    ) -> rr.UpsertResourcesResponse:
        request = rr.UpsertResourcesRequest(resources=resources, dependencies=dependencies)
        return self._call(self._topology.UpsertResources, request, rr.UpsertResourcesResponse, timeout)

    def get_topology(self, resource_id: str, *, depth: int = 0, timeout: float | None = None) -> m.Topology:
        request = rr.GetTopologyRequest(resource_id=resource_id, depth=depth)
        return self._call(self._topology.GetTopology, request, rr.GetTopologyResponse, timeout).topology

    def record_change(self, change: m.Change, *, timeout: float | None = None) -> m.Change:
        request = record_change_request(change)
        return self._call(self._topology.RecordChange, request, rr.RecordChangeResponse, timeout).change

    def list_changes(
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
        return self._call(self._topology.ListChanges, request, rr.ListChangesResponse, timeout)
