"""Context enrichment through the API: statuses per source, wait_for_context and refresh_context."""

from __future__ import annotations

import asyncio

from errorreplay.v1 import message_pb2 as m
from errorreplay.v1 import request_response_pb2 as rr
from tests.grpc.conftest import Api
from tests.grpc.helpers import capture, uid


def states(snapshot: m.ErrorSnapshot) -> dict[str, int]:
    return {s.collector: s.state for s in snapshot.context.statuses}


async def test_wait_for_context_returns_every_source_status(api: Api) -> None:
    res = uid("res-")
    await api.topology.UpsertResources(
        rr.UpsertResourcesRequest(dependencies=[m.Dependency(dependent_id=res, dependency_id=f"{res}-db")])
    )
    reply = await capture(api, resource_id=res, wait_for_context=True)
    got = states(reply.error)
    # Backends without a URL are SKIPPED, never FAILED; the store-backed sources ran.
    for backend in ("prometheus", "loki", "tempo", "elasticsearch", "azure_log_analytics"):
        assert got[backend] == m.COLLECTION_STATE_SKIPPED, got
    assert got["topology"] == m.COLLECTION_STATE_OK
    assert {r.id for r in reply.error.context.topology.resources} == {res, f"{res}-db"}
    stored = await api.errors.GetError(rr.GetErrorRequest(error_id=reply.error_id))
    assert states(stored.error) == got


async def test_capture_without_waiting_shows_pending_then_the_outcome(api: Api) -> None:
    reply = await capture(api, resource_id=uid("res-"))
    pending = states(reply.error)
    assert pending and set(pending.values()) == {m.COLLECTION_STATE_PENDING}
    for _ in range(200):  # the background job finishes soon after: nothing waits on a backend here
        got = states((await api.errors.GetError(rr.GetErrorRequest(error_id=reply.error_id))).error)
        if m.COLLECTION_STATE_PENDING not in got.values():
            break
        await asyncio.sleep(0.02)
    assert set(got) == set(pending) and m.COLLECTION_STATE_PENDING not in got.values()
    assert got["prometheus"] == m.COLLECTION_STATE_SKIPPED


async def test_refresh_context_collects_again(api: Api) -> None:
    res = uid("res-")
    reply = await capture(api, resource_id=res, wait_for_context=True)
    first = {s.collector: s.collected_at.ToMicroseconds() for s in reply.error.context.statuses}
    await api.topology.RecordChange(
        rr.RecordChangeRequest(change=m.Change(kind=m.CHANGE_KIND_CONFIG, resource_id=res, version="cfg-7"))
    )
    replay = await api.errors.ReplayError(rr.ReplayErrorRequest(error_id=reply.error_id, refresh_context=True))
    again = {s.collector: s.collected_at.ToMicroseconds() for s in replay.error.context.statuses}
    assert again["changes"] > first["changes"]
    assert [c.version for c in replay.error.context.changes] == []  # the change came after the error
