"""request_id is scoped to the caller: a second token reusing it stores its own error and never
sees the first caller's; a duplicate's snapshot goes back only to a caller that may read it."""

from __future__ import annotations

from pathlib import Path

from errorreplay.v1 import message_pb2 as m
from errorreplay.v1 import request_response_pb2 as rr
from errorreplay_server.grants import Role, TokenGrant
from errorreplay_server.security_settings import SecuritySettings
from tests.grpc.helpers import uid
from tests.grpc.test_auth import bearer, new_token, secured_server


def _request(request_id: str, message: str) -> rr.CaptureErrorRequest:
    report = m.ErrorReport(
        message=message, severity=m.SEVERITY_HIGH, source=m.SOURCE_APPLICATION, resource_id="payments-api"
    )
    return rr.CaptureErrorRequest(error=report, request_id=request_id)


async def test_two_writer_tokens_reusing_a_request_id_never_see_each_others_error(tmp_path: Path) -> None:
    writer_a, writer_b, read_write, reader = new_token(), new_token(), new_token(), new_token()
    security = SecuritySettings(
        tokens=(
            TokenGrant(Role.WRITER, writer_a),
            TokenGrant(Role.WRITER, writer_b),
            TokenGrant(Role.WRITER, read_write),
            TokenGrant(Role.READER, read_write),
            TokenGrant(Role.READER, reader),
        )
    )
    rid = uid("payments-req-")
    async with secured_server(tmp_path, security) as server:
        errors = server.errors
        secret = "card declined for jane.customer@example.com"
        first = await errors.CaptureError(_request(rid, secret), metadata=bearer(writer_a))
        assert not first.duplicate and first.error.report.message

        # Writer B sends the same request_id: its own error is stored, nothing of A's comes back.
        other = await errors.CaptureError(_request(rid, "B's own failure"), metadata=bearer(writer_b))
        assert not other.duplicate
        assert other.error_id != first.error_id
        assert "jane" not in str(other)

        # A's retry is still idempotent, but a writer-only caller gets the ids, not the snapshot.
        retry = await errors.CaptureError(_request(rid, "retried body"), metadata=bearer(writer_a))
        assert retry.duplicate and retry.error_id == first.error_id and retry.group_id == first.group_id
        assert not retry.HasField("error")

        # A caller that may also read gets the full snapshot of its own duplicate.
        own = await errors.CaptureError(_request(rid, "rw first"), metadata=bearer(read_write))
        own_retry = await errors.CaptureError(_request(rid, "rw retry"), metadata=bearer(read_write))
        assert own_retry.duplicate and own_retry.error_id == own.error_id
        assert own_retry.error.report.message == "rw first"

        # Batches are scoped the same way.
        batch = await errors.BatchCaptureErrors(
            rr.BatchCaptureErrorsRequest(requests=[_request(rid, "batch b")]), metadata=bearer(writer_b)
        )
        (result,) = batch.results
        assert result.response.duplicate and result.response.error_id == other.error_id
        assert not result.response.HasField("error")

        # Three distinct errors were stored, each readable with its plain request_id.
        for error_id in (first.error_id, other.error_id, own.error_id):
            got = await errors.GetError(rr.GetErrorRequest(error_id=error_id), metadata=bearer(reader))
            assert got.error.request_id == rid
        assert len({first.error_id, other.error_id, own.error_id}) == 3


async def test_without_auth_a_retry_returns_the_first_snapshot(tmp_path: Path) -> None:
    rid = uid("open-")
    async with secured_server(tmp_path, SecuritySettings()) as server:
        first = await server.errors.CaptureError(_request(rid, "first body"))
        retry = await server.errors.CaptureError(_request(rid, "second body"))
        assert retry.duplicate and retry.error_id == first.error_id
        assert retry.error.report.message == "first body" and retry.error.request_id == rid


async def test_a_request_id_with_control_characters_is_refused(tmp_path: Path) -> None:
    import grpc
    import pytest

    from tests.grpc.conftest import field_violations

    async with secured_server(tmp_path, SecuritySettings()) as server:
        with pytest.raises(grpc.aio.AioRpcError) as info:
            await server.errors.CaptureError(_request("token:x\x1fpayments-req-7781", "m"))
        assert info.value.code() == grpc.StatusCode.INVALID_ARGUMENT
        assert field_violations(info.value) == ["request_id"]
