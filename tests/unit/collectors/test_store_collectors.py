"""Topology and changes, against the real embedded store."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from errorreplay_server.collectors.changes import ChangesCollector
from errorreplay_server.collectors.settings import CollectorSettings
from errorreplay_server.collectors.topology import TopologyCollector, dependencies_of
from errorreplay_server.domain.model import (
    MICROS_PER_HOUR,
    MICROS_PER_MINUTE,
    Change,
    ChangeKind,
    CollectionState,
    Dependency,
    Resource,
)
from errorreplay_server.store.sqlite import SqliteStore
from tests.factories import new_error, uid
from tests.unit.collectors.conftest import AT

SETTINGS = CollectorSettings()


@pytest.fixture
async def store(tmp_path: Path) -> AsyncIterator[SqliteStore]:
    s = SqliteStore(tmp_path / "collectors.db")
    await s.start()
    try:
        yield s
    finally:
        await s.close()


class Graph:
    """web -> api -> db -> disk -> rack, and api -> cache; ids are fresh per test."""

    def __init__(self) -> None:
        p = uid()
        self.web, self.api, self.db, self.disk, self.rack, self.cache = (
            f"{p}-{n}" for n in ("web", "api", "db", "disk", "rack", "cache")
        )

    async def save(self, store: SqliteStore) -> None:
        ids = [self.web, self.api, self.db, self.disk, self.rack, self.cache]
        await store.upsert_resources(
            [Resource(i, "service") for i in ids],
            [
                Dependency(self.web, self.api),
                Dependency(self.api, self.db),
                Dependency(self.db, self.disk),
                Dependency(self.disk, self.rack),
                Dependency(self.api, self.cache),
            ],
        )


async def test_topology_is_two_hops_both_ways(store: SqliteStore) -> None:
    g = Graph()
    await g.save(store)
    error = new_error(resource_id=g.api, occurred_at=AT).snapshot
    collector = TopologyCollector(store, SETTINGS)
    result = await collector.collect(error, collector.window_spec.around(AT))
    assert result.state is CollectionState.OK and result.topology is not None
    assert result.topology.root_resource_id == g.api
    assert {r.id for r in result.topology.resources} == {g.web, g.api, g.db, g.disk, g.cache}


async def test_topology_of_an_unknown_or_missing_resource(store: SqliteStore) -> None:
    collector = TopologyCollector(store, SETTINGS)
    unknown = new_error(resource_id=uid("nowhere-"), occurred_at=AT).snapshot
    assert (await collector.collect(unknown, collector.window_spec.around(AT))).state is CollectionState.EMPTY
    bare = new_error(resource_id="", occurred_at=AT).snapshot
    assert (await collector.collect(bare, collector.window_spec.around(AT))).state is CollectionState.SKIPPED


async def test_changes_on_the_resource_and_its_dependencies_in_the_day_before(store: SqliteStore) -> None:
    g = Graph()
    await g.save(store)

    async def change(resource: str, before: int, kind: ChangeKind = ChangeKind.DEPLOYMENT) -> str:
        change_id = uid("chg_")
        await store.record_change(Change(change_id, kind, resource, AT - before, version="v2"))
        return change_id

    on_api = await change(g.api, 12 * MICROS_PER_HOUR)
    on_db = await change(g.db, MICROS_PER_HOUR, ChangeKind.CONFIG)
    on_disk = await change(g.disk, 10 * MICROS_PER_MINUTE)
    await change(g.rack, MICROS_PER_MINUTE)  # three hops down
    await change(g.web, MICROS_PER_MINUTE)  # a dependent, not a dependency
    await change(g.api, 25 * MICROS_PER_HOUR)  # too early
    await change(g.api, -MICROS_PER_MINUTE)  # after the error
    error = new_error(resource_id=g.api, occurred_at=AT).snapshot
    collector = ChangesCollector(store, SETTINGS)
    result = await collector.collect(error, collector.window_spec.around(AT))
    assert result.state is CollectionState.OK
    assert [c.change_id for c in result.changes] == [on_disk, on_db, on_api]  # newest first


async def test_no_changes_is_empty(store: SqliteStore) -> None:
    collector = ChangesCollector(store, SETTINGS)
    error = new_error(resource_id=uid("quiet-"), occurred_at=AT).snapshot
    result = await collector.collect(error, collector.window_spec.around(AT))
    assert result.state is CollectionState.EMPTY


def test_dependencies_of_walks_one_way_and_stops_at_the_depth() -> None:
    edges = [Dependency("web", "api"), Dependency("api", "db"), Dependency("db", "disk"), Dependency("db", "api")]
    assert dependencies_of("api", edges, 2) == ["db", "disk"]
    assert dependencies_of("api", edges, 1) == ["db"]
    assert dependencies_of("disk", edges, 2) == []
