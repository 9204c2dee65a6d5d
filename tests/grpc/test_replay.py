"""ReplayError scenarios over the API (issue 5): cascade, change, saturation, nothing known, grouping."""

from __future__ import annotations

import grpc
import pytest

from errorreplay.v1 import message_pb2 as m
from errorreplay.v1 import request_response_pb2 as rr
from errorreplay_server.domain.model import (
    MICROS_PER_MINUTE,
    CollectionState,
    CollectorStatus,
    ErrorContext,
    MetricAnomaly,
    MetricPoint,
    MetricSeries,
)
from tests.grpc.conftest import Api
from tests.grpc.helpers import T0, ts, uid
from tests.grpc.helpers import capture as capture_error


@pytest.fixture
def api(api_on_each_store: Api) -> Api:
    """The scenarios run on both stores."""
    return api_on_each_store


async def capture(api: Api, **kw: object) -> rr.CaptureErrorResponse:
    """Captures and waits for enrichment, so later context edits are not overwritten by it."""
    return await capture_error(api, wait_for_context=True, **kw)


async def replay(api: Api, error_id: str) -> rr.ReplayErrorResponse:
    return await api.errors.ReplayError(rr.ReplayErrorRequest(error_id=error_id))


async def cascade(api: Api) -> dict[str, str]:
    p = uid("p")
    ids = {name: f"{p}-{name}" for name in ("lb", "web", "api", "db")}
    await api.topology.UpsertResources(
        rr.UpsertResourcesRequest(
            dependencies=[
                m.Dependency(dependent_id=ids["web"], dependency_id=ids["api"]),
                m.Dependency(dependent_id=ids["api"], dependency_id=ids["db"]),
                m.Dependency(dependent_id=ids["lb"], dependency_id=ids["web"]),
            ]
        )
    )
    corr = uid("corr-")
    for offset, name, message in (
        (0, "db", "connection pool exhausted"),
        (60, "api", "upstream 503"),
        (120, "web", "gateway timeout"),
    ):
        reply = await capture(
            api,
            resource_id=ids[name],
            correlation_id=corr,
            occurred_at=ts(T0 + offset),
            message=message,
            error_type=f"{name}Error",
        )
        ids[f"{name}_error"] = reply.error_id
    ids["corr"] = corr
    return ids


async def test_cascade_names_db_as_origin(api: Api) -> None:
    ids = await cascade(api)
    out = await replay(api, ids["web_error"])
    assert out.propagation.origin_error_id == ids["db_error"]
    assert out.propagation.origin_resource_id == ids["db"]
    assert [s.resource_id for s in out.propagation.path] == [ids["db"], ids["api"], ids["web"]]
    assert out.root_cause.category == m.ROOT_CAUSE_CATEGORY_DEPENDENCY_FAILURE
    assert 0 < out.root_cause.confidence <= 1
    assert any(ids["db"] in (r.target + r.title) for r in out.recommendations)
    assert all(r.rationale for r in out.recommendations)
    kinds = [e.kind for e in out.timeline]
    assert kinds.count(m.TIMELINE_EVENT_KIND_ERROR) == 1 and kinds.count(m.TIMELINE_EVENT_KIND_RELATED_ERROR) == 2
    times = [e.time.ToMicroseconds() for e in out.timeline]
    assert times == sorted(times)
    for ev in out.root_cause.evidence:
        assert out.timeline[ev.timeline_index].reference_id == ev.reference_id
    db = await api.errors.GetError(rr.GetErrorRequest(error_id=ids["db_error"]))
    assert list(db.error.affected_resource_ids) == [ids["api"], ids["web"]]  # lb is 3 hops away
    by_corr = await api.errors.ListErrorsByCorrelation(rr.ListErrorsByCorrelationRequest(correlation_id=ids["corr"]))
    assert by_corr.origin_error_id == ids["db_error"]


async def service_chain(
    api: Api, n: int, gap_seconds: int, correlation_id: str = "", silent: tuple[int, ...] = ()
) -> dict[str, str]:
    """Services s1 <- s2 <- ... <- sn (each depends on the one before; s1 is the database),
    declared first; then one error per service that is not silent, s1 first, each
    `gap_seconds` after its dependency's."""
    p = uid("p")
    ids = {f"s{i}": f"{p}-s{i}" for i in range(1, n + 1)}
    await api.topology.UpsertResources(
        rr.UpsertResourcesRequest(
            dependencies=[m.Dependency(dependent_id=ids[f"s{i + 1}"], dependency_id=ids[f"s{i}"]) for i in range(1, n)]
        )
    )
    for i in range(1, n + 1):
        if i in silent:
            continue
        reply = await capture(
            api,
            resource_id=ids[f"s{i}"],
            correlation_id=correlation_id,
            occurred_at=ts(T0 + (i - 1) * gap_seconds),
            message=f"s{i} failed",
            error_type=f"S{i}Error",
        )
        ids[f"e{i}"] = reply.error_id
    return ids


@pytest.mark.parametrize(
    ("n", "gap", "with_correlation"),
    [(5, 30, False), (5, 30, True), (6, 60, False), (6, 60, True), (8, 120, False), (8, 120, True)],
)
async def test_chain_cascade_names_the_deepest_service_as_origin(
    api: Api, n: int, gap: int, with_correlation: bool
) -> None:
    # Issue 20: the walk stopped after related_hops and named a service in the middle. The
    # 8-service chain spans 14 min, beyond the 10 min related window.
    ids = await service_chain(api, n, gap, uid("corr-") if with_correlation else "")
    out = await replay(api, ids[f"e{n}"])
    assert out.propagation.origin_resource_id == ids["s1"]
    assert out.propagation.origin_error_id == ids["e1"]
    assert [s.resource_id for s in out.propagation.path] == [ids[f"s{i}"] for i in range(1, n + 1)]
    assert out.root_cause.category == m.ROOT_CAUSE_CATEGORY_DEPENDENCY_FAILURE
    assert out.root_cause.primary_cause.resource_id == ids["s1"]
    assert {e.error_id for e in out.related_errors} == {ids[f"e{i}"] for i in range(1, n)}
    origin_first = [r for r in out.recommendations if r.kind == m.RECOMMENDATION_KIND_INVESTIGATE_ORIGIN]
    assert [r.target for r in origin_first] == [ids["s1"]]
    # The origin's own error links back to the whole chain (links are symmetric).
    got = await api.errors.GetError(rr.GetErrorRequest(error_id=ids["e1"]))
    assert set(got.error.related_error_ids) == {ids[f"e{i}"] for i in range(2, n + 1)}


async def test_get_error_relates_the_same_errors_as_the_replay_across_a_deep_cascade(api: Api) -> None:
    # GetError walks the cascade on link rows (ids and link fields, no documents); the replay on
    # full snapshots. Both must relate the same errors, in the same order, from every error.
    ids = await service_chain(api, 8, 120, "")
    for i in range(1, 9):
        got = await api.errors.GetError(rr.GetErrorRequest(error_id=ids[f"e{i}"]))
        out = await replay(api, ids[f"e{i}"])
        assert list(got.error.related_error_ids) == [e.error_id for e in out.related_errors]
        assert set(got.error.related_error_ids) == {ids[f"e{j}"] for j in range(1, 9) if j != i}


async def test_chain_cascade_crosses_one_silent_service(api: Api) -> None:
    ids = await service_chain(api, 6, 60, silent=(3,))
    out = await replay(api, ids["e6"])
    assert out.propagation.origin_resource_id == ids["s1"]
    assert [s.resource_id for s in out.propagation.path] == [ids[f"s{i}"] for i in (1, 2, 4, 5, 6)]
    assert f"{ids['s3']} (no error reported)" in out.propagation.explanation


async def test_chain_cascade_stops_at_more_silent_services_than_the_hop_limit(api: Api) -> None:
    ids = await service_chain(api, 6, 60, silent=(3, 4))
    out = await replay(api, ids["e6"])
    assert out.propagation.origin_resource_id == ids["s5"]
    assert {e.error_id for e in out.related_errors} == {ids["e5"]}


async def test_recent_change_is_primary_and_later_change_is_not(api: Api) -> None:
    res = uid("api-")
    recent = await api.topology.RecordChange(
        rr.RecordChangeRequest(
            change=m.Change(kind=m.CHANGE_KIND_DEPLOYMENT, resource_id=res, version="v2.1.0", occurred_at=ts(T0 - 1800))
        )
    )
    await api.topology.RecordChange(
        rr.RecordChangeRequest(
            change=m.Change(
                kind=m.CHANGE_KIND_DEPLOYMENT, resource_id=res, version="v2.0.0", occurred_at=ts(T0 - 30 * 3600)
            )
        )
    )
    err = await capture(
        api, resource_id=res, severity=m.SEVERITY_CRITICAL, occurred_at=ts(T0), error_type="NullPointer"
    )
    out = await replay(api, err.error_id)
    assert out.root_cause.category == m.ROOT_CAUSE_CATEGORY_RECENT_CHANGE
    assert "v2.1.0" in out.root_cause.primary_cause.summary
    assert [c.version for c in out.related_changes] == ["v2.1.0"]
    kinds = {r.kind: r for r in out.recommendations}
    assert (
        "v2.1.0"
        in kinds[m.RECOMMENDATION_KIND_ROLLBACK_CHANGE].title + kinds[m.RECOMMENDATION_KIND_ROLLBACK_CHANGE].target
    )
    assert m.RECOMMENDATION_KIND_ESCALATE in kinds
    # The same deployment recorded after the error is no cause.
    await api.topology.RecordChange(
        rr.RecordChangeRequest(
            change=m.Change(
                change_id=recent.change.change_id,
                kind=m.CHANGE_KIND_DEPLOYMENT,
                resource_id=res,
                version="v2.1.0",
                occurred_at=ts(T0 + 600),
            )
        )
    )
    later = await replay(api, err.error_id)
    assert later.root_cause.category != m.ROOT_CAUSE_CATEGORY_RECENT_CHANGE
    assert list(later.related_changes) == []


async def test_saturation_names_the_metric(api: Api) -> None:
    res = uid("db-")
    err = await capture(api, resource_id=res, occurred_at=ts(T0), error_type="QueryTimeout")
    t0 = T0 * 1_000_000
    cpu = MetricSeries(
        name="cpu",
        points=[MetricPoint(t0 - i * MICROS_PER_MINUTE, 0.4) for i in range(15, 0, -1)] + [MetricPoint(t0, 0.97)],
        anomalies=[MetricAnomaly(t0, 0.97, 0.4, 0.9, "above 90% and median + 3×MAD")],
        unit="ratio",
        resource_id=res,
    )
    await api.running.store.update_context(err.error_id, ErrorContext(metrics=[cpu]))
    out = await replay(api, err.error_id)
    assert out.root_cause.category == m.ROOT_CAUSE_CATEGORY_SATURATION
    assert "cpu" in out.root_cause.primary_cause.summary
    scale = [r for r in out.recommendations if r.kind == m.RECOMMENDATION_KIND_SCALE_RESOURCE]
    assert scale and "cpu" in scale[0].target + scale[0].title


async def test_lone_error_is_unknown_with_zero_confidence(api: Api) -> None:
    err = await capture(api, resource_id=uid("lonely-"), occurred_at=ts(T0), severity=m.SEVERITY_MEDIUM)
    out = await replay(api, err.error_id)
    assert out.root_cause.category == m.ROOT_CAUSE_CATEGORY_UNKNOWN
    assert out.root_cause.confidence == 0
    assert not out.HasField("propagation") or not out.propagation.origin_error_id
    kinds = [r.kind for r in out.recommendations]
    assert kinds == [m.RECOMMENDATION_KIND_INVESTIGATE_ERROR, m.RECOMMENDATION_KIND_GATHER_CONTEXT]
    assert [e.kind for e in out.timeline] == [m.TIMELINE_EVENT_KIND_ERROR]


async def test_replay_says_plainly_when_most_context_sources_gave_nothing(api: Api) -> None:
    # The test server has no metrics, log or trace backend: five of its seven sources are SKIPPED.
    err = await capture(api, resource_id=uid("thin-"), occurred_at=ts(T0))
    out = await replay(api, err.error_id)
    coverage = out.context_coverage
    assert coverage.limited and coverage.sources == 7
    assert sorted(s.split(" ")[0] for s in coverage.missing_sources) == [
        "azure_log_analytics",
        "elasticsearch",
        "loki",
        "prometheus",
        "tempo",
    ]
    assert coverage.summary.startswith("The diagnosis had little to go on: 5 of 7 context sources gave nothing")
    gather = out.recommendations[-1]
    assert gather.kind == m.RECOMMENDATION_KIND_GATHER_CONTEXT and coverage.summary in gather.rationale
    # With every source answered, nothing is said.
    full = ErrorContext(statuses=[CollectorStatus(s.collector, CollectionState.OK) for s in out.error.context.statuses])
    await api.running.store.update_context(err.error_id, full)
    again = await replay(api, err.error_id)
    assert not again.context_coverage.limited and again.context_coverage.summary == ""
    assert again.context_coverage.sources == 7 and not again.context_coverage.missing_sources
    assert all(r.kind != m.RECOMMENDATION_KIND_GATHER_CONTEXT for r in again.recommendations)


async def test_replay_unknown_error_is_not_found(api: Api) -> None:
    with pytest.raises(grpc.aio.AioRpcError) as info:
        await replay(api, "err_nope")
    assert info.value.code() == grpc.StatusCode.NOT_FOUND


async def test_grouping_masks_variables_and_splits_types(api: Api) -> None:
    kind = uid("Lookup")
    a = await capture(api, error_type=kind, message="user 123 not found in shard 7")
    b = await capture(api, error_type=kind, message="user 98765 not found in shard 2")
    c = await capture(api, error_type=kind, message="order 3f2a9c1e-8b7d-4e21-9a4f-0c6b2d8e1f3a failed")
    d = await capture(api, error_type=kind, message="order 0c6b2d8e-1f3a-4e21-9a4f-3f2a9c1e8b7d failed")
    e = await capture(api, error_type=kind, message="missing key 'alice' in config")
    f = await capture(api, error_type=kind, message='missing key "bob" in config')
    other = await capture(api, error_type=kind + "X", message="user 123 not found in shard 7")
    assert a.group_id == b.group_id
    assert c.group_id == d.group_id
    assert e.group_id == f.group_id
    assert len({a.group_id, c.group_id, e.group_id, other.group_id}) == 4


async def test_stack_frames_group_despite_line_numbers(api: Api) -> None:
    kind = uid("Crash")

    def trace(offset: int) -> str:
        return (
            "Traceback (most recent call last):\n"
            + "".join(f'  File "/srv/app/mod{i}.py", line {10 + i + offset}, in fn{i}\n    call()\n' for i in range(6))
            + f"{kind}: boom"
        )

    a = await capture(api, error_type=kind, message="boom 1", stack_trace=trace(0))
    b = await capture(api, error_type=kind, message="totally different text", stack_trace=trace(40))
    assert a.group_id == b.group_id
