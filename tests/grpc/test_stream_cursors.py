"""Stream cursors: signed and checked, never from the future, the first heartbeat names the start,
and a slow subscriber's RESUME cursor resumes with no gap and no duplicate."""

from __future__ import annotations

import asyncio
import base64
import json
from pathlib import Path

import grpc
import pytest
from google.protobuf import duration_pb2
from google.rpc import error_details_pb2

from errorreplay.v1 import message_pb2 as m
from errorreplay.v1 import request_response_pb2 as rr
from errorreplay.v1 import service_pb2_grpc
from errorreplay_server.server import start_server
from errorreplay_server.store.pagination import StreamCursors
from errorreplay_server.streaming.hub import HubSettings
from tests.grpc.conftest import Api, field_violations, server_settings, status_of
from tests.grpc.helpers import capture, uid
from tests.grpc.test_subscribe import read_errors, subscribed

BEAT = duration_pb2.Duration(nanos=100_000_000)


async def _refused(api: Api, resume_after: str) -> grpc.aio.AioRpcError:
    call = api.errors.SubscribeErrors(rr.SubscribeErrorsRequest(resume_after=resume_after))
    with pytest.raises(grpc.aio.AioRpcError) as info:
        await asyncio.wait_for(call.read(), 10)
    return info.value


@pytest.mark.parametrize(
    "cursor", ["c99999999999999999999999", "c²", "c9223372036854775807", "c5", "c", "cAAAA", "err_unknown"]
)
async def test_malformed_or_unsigned_cursors_are_invalid_argument(api: Api, cursor: str) -> None:
    await capture(api)
    err = await _refused(api, cursor)
    assert err.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert field_violations(err) == ["resume_after"]


async def test_a_cursor_past_the_newest_error_is_out_of_range(api: Api) -> None:
    await capture(api)
    newest = await api.running.store.latest_received_at()
    future = StreamCursors(api.running.store.token_key()).encode(newest + 1)
    err = await _refused(api, future)
    assert err.code() == grpc.StatusCode.OUT_OF_RANGE
    assert field_violations(err) == ["resume_after"]


async def test_crafted_page_tokens_are_invalid_argument(api: Api) -> None:
    for key in ([9223372036854775808, 0], [0, "\ud800"]):
        token = base64.urlsafe_b64encode(json.dumps({"q": "0" * 12, "k": key}).encode()).decode()
        with pytest.raises(grpc.aio.AioRpcError) as info:
            await api.errors.SearchErrors(rr.SearchErrorsRequest(page_token=token))
        assert info.value.code() == grpc.StatusCode.INVALID_ARGUMENT
        assert field_violations(info.value) == ["page_token"]
        with pytest.raises(grpc.aio.AioRpcError) as info:
            await api.errors.ListErrorGroups(rr.ListErrorGroupsRequest(page_token=token))
        assert info.value.code() == grpc.StatusCode.INVALID_ARGUMENT


async def test_first_heartbeat_names_where_the_subscription_started(api: Api) -> None:
    run = uid()
    history = [(await capture(api, tags={"run": run})).error_id for _ in range(5)]
    call = api.errors.SubscribeErrors(
        rr.SubscribeErrorsRequest(filter=m.ErrorFilter(tags={"run": run}), heartbeat_interval=BEAT)
    )
    beat = await asyncio.wait_for(call.read(), 10)
    assert beat.heartbeat and beat.cursor
    call.cancel()
    # Resuming from it replays none of the history, only what came after.
    resumed = api.errors.SubscribeErrors(
        rr.SubscribeErrorsRequest(filter=m.ErrorFilter(tags={"run": run}), resume_after=beat.cursor)
    )
    later = (await capture(api, tags={"run": run})).error_id
    (first,) = await read_errors(resumed, 1)
    assert first.error.error_id == later and later not in history
    resumed.cancel()


async def test_slow_subscriber_resumes_from_its_overflow_cursor_without_gap_or_duplicate(tmp_path: Path) -> None:
    running = await start_server(server_settings(tmp_path, hub=HubSettings(queue_size=8)))
    try:
        async with (
            grpc.aio.insecure_channel(f"127.0.0.1:{running.port}") as slow_channel,
            grpc.aio.insecure_channel(f"127.0.0.1:{running.port}") as channel,
        ):
            api = Api(channel, service_pb2_grpc.ErrorReplayServiceStub(channel), None, running)  # type: ignore[arg-type]
            slow_api = Api(slow_channel, service_pb2_grpc.ErrorReplayServiceStub(slow_channel), None, running)  # type: ignore[arg-type]
            run = uid()
            flt = m.ErrorFilter(tags={"run": run})
            slow = await subscribed(slow_api, rr.SubscribeErrorsRequest(filter=flt))
            captured = [(await capture(api, tags={"run": run}, message=f"early {i}")).error_id for i in range(3)]
            received = [g.error.error_id for g in await read_errors(slow, 3)]
            # The subscriber stops reading while 400 large errors arrive: its queue overflows.
            big = "x" * 15_000
            for i in range(400):
                captured.append((await capture(api, tags={"run": run}, message=f"{big} {i}")).error_id)
            last_cursor = ""
            with pytest.raises(grpc.aio.AioRpcError) as info:
                while True:
                    msg = await asyncio.wait_for(slow.read(), 10)
                    assert msg is not grpc.aio.EOF
                    last_cursor = msg.cursor
                    if not msg.heartbeat:
                        received.append(msg.error.error_id)
            assert info.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
            details = [d for d in status_of(info.value).details if d.Is(error_details_pb2.ErrorInfo.DESCRIPTOR)]
            assert len(details) == 1
            error_info = error_details_pb2.ErrorInfo()
            details[0].Unpack(error_info)
            cursor = error_info.metadata["resume_after"]
            assert cursor and cursor == last_cursor
            assert f"resume_after={cursor}" in (info.value.details() or "")
            assert len(received) < len(captured)
            resumed = api.errors.SubscribeErrors(rr.SubscribeErrorsRequest(filter=flt, resume_after=cursor))
            rest = await read_errors(resumed, len(captured) - len(received), timeout=60)
            assert received + [g.error.error_id for g in rest] == captured
            resumed.cancel()
    finally:
        await running.stop(None)
