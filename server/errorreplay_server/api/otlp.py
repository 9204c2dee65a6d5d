"""The OTLP/gRPC receiver: TraceService/Export and LogsService/Export on the errorreplay port.

Thin: the adapter (ingest/otlp.py) finds the errors in an export, the one capture path
(DataPlane.capture_batch) stores them, and this answers with OTLP's partial_success. Items that fail
validation are counted there, never as a failed export. A store that cannot be reached fails the
export with UNAVAILABLE (the ErrorMappingInterceptor's table): the exporter retries, and the stable
request ids make the retry store only what is missing.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence

import grpc
from opentelemetry.proto.collector.logs.v1 import logs_service_pb2, logs_service_pb2_grpc
from opentelemetry.proto.collector.trace.v1 import trace_service_pb2, trace_service_pb2_grpc

from errorreplay_server.api.auth import scoped_to_caller
from errorreplay_server.capture.service import CaptureRequest
from errorreplay_server.dataplane import DataPlane
from errorreplay_server.domain.errors import DomainError, FieldViolation, InvalidArgument
from errorreplay_server.ingest.otlp import OtlpAdapter, OtlpItem

log = logging.getLogger(__name__)

OTLP_SERVICE_NAMES = (
    trace_service_pb2.DESCRIPTOR.services_by_name["TraceService"].full_name,
    logs_service_pb2.DESCRIPTOR.services_by_name["LogsService"].full_name,
)

MAX_PROBLEMS_IN_MESSAGE = 3
"""partial_success.error_message names the first few problems; the count says how many there were."""


def _deadline(context: grpc.aio.ServicerContext) -> float | None:
    remaining = context.time_remaining()
    return remaining if remaining is not None and remaining < 1e9 else None


def _problems(item: OtlpItem, result: DomainError) -> list[str]:
    if isinstance(result, InvalidArgument):
        # capture_batch names fields as `requests[i].error.message`; name the OTLP item instead.
        return [f"{item.path}: {_field(v)}: {v.description}" for v in result.violations]
    return [f"{item.path}: {result}"]


def _field(violation: FieldViolation) -> str:
    prefix, dot, rest = violation.field.partition("].")
    return rest if dot and prefix.startswith("requests[") else violation.field


class OtlpCapture:
    """Runs the errors of one export through the capture path, in batches the path accepts."""

    def __init__(self, plane: DataPlane, adapter: OtlpAdapter, max_batch_size: int) -> None:
        self._plane = plane
        self.adapter = adapter
        self._max_batch_size = max_batch_size

    async def capture(self, items: Sequence[OtlpItem], timeout: float | None) -> tuple[int, str]:
        """Captures `items`; returns how many OTLP units (spans, log records) had a rejected error,
        and a message naming the first problems. StoreUnavailable propagates (UNAVAILABLE)."""
        rejected_units: set[int] = set()
        rejected = 0
        problems: list[str] = []
        for start in range(0, len(items), self._max_batch_size):
            chunk = items[start : start + self._max_batch_size]
            requests: list[CaptureRequest | InvalidArgument] = [scoped_to_caller(item.request) for item in chunk]
            results = await self._plane.capture_batch(requests, timeout)
            for item, result in zip(chunk, results, strict=True):
                if isinstance(result, DomainError):
                    rejected += 1
                    rejected_units.add(item.unit)
                    if len(problems) < MAX_PROBLEMS_IN_MESSAGE:
                        problems.extend(_problems(item, result))
        if not rejected_units:
            return 0, ""
        shown = "; ".join(problems[:MAX_PROBLEMS_IN_MESSAGE])
        log.info("OTLP export: %d of %d errors rejected: %s", rejected, len(items), shown)
        return len(rejected_units), f"{rejected} of {len(items)} errors rejected: {shown}"


class OtlpTraceServicer(trace_service_pb2_grpc.TraceServiceServicer):
    def __init__(self, capture: OtlpCapture) -> None:
        self._capture = capture

    async def Export(
        self, request: trace_service_pb2.ExportTraceServiceRequest, context: grpc.aio.ServicerContext
    ) -> trace_service_pb2.ExportTraceServiceResponse:
        items = self._capture.adapter.from_traces(request)
        rejected, message = await self._capture.capture(items, _deadline(context))
        response = trace_service_pb2.ExportTraceServiceResponse()
        if rejected:
            response.partial_success.rejected_spans = rejected
            response.partial_success.error_message = message
        return response


class OtlpLogsServicer(logs_service_pb2_grpc.LogsServiceServicer):
    def __init__(self, capture: OtlpCapture) -> None:
        self._capture = capture

    async def Export(
        self, request: logs_service_pb2.ExportLogsServiceRequest, context: grpc.aio.ServicerContext
    ) -> logs_service_pb2.ExportLogsServiceResponse:
        items = self._capture.adapter.from_logs(request)
        rejected, message = await self._capture.capture(items, _deadline(context))
        response = logs_service_pb2.ExportLogsServiceResponse()
        if rejected:
            response.partial_success.rejected_log_records = rejected
            response.partial_success.error_message = message
        return response


def add_otlp_servicers(server: grpc.aio.Server, capture: OtlpCapture) -> None:
    trace_service_pb2_grpc.add_TraceServiceServicer_to_server(OtlpTraceServicer(capture), server)
    logs_service_pb2_grpc.add_LogsServiceServicer_to_server(OtlpLogsServicer(capture), server)
