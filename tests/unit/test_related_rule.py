"""One related-errors rule: the replay's analysis and the stream hub decide every pair alike.

Each row of PAIRS is checked against the analysis (relation_reason, related_errors) and against a
real InProcessHub over a real SQLite store: `first` matches the subscription's filter, `second`
does not, so `second` reaches an include_correlated stream only if the rule relates it to `first`,
and then with the same reason. A second stream that takes everything shows whether the hub names
`first` among `second`'s related errors.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from errorreplay_server.analysis.correlation import RelationFacts, RelationRule, related_errors, relation_reason
from errorreplay_server.analysis.model import CorrelationReason
from errorreplay_server.analysis.settings import AnalysisSettings
from errorreplay_server.domain.model import MICROS_PER_MINUTE, Dependency, ErrorFilter, ErrorSnapshot
from errorreplay_server.store.sqlite import SqliteStore
from errorreplay_server.streaming.hub import InProcessHub, Stream, StreamItem
from errorreplay_server.streaming.matcher import ErrorMatcher
from tests.unit.analysis.builders import T0, snap

MIN = MICROS_PER_MINUTE
# lb -> web -> api -> db, and two callers of one shared cache.
TOPOLOGY = [
    Dependency("lb", "web"),
    Dependency("web", "api"),
    Dependency("api", "db"),
    Dependency("checkout", "cache"),
    Dependency("search", "cache"),
]
PICKED = {"pick": "yes"}


@dataclass(frozen=True)
class Pair:
    name: str
    first: ErrorSnapshot
    second: ErrorSnapshot
    expected: CorrelationReason | None


def _pair(name: str, first: dict[str, object], second: dict[str, object], expected: CorrelationReason | None) -> Pair:
    a = dict(first)
    b = dict(second)
    return Pair(
        name,
        snap(f"{name}-1", str(a.pop("resource_id", "")), int(str(a.pop("at", T0))), tags=PICKED, **a),
        snap(f"{name}-2", str(b.pop("resource_id", "")), int(str(b.pop("at", T0 + MIN))), **b),
        expected,
    )


PAIRS = [
    _pair(
        "same-correlation-id",
        {"resource_id": "lb", "correlation_id": "req-1"},
        {"resource_id": "elsewhere", "correlation_id": "req-1"},
        CorrelationReason.SAME_CORRELATION_ID,
    ),
    _pair(
        "same-trace-id",
        {"resource_id": "lb", "trace_id": "t-1"},
        {"resource_id": "elsewhere", "trace_id": "t-1"},
        CorrelationReason.SAME_TRACE_ID,
    ),
    _pair("same-resource", {"resource_id": "api"}, {"resource_id": "api"}, CorrelationReason.SAME_RESOURCE),
    _pair("dependency-2-hops", {"resource_id": "web"}, {"resource_id": "db"}, CorrelationReason.DOWNSTREAM_FAILURE),
    _pair("dependent-2-hops", {"resource_id": "db"}, {"resource_id": "web"}, CorrelationReason.UPSTREAM_FAILURE),
    _pair("dependency-3-hops", {"resource_id": "lb"}, {"resource_id": "db"}, None),
    _pair("two-callers-of-one-dependency", {"resource_id": "checkout"}, {"resource_id": "search"}, None),
    _pair("unrelated", {"resource_id": "lb"}, {"resource_id": "elsewhere"}, None),
    _pair("no-resource-no-ids", {"resource_id": ""}, {"resource_id": ""}, None),
    _pair(
        "same-correlation-id-outside-the-window",
        {"resource_id": "api", "correlation_id": "req-2"},
        {"resource_id": "api", "correlation_id": "req-2", "at": T0 + 10 * MIN + 1},
        None,
    ),
    _pair(
        "same-correlation-id-at-the-window-edge",
        {"resource_id": "lb", "correlation_id": "req-3", "at": T0 + 10 * MIN},
        {"resource_id": "elsewhere", "correlation_id": "req-3", "at": T0},
        CorrelationReason.SAME_CORRELATION_ID,
    ),
]


@pytest.mark.parametrize("pair", PAIRS, ids=lambda p: p.name)
def test_the_analysis_relates_each_pair_as_the_table_says(pair: Pair) -> None:
    assert relation_reason(pair.first, pair.second, TOPOLOGY) == pair.expected
    related = related_errors(pair.first, [pair.second], TOPOLOGY)
    assert [e.error_id for e in related] == ([pair.second.error_id] if pair.expected else [])


@pytest.fixture
async def store(tmp_path: Path) -> AsyncIterator[SqliteStore]:
    store = SqliteStore(tmp_path / "rule.db")
    await store.start()
    await store.upsert_resources([], TOPOLOGY)
    try:
        yield store
    finally:
        await store.close()


class HubUnderTest:
    """A started hub with a picking stream (filter: the `pick` tag, include_correlated) and a
    stream that takes every error."""

    def __init__(self, hub: InProcessHub, picking: Stream, everything: Stream) -> None:
        self.hub = hub
        self.picking = picking
        self.everything = everything
        self._received_at = T0

    @classmethod
    async def start(cls, store: SqliteStore, analysis: AnalysisSettings) -> HubUnderTest:
        hub = InProcessHub(store, analysis=analysis)
        await hub.start()
        picking = await hub.subscribe(ErrorMatcher(ErrorFilter(tags=PICKED)), True, "", None)
        everything = await hub.subscribe(ErrorMatcher(ErrorFilter()), False, "", None)
        return cls(hub, picking, everything)

    def publish(self, s: ErrorSnapshot) -> None:
        # received_at must grow, as it does in the store; occurred_at is what the rule reads.
        self._received_at += 1
        s.received_at = self._received_at
        self.hub.publish(s)

    async def close(self) -> None:
        await self.hub.close()
        await self.picking.items.aclose()
        await self.everything.items.aclose()


async def _next_error(stream: Stream) -> StreamItem:
    item = await anext(stream.items)
    assert item.snapshot is not None
    return item


@pytest.mark.parametrize("pair", PAIRS, ids=lambda p: p.name)
async def test_the_stream_hub_relates_each_pair_as_the_table_says(store: SqliteStore, pair: Pair) -> None:
    under_test = await HubUnderTest.start(store, AnalysisSettings())
    # A picked error after the pair: the picking stream's next item after `first` is `second`
    # when the hub related it, else this one (the hub delivers in publish order).
    sentinel = snap(f"{pair.name}-sentinel", "sentinel", T0 + 60 * MIN, tags=PICKED)
    try:
        for s in (pair.first, pair.second, sentinel):
            under_test.publish(s)
        first = await _next_error(under_test.picking)
        assert first.snapshot is pair.first
        assert first.correlation is not None and first.correlation.reason is CorrelationReason.FILTER_MATCH
        after = await _next_error(under_test.picking)
        if pair.expected is None:
            assert after.snapshot is sentinel
        else:
            assert after.snapshot is pair.second
            assert after.correlation is not None
            assert after.correlation.correlated
            assert after.correlation.reason is pair.expected
            assert after.correlation.matched_error_id == pair.first.error_id
        seen = [await _next_error(under_test.everything) for _ in range(2)]
        assert [item.snapshot for item in seen] == [pair.first, pair.second]
        correlation = seen[1].correlation
        assert correlation is not None
        assert (pair.first.error_id in correlation.related_error_ids) == (pair.expected is not None)
    finally:
        await under_test.close()


async def test_the_related_window_changes_the_streams_decision(store: SqliteStore) -> None:
    first = snap("w-1", "lb", T0, tags=PICKED, correlation_id="req-w")
    second = snap("w-2", "elsewhere", T0 + 5 * MIN, correlation_id="req-w")
    sentinel = snap("w-sentinel", "sentinel", T0 + 60 * MIN, tags=PICKED)
    delivered = {}
    for window in (10 * MIN, 1 * MIN):
        under_test = await HubUnderTest.start(store, AnalysisSettings(related_window_us=window))
        try:
            for s in (first, second, sentinel):
                under_test.publish(s)
            assert (await _next_error(under_test.picking)).snapshot is first
            delivered[window] = (await _next_error(under_test.picking)).snapshot
        finally:
            await under_test.close()
    assert delivered == {10 * MIN: second, 1 * MIN: sentinel}


async def test_the_related_hops_change_the_streams_decision(store: SqliteStore) -> None:
    first = snap("h-1", "lb", T0, tags=PICKED)
    second = snap("h-2", "db", T0 + MIN)
    sentinel = snap("h-sentinel", "sentinel", T0 + 60 * MIN, tags=PICKED)
    reasons = {}
    for hops in (2, 3):
        settings = AnalysisSettings(related_hops=hops)
        under_test = await HubUnderTest.start(store, settings)
        try:
            for s in (first, second, sentinel):
                under_test.publish(s)
            assert (await _next_error(under_test.picking)).snapshot is first
            after = await _next_error(under_test.picking)
            assert after.correlation is not None
            reasons[hops] = (after.snapshot, after.correlation.reason)
        finally:
            await under_test.close()
        assert relation_reason(first, second, TOPOLOGY, settings) == (
            CorrelationReason.DOWNSTREAM_FAILURE if hops == 3 else None
        )
    assert reasons == {
        2: (sentinel, CorrelationReason.FILTER_MATCH),
        3: (second, CorrelationReason.DOWNSTREAM_FAILURE),
    }


async def test_the_related_limit_names_the_nearest_in_replays_and_streams(store: SqliteStore) -> None:
    # Five errors on `api` a minute apart, then a sixth: the replay of the third names its nearest
    # two (at equal distance the earlier), a stream message for the sixth names its newest two.
    errors = [snap(f"n-{i}", "api", T0 + i * MIN) for i in range(6)]
    settings = AnalysisSettings(related_limit=2)
    assert [e.error_id for e in related_errors(errors[2], errors, TOPOLOGY, settings)] == ["n-1", "n-3"]
    assert len(related_errors(errors[2], errors, TOPOLOGY, AnalysisSettings())) == 5
    under_test = await HubUnderTest.start(store, settings)
    try:
        for s in errors:
            under_test.publish(s)
        seen = [await _next_error(under_test.everything) for _ in errors]
        correlation = seen[-1].correlation
        assert correlation is not None and correlation.related_error_ids == ("n-3", "n-4")
    finally:
        await under_test.close()


@pytest.mark.parametrize("pair", PAIRS, ids=lambda p: p.name)
def test_either_errors_neighbourhood_gives_the_same_answer(pair: Pair) -> None:
    rule = RelationRule(AnalysisSettings())
    a, b = RelationFacts.of(pair.first), RelationFacts.of(pair.second)
    seen_from_first = rule.reason(a, b, rule.neighbourhood(a.resource_id, TOPOLOGY))
    seen_from_second = rule.reason(a, b, rule.neighbourhood(b.resource_id, TOPOLOGY))
    assert seen_from_first == seen_from_second == pair.expected


def test_a_neighbourhood_of_neither_resource_is_refused() -> None:
    rule = RelationRule(AnalysisSettings())
    a, b = RelationFacts.of(snap("a", "web")), RelationFacts.of(snap("b", "db"))
    with pytest.raises(ValueError, match="neither"):
        rule.reason(a, b, rule.neighbourhood("lb", TOPOLOGY))
