"""BatchCaptureErrors over the wire: a failed item carries the status a single CaptureError would
have ended with (api/errors.py status_for), details included."""

from __future__ import annotations

from google.rpc import code_pb2, error_details_pb2

from errorreplay.v1 import request_response_pb2 as rr
from tests.grpc.conftest import Api
from tests.grpc.helpers import report, uid


async def test_a_bad_item_carries_the_single_call_status_and_its_details(api: Api) -> None:
    run = uid()
    items = [
        rr.CaptureErrorRequest(error=report(tags={"run": run}, message="fine")),
        rr.CaptureErrorRequest(error=report(tags={"run": run}, message="")),
    ]
    reply = await api.errors.BatchCaptureErrors(rr.BatchCaptureErrorsRequest(requests=items), timeout=10)
    assert (reply.stored_count, reply.failed_count) == (1, 1)
    error = reply.results[1].error
    assert error.code == code_pb2.INVALID_ARGUMENT
    assert error.message == "invalid argument: requests[1].error.message: is required"
    assert [(v.field, v.description) for v in error.field_violations] == [("requests[1].error.message", "is required")]
    (detail,) = error.details
    bad = error_details_pb2.BadRequest()
    assert detail.Unpack(bad)
    assert [(v.field, v.description) for v in bad.field_violations] == [("requests[1].error.message", "is required")]
    assert not reply.results[0].HasField("error")
