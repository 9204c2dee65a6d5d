"""Servicers: protobuf in, one DataPlane call, protobuf out. Errors are mapped by the interceptor, and
a batch's failed items through the same table (api/errors.py `status_for`)."""

from __future__ import annotations

import asyncio
import logging

import grpc

from errorreplay.v1 import request_response_pb2 as rr
from errorreplay.v1 import service_pb2_grpc
from errorreplay_server.api import convert
from errorreplay_server.api.auth import scoped_to_caller
from errorreplay_server.api.errors import fill_item_error
from errorreplay_server.capture.service import CaptureRequest
from errorreplay_server.dataplane import DataPlane
from errorreplay_server.domain.errors import InvalidArgument, ResourceExhausted
from errorreplay_server.domain.model import CaptureOutcome, ChangeKind, GroupOrder, GroupStatus, Severity
from errorreplay_server.streaming.hub import too_slow

log = logging.getLogger(__name__)


def _deadline(context: grpc.aio.ServicerContext) -> float | None:
    remaining = context.time_remaining()
    return remaining if remaining is not None and remaining < 1e9 else None


def _capture_request(msg: rr.CaptureErrorRequest, field: str) -> CaptureRequest:
    return scoped_to_caller(
        CaptureRequest(
            report=convert.report_from_pb(msg.error, f"{field}error"),
            request_id=msg.request_id,
            wait_for_context=msg.wait_for_context,
        )
    )


def _capture_response(outcome: CaptureOutcome, out: rr.CaptureErrorResponse, with_snapshot: bool = True) -> None:
    out.error_id = outcome.snapshot.error_id
    out.group_id = outcome.snapshot.group_id
    out.duplicate = outcome.duplicate
    out.regression = outcome.regression
    if with_snapshot and not outcome.snapshot_withheld:
        convert.snapshot_to_pb(outcome.snapshot, out.error)


class ErrorReplayServicer(service_pb2_grpc.ErrorReplayServiceServicer):
    def __init__(self, plane: DataPlane) -> None:
        self._plane = plane
        self._stream_encoder = convert.StreamEncoder()

    async def CaptureError(
        self, request: rr.CaptureErrorRequest, context: grpc.aio.ServicerContext
    ) -> rr.CaptureErrorResponse:
        outcome = await self._plane.capture(_capture_request(request, ""), _deadline(context))
        response = rr.CaptureErrorResponse()
        _capture_response(outcome, response)
        return response

    async def BatchCaptureErrors(
        self, request: rr.BatchCaptureErrorsRequest, context: grpc.aio.ServicerContext
    ) -> rr.BatchCaptureErrorsResponse:
        requests: list[CaptureRequest | InvalidArgument] = []
        for i, item in enumerate(request.requests):
            try:
                requests.append(_capture_request(item, f"requests[{i}]."))
            except InvalidArgument as exc:  # an unparseable timestamp sinks only its own item
                requests.append(exc)
        results = await self._plane.capture_batch(requests, _deadline(context))
        response = rr.BatchCaptureErrorsResponse()
        for index, result in enumerate(results):
            slot = response.results.add(index=index)
            if isinstance(result, CaptureOutcome):
                # Snapshots only on request: echoing 1,000 of them outgrew clients' receive limits.
                _capture_response(result, slot.response, request.include_snapshots)
                if result.duplicate:
                    response.duplicate_count += 1
                else:
                    response.stored_count += 1
            else:
                fill_item_error(result, slot.error)
                response.failed_count += 1
        return response

    async def GetError(self, request: rr.GetErrorRequest, context: grpc.aio.ServicerContext) -> rr.GetErrorResponse:
        snapshot = await self._plane.get_error(request.error_id)
        response = rr.GetErrorResponse()
        convert.snapshot_to_pb(snapshot, response.error)
        return response

    async def ReplayError(
        self, request: rr.ReplayErrorRequest, context: grpc.aio.ServicerContext
    ) -> rr.ReplayErrorResponse:
        snapshot, analysis = await self._plane.replay(request.error_id, request.refresh_context)
        response = rr.ReplayErrorResponse()
        convert.replay_to_pb(snapshot, analysis, response)
        return response

    async def SearchErrors(
        self, request: rr.SearchErrorsRequest, context: grpc.aio.ServicerContext
    ) -> rr.SearchErrorsResponse:
        page = await self._plane.search(convert.filter_from_pb(request.filter), request.page_size, request.page_token)
        response = rr.SearchErrorsResponse(
            next_page_token=page.next_page_token,
            total_size=max(page.total_size, 0),
            total_size_capped=page.total_capped,
        )
        convert.snapshots_to_pb(page.items, response.errors)
        return response

    async def GetStatistics(
        self, request: rr.GetStatisticsRequest, context: grpc.aio.ServicerContext
    ) -> rr.GetStatisticsResponse:
        stats = await self._plane.statistics(
            convert.optional_micros(request, "start_time", "start_time"),
            convert.optional_micros(request, "end_time", "end_time"),
            convert.bucket_micros(request.bucket, "bucket"),
            convert.filter_from_pb(request.filter),
            request.top_groups_limit,
            request.include_muted,
        )
        response = rr.GetStatisticsResponse()
        convert.statistics_to_pb(stats, response)
        return response

    async def ListRecentErrors(
        self, request: rr.ListRecentErrorsRequest, context: grpc.aio.ServicerContext
    ) -> rr.ListRecentErrorsResponse:
        errors = await self._plane.recent(
            request.page_size,
            convert.known_enum(Severity, request.min_severity, "min_severity"),
            convert.duration_micros(request.window, "window"),
        )
        response = rr.ListRecentErrorsResponse()
        convert.snapshots_to_pb(errors, response.errors)
        return response

    async def ListErrorsByResource(
        self, request: rr.ListErrorsByResourceRequest, context: grpc.aio.ServicerContext
    ) -> rr.ListErrorsByResourceResponse:
        page = await self._plane.by_resource(request.resource_id, request.page_size, request.page_token)
        response = rr.ListErrorsByResourceResponse(next_page_token=page.next_page_token)
        convert.snapshots_to_pb(page.items, response.errors)
        return response

    async def ListErrorsByCorrelation(
        self, request: rr.ListErrorsByCorrelationRequest, context: grpc.aio.ServicerContext
    ) -> rr.ListErrorsByCorrelationResponse:
        result = await self._plane.by_correlation(request.correlation_id, request.page_size, request.page_token)
        response = rr.ListErrorsByCorrelationResponse(
            next_page_token=result.page.next_page_token, origin_error_id=result.origin_error_id
        )
        convert.snapshots_to_pb(result.page.items, response.errors)
        if result.propagation is not None:
            convert.propagation_to_pb(result.propagation, response.propagation)
        return response

    # Writes with context.write() rather than yielding, so a blocked write can be abandoned on overflow.
    async def SubscribeErrors(  # type: ignore[override]
        self, request: rr.SubscribeErrorsRequest, context: grpc.aio.ServicerContext
    ) -> None:
        stream = await self._plane.subscribe(
            convert.filter_from_pb(request.filter),
            request.include_correlated,
            request.resume_after,
            convert.duration_micros(request.heartbeat_interval, "heartbeat_interval"),
        )
        # A client that stops reading blocks a write; its queue then overflows, and the stream must
        # end with RESOURCE_EXHAUSTED instead of hanging: a watcher cancels this task, which is
        # cheaper than racing every write against the overflow.
        handler = asyncio.current_task()
        assert handler is not None
        # Initial metadata goes out now, on its own. Otherwise the first write carries it, and if
        # that write is the one cancelled on overflow, grpc never learns it was sent: the status
        # would then send it a second time, which core refuses (GRPC_CALL_ERROR_TOO_MANY_OPERATIONS,
        # logged by grpc as an ERROR-level ExecuteBatchError), and the client would get no status.
        await context.send_initial_metadata(())
        watcher = asyncio.ensure_future(_cancel_on(stream.overflow_event, handler))
        cursor = stream.start_cursor
        delivered = 0
        try:
            async for item in stream.items:
                # Before the write: once write() is called the message is handed to the transport
                # and reaches the client ahead of the status, even if this task is then cancelled.
                cursor = item.cursor
                await context.write(self._stream_encoder.encode(item))
                delivered += 1
        except ResourceExhausted:  # the queue overflowed while the stream waited for items
            _log_overflow(delivered, cursor)
            raise too_slow(cursor) from None
        except asyncio.CancelledError:
            if not stream.overflow_event.is_set():
                raise
            handler.uncancel()
            _log_overflow(delivered, cursor)
            raise too_slow(cursor) from None
        finally:
            watcher.cancel()
            await stream.items.aclose()

    async def ListErrorGroups(
        self, request: rr.ListErrorGroupsRequest, context: grpc.aio.ServicerContext
    ) -> rr.ListErrorGroupsResponse:
        page = await self._plane.list_groups(
            [convert.enum_value(GroupStatus, s) for s in request.statuses],
            convert.known_enum(GroupOrder, request.order_by, "order_by"),
            request.page_size,
            request.page_token,
        )
        response = rr.ListErrorGroupsResponse(next_page_token=page.next_page_token)
        for group in page.items:
            convert.group_to_pb(group, response.groups.add())
        return response

    async def UpdateErrorGroup(
        self, request: rr.UpdateErrorGroupRequest, context: grpc.aio.ServicerContext
    ) -> rr.UpdateErrorGroupResponse:
        group = await self._plane.update_group(request.group_id, convert.enum_value(GroupStatus, request.status))
        response = rr.UpdateErrorGroupResponse()
        convert.group_to_pb(group, response.group)
        return response


def _log_overflow(delivered: int, cursor: str) -> None:
    # A subscriber that cannot keep up is expected under load, not a server error: one line, no traceback.
    log.info(
        "SubscribeErrors: subscriber too slow, its queue overflowed after %d messages; "
        "ended with RESOURCE_EXHAUSTED, resume cursor %s",
        delivered,
        cursor or "(none yet)",
    )


async def _cancel_on(event: asyncio.Event, task: asyncio.Task[object]) -> None:
    await event.wait()
    task.cancel()


class TopologyServicer(service_pb2_grpc.TopologyServiceServicer):
    def __init__(self, plane: DataPlane) -> None:
        self._plane = plane

    async def UpsertResources(
        self, request: rr.UpsertResourcesRequest, context: grpc.aio.ServicerContext
    ) -> rr.UpsertResourcesResponse:
        resources, dependencies = await self._plane.upsert_resources(
            [convert.resource_from_pb(r) for r in request.resources],
            [convert.dependency_from_pb(d) for d in request.dependencies],
        )
        return rr.UpsertResourcesResponse(resources_upserted=resources, dependencies_upserted=dependencies)

    async def GetTopology(
        self, request: rr.GetTopologyRequest, context: grpc.aio.ServicerContext
    ) -> rr.GetTopologyResponse:
        topology = await self._plane.get_topology(request.resource_id, request.depth)
        response = rr.GetTopologyResponse()
        convert.topology_to_pb(topology, response.topology)
        return response

    async def RecordChange(
        self, request: rr.RecordChangeRequest, context: grpc.aio.ServicerContext
    ) -> rr.RecordChangeResponse:
        change = await self._plane.record_change(convert.change_from_pb(request.change))
        response = rr.RecordChangeResponse()
        convert.change_to_pb(change, response.change)
        return response

    async def ListChanges(
        self, request: rr.ListChangesRequest, context: grpc.aio.ServicerContext
    ) -> rr.ListChangesResponse:
        changes = await self._plane.list_changes(
            list(request.resource_ids),
            convert.optional_micros(request, "start_time", "start_time"),
            convert.optional_micros(request, "end_time", "end_time"),
            [convert.enum_value(ChangeKind, k) for k in request.kinds],
            request.page_size,
        )
        response = rr.ListChangesResponse()
        for change in changes:
            convert.change_to_pb(change, response.changes.add())
        return response
