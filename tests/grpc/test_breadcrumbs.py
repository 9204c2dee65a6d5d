"""ErrorReport.breadcrumbs: stored, scrubbed, as the error's first context logs (collector "client"),
kept by enrichment and by refresh_context, and bounded like every other input."""

from __future__ import annotations

import time

import grpc
import pytest
from google.protobuf import timestamp_pb2

from errorreplay.v1 import message_pb2 as m
from errorreplay.v1 import request_response_pb2 as rr
from tests.grpc.conftest import Api, field_violations
from tests.grpc.helpers import capture, uid


def line(message: str, seconds: int, **labels: str) -> m.LogLine:
    return m.LogLine(time=timestamp_pb2.Timestamp(seconds=seconds), level="INFO", message=message, labels=labels)


def client_lines(snapshot: m.ErrorSnapshot) -> list[tuple[str, str]]:
    return [(x.message, x.collector) for x in snapshot.context.logs if x.collector == "client"]


async def test_breadcrumbs_become_scrubbed_context_logs_that_enrichment_keeps(api: Api) -> None:
    now = int(time.time())
    crumbs = [
        line("opened cart", now - 3),
        line("auth with api_key=sk_live_abcdefghijklmnop0123456789", now - 2, url="postgres://app:pw123@db/shop"),
        line("charging", now - 1),
    ]
    reply = await capture(api, resource_id=uid("res-"), breadcrumbs=crumbs, wait_for_context=True)
    stored = (await api.errors.GetError(rr.GetErrorRequest(error_id=reply.error_id))).error
    got = client_lines(stored)
    assert len(got) == 3 and got[0] == ("opened cart", "client") and got[2] == ("charging", "client")
    assert "[REDACTED:" in got[1][0]
    assert "sk_live_abcdefghijklmnop0123456789" not in str(stored) and "pw123" not in str(stored)
    assert len(stored.report.breadcrumbs) == 0  # stored once, as context logs
    replay = await api.errors.ReplayError(rr.ReplayErrorRequest(error_id=reply.error_id, refresh_context=True))
    assert client_lines(replay.error) == got


async def test_undated_breadcrumbs_take_the_error_time(api: Api) -> None:
    when = timestamp_pb2.Timestamp(seconds=int(time.time()) - 60)
    reply = await capture(api, breadcrumbs=[m.LogLine(level="INFO", message="undated")], occurred_at=when)
    (log_line,) = [x for x in reply.error.context.logs if x.collector == "client"]
    assert log_line.time == when


async def test_too_many_breadcrumbs_is_invalid_argument(api: Api) -> None:
    crumbs = [line(f"l{i}", 0) for i in range(101)]
    with pytest.raises(grpc.aio.AioRpcError) as raised:
        await capture(api, breadcrumbs=crumbs)
    assert raised.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert field_violations(raised.value) == ["error.breadcrumbs"]


async def test_an_oversized_breadcrumb_names_its_index(api: Api) -> None:
    crumbs = [line("fine", 0), line("x" * 5000, 0)]
    with pytest.raises(grpc.aio.AioRpcError) as raised:
        await capture(api, breadcrumbs=crumbs)
    assert field_violations(raised.value) == ["error.breadcrumbs[1]"]
