"""Builders shared by the gRPC tests."""

from __future__ import annotations

from google.protobuf import timestamp_pb2

from errorreplay.v1 import message_pb2 as m
from errorreplay.v1 import request_response_pb2 as rr
from tests.factories import uid
from tests.grpc.conftest import Api

__all__ = ["T0", "capture", "report", "ts", "uid"]

T0 = 1_760_000_000  # a fixed instant, in seconds


def ts(seconds: float) -> timestamp_pb2.Timestamp:
    t = timestamp_pb2.Timestamp()
    t.FromNanoseconds(int(seconds * 1e9))
    return t


def report(**fields: object) -> m.ErrorReport:
    """An ErrorReport with a message, HIGH and APPLICATION unless `fields` say otherwise."""
    values: dict[str, object] = {
        "message": "connection refused to db:5432",
        "severity": m.SEVERITY_HIGH,
        "source": m.SOURCE_APPLICATION,
    }
    values.update(fields)
    return m.ErrorReport(**values)  # type: ignore[arg-type]


async def capture(
    api: Api, *, request_id: str = "", wait_for_context: bool = False, **fields: object
) -> rr.CaptureErrorResponse:
    request = rr.CaptureErrorRequest(error=report(**fields), request_id=request_id, wait_for_context=wait_for_context)
    return await api.errors.CaptureError(request, timeout=10)
