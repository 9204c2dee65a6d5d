"""Topology input limits, and a hub with 20,000 dependents that must not starve other reads."""

from __future__ import annotations

import asyncio

import grpc
import pytest

from errorreplay.v1 import message_pb2 as m
from errorreplay.v1 import request_response_pb2 as rr
from errorreplay_server.settings import Limits
from tests.grpc.conftest import Api, field_violations
from tests.grpc.helpers import capture, uid

LIMITS = Limits()


async def _refused(call: object) -> grpc.aio.AioRpcError:
    with pytest.raises(grpc.aio.AioRpcError) as info:
        await call  # type: ignore[misc]
    assert info.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    return info.value


async def test_topology_input_over_the_limits_is_refused_naming_the_field(api: Api) -> None:
    p = uid("lim")
    upsert = api.topology.UpsertResources
    too_many_deps = [m.Dependency(dependent_id=f"{p}-{i}", dependency_id=p) for i in range(5001)]
    err = await _refused(upsert(rr.UpsertResourcesRequest(dependencies=too_many_deps), timeout=30))
    assert field_violations(err) == ["dependencies"]
    too_many_resources = [m.Resource(id=f"{p}-{i}") for i in range(LIMITS.max_resources_per_call + 1)]
    err = await _refused(upsert(rr.UpsertResourcesRequest(resources=too_many_resources), timeout=30))
    assert field_violations(err) == ["resources"]

    long_id = "x" * (LIMITS.max_id_chars + 1)
    err = await _refused(
        upsert(rr.UpsertResourcesRequest(dependencies=[m.Dependency(dependent_id=p, dependency_id=long_id)]))
    )
    assert field_violations(err) == ["dependencies[0].dependency_id"]
    err = await _refused(
        upsert(
            rr.UpsertResourcesRequest(
                resources=[
                    m.Resource(
                        id=p,
                        name="n" * (LIMITS.max_resource_name_chars + 1),
                        type="t" * (LIMITS.max_resource_name_chars + 1),
                        labels={"big": "v" * (LIMITS.max_tag_value_chars + 1)},
                    ),
                    m.Resource(id=f"{p}-2", labels={f"k{i}": "v" for i in range(LIMITS.max_labels + 1)}),
                ]
            )
        )
    )
    assert field_violations(err) == [
        "resources[0].type",
        "resources[0].name",
        "resources[0].labels['big']",
        "resources[1].labels",
    ]
    change = m.Change(
        kind=m.CHANGE_KIND_DEPLOYMENT,
        resource_id=p,
        metadata={f"k{i}": "v" for i in range(LIMITS.max_change_metadata + 1)},
    )
    err = await _refused(api.topology.RecordChange(rr.RecordChangeRequest(change=change)))
    assert field_violations(err) == ["change.metadata"]
    # Nothing of the refused calls was stored.
    with pytest.raises(grpc.aio.AioRpcError) as info:
        await api.topology.GetTopology(rr.GetTopologyRequest(resource_id=p))
    assert info.value.code() == grpc.StatusCode.NOT_FOUND


async def test_many_violations_are_listed_up_to_a_bound(api: Api) -> None:
    deps = [m.Dependency(dependent_id=f"d{i}", dependency_id="x" * (LIMITS.max_id_chars + 1)) for i in range(500)]
    err = await _refused(api.topology.UpsertResources(rr.UpsertResourcesRequest(dependencies=deps)))
    fields = field_violations(err)
    assert len(fields) == 21 and fields[-1] == "request"


async def test_hub_with_20000_dependents_keeps_reads_and_captures_going(api: Api) -> None:
    hub = uid("db-main-")
    p = uid("svc")
    batch = LIMITS.max_dependencies_per_call
    for start in range(0, 20_000, batch):
        deps = [m.Dependency(dependent_id=f"{p}-{i}", dependency_id=hub) for i in range(start, start + batch)]
        reply = await api.topology.UpsertResources(rr.UpsertResourcesRequest(dependencies=deps), timeout=60)
        assert reply.dependencies_upserted == batch

    async def reads() -> int:
        # Each read must finish within its normal deadline while the captures below run.
        done = 0
        for _ in range(20):
            await api.errors.ListRecentErrors(rr.ListRecentErrorsRequest(page_size=20), timeout=5)
            done += 1
        return done

    async def captures() -> list[str]:
        ids = []
        for i in range(8):
            ids.append((await capture(api, message=f"db-main down {i}", resource_id=hub)).error_id)
        return ids

    done, ids = await asyncio.gather(reads(), captures())
    assert done == 20 and len(ids) == 8
    # Reads that walk the hub's neighbourhood answer too, bounded and marked truncated.
    got = await api.errors.GetError(rr.GetErrorRequest(error_id=ids[-1]), timeout=5)
    assert set(ids[:-1]) <= set(got.error.related_error_ids)
    await api.errors.ReplayError(rr.ReplayErrorRequest(error_id=ids[-1]), timeout=5)
    topology = (await api.topology.GetTopology(rr.GetTopologyRequest(resource_id=hub), timeout=5)).topology
    assert topology.truncated
    assert len(topology.resources) == 1 + LIMITS.max_neighbours_per_hop
    assert len(topology.dependencies) == LIMITS.max_neighbours_per_hop
    one = (await api.topology.GetTopology(rr.GetTopologyRequest(resource_id=f"{p}-5"), timeout=5)).topology
    assert not one.truncated and {r.id for r in one.resources} == {f"{p}-5", hub}
