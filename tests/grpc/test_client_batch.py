"""The client's own batch (issue 19, item 6): lean batch answers, limits that match the server's, and
retries that reuse their request ids. Real server on port 0, the real Python client."""

from __future__ import annotations

import asyncio

import pytest

from errorreplay import ErrorReplayClient, SyncErrorReplayClient
from errorreplay.client import MAX_SEND_MESSAGE_BYTES, batch_request, split_batch
from errorreplay.v1 import message_pb2 as m
from errorreplay.v1 import request_response_pb2 as rr
from tests.grpc.conftest import Api
from tests.grpc.helpers import report, uid


def address(api: Api) -> str:
    return f"127.0.0.1:{api.running.port}"


async def count_tagged(api: Api, run: str) -> int:
    """Exact, however many: statistics count every match (SearchErrors stops at 1,000)."""
    stats = await api.errors.GetStatistics(rr.GetStatisticsRequest(filter=m.ErrorFilter(tags={"run": run})))
    return stats.total_count


async def test_batch_answer_carries_ids_only_unless_snapshots_are_asked_for(api: Api) -> None:
    run = uid()
    items = [rr.CaptureErrorRequest(error=report(tags={"run": run}, message=f"e {i}")) for i in range(3)]
    lean = await api.errors.BatchCaptureErrors(rr.BatchCaptureErrorsRequest(requests=items))
    assert lean.stored_count == 3
    for result in lean.results:
        assert result.response.error_id and result.response.group_id
        assert not result.response.HasField("error")
    full = await api.errors.BatchCaptureErrors(
        rr.BatchCaptureErrorsRequest(
            requests=[rr.CaptureErrorRequest(error=report(tags={"run": run}, message="with"))], include_snapshots=True
        )
    )
    assert full.results[0].response.error.report.message == "with"
    assert full.results[0].response.error.error_id == full.results[0].response.error_id


async def test_a_thousand_large_errors_fit_the_client(api: Api) -> None:
    # The red team's batch: 1,000 items, 4.5 MB, whose echoed snapshots passed grpc's 4 MiB default.
    run = uid()
    reports = [report(tags={"run": run}, message=f"e {i}", stack_trace="x" * 4500) for i in range(1000)]
    async with ErrorReplayClient(address(api)) as client:
        reply = await client.batch_capture(reports, timeout=60)
    assert reply.stored_count == 1000
    assert reply.ByteSize() < 200_000
    assert await count_tagged(api, run) == 1000


async def test_batches_larger_than_the_server_takes_are_sent_in_parts(api: Api) -> None:
    run = uid()
    reports = [report(tags={"run": run}, message=f"e {i}") for i in range(2300)]
    async with ErrorReplayClient(address(api)) as client:
        reply = await client.batch_capture(reports, timeout=60)
    assert (reply.stored_count, reply.failed_count) == (2300, 0)
    assert [r.index for r in reply.results] == list(range(2300))
    assert await count_tagged(api, run) == 2300


def test_parts_stay_under_the_servers_receive_limit() -> None:
    big = [report(message=f"e {i}", stack_trace="y" * 60_000) for i in range(300)]  # about 18 MB
    parts = split_batch(batch_request(big))
    assert len(parts) >= 3
    assert all(part.ByteSize() <= MAX_SEND_MESSAGE_BYTES for part in parts)
    assert sum(len(p.requests) for p in parts) == 300
    assert all(len(p.requests) <= 1000 for p in split_batch(batch_request([report()] * 2500)))


async def test_calling_again_with_the_same_items_stores_nothing_twice(api: Api) -> None:
    run = uid()
    reports = [report(tags={"run": run}, message=f"e {i}") for i in range(5)]
    reports.append(report(tags={"run": run}, message="twice in one batch"))
    reports.append(report(tags={"run": run}, message="twice in one batch"))
    async with ErrorReplayClient(address(api)) as client:
        first = await client.batch_capture(reports)
        again = await client.batch_capture(reports)  # the caller's retry, e.g. after a lost answer
        later = await client.batch_capture([report(tags={"run": run}, message="e 0")])  # a new occurrence
    assert first.stored_count == 7
    assert (again.stored_count, again.duplicate_count) == (0, 7)
    assert [r.response.error_id for r in again.results] == [r.response.error_id for r in first.results]
    assert later.stored_count == 1
    assert await count_tagged(api, run) == 8


async def test_sync_client_reuses_request_ids_and_splits(api: Api) -> None:
    run = uid()
    reports = [report(tags={"run": run}, message=f"e {i}") for i in range(1200)]

    def twice() -> tuple[rr.BatchCaptureErrorsResponse, rr.BatchCaptureErrorsResponse]:
        with SyncErrorReplayClient(address(api)) as client:
            return client.batch_capture(reports, timeout=60), client.batch_capture(reports, timeout=60)

    first, again = await asyncio.to_thread(twice)
    assert first.stored_count == 1200
    assert again.duplicate_count == 1200
    assert await count_tagged(api, run) == 1200


@pytest.mark.parametrize("size", [5 * 1024 * 1024])
async def test_large_responses_are_received(api: Api, size: int) -> None:
    # Responses bounded by page sizes may pass grpc's 4 MiB default; the client must take them.
    run = uid()
    items = [rr.CaptureErrorRequest(error=report(tags={"run": run}, stack_trace="z" * 60_000)) for _ in range(90)]
    await api.errors.BatchCaptureErrors(rr.BatchCaptureErrorsRequest(requests=items))
    async with ErrorReplayClient(address(api)) as client:
        page = await client.search(m.ErrorFilter(tags={"run": run}), page_size=100)
    assert len(page.errors) == 90
    assert page.ByteSize() > size
