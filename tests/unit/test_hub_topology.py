"""The hub's topology cache over a real SQLite store: a topology change drops cached lookups."""

from __future__ import annotations

from pathlib import Path

from errorreplay_server.domain.model import Dependency
from errorreplay_server.store.sqlite import SqliteStore
from errorreplay_server.streaming.hub import HubSettings, InProcessHub


async def test_a_cached_empty_neighbourhood_does_not_outlive_a_topology_change(tmp_path: Path) -> None:
    store = SqliteStore(tmp_path / "hub.db")
    await store.start()
    try:
        hub = InProcessHub(store, HubSettings(topology_ttl_seconds=3600))
        cache = hub._topology
        assert (await cache.neighbours("web")).dependencies == frozenset()
        await store.upsert_resources([], [Dependency("web", "db")])
        assert (await cache.neighbours("web")).dependencies == frozenset()  # cached until told
        hub.topology_changed()
        assert (await cache.neighbours("web")).dependencies == frozenset({"db"})
    finally:
        await store.close()


async def test_a_subscription_resolves_its_filter_again_after_a_change_or_the_ttl(tmp_path: Path) -> None:
    from errorreplay_server.domain.model import ErrorFilter
    from errorreplay_server.streaming.matcher import ErrorMatcher

    store = SqliteStore(tmp_path / "hub.db")
    await store.start()
    try:
        hub = InProcessHub(store, HubSettings(topology_ttl_seconds=3600))
        stream = await hub.subscribe(ErrorMatcher(ErrorFilter(resource_ids=["web"])), True, "", None)
        sub = stream.subscription
        await store.upsert_resources([], [Dependency("web", "db")])
        await hub._current_filter(sub)
        assert sub._filter_neighbours.dependencies == frozenset()  # nothing told the hub yet
        hub.topology_changed()
        await hub._current_filter(sub)
        assert sub._filter_neighbours.dependencies == frozenset({"db"})
        # An edge written behind the hub's back counts once the TTL has passed.
        await store.upsert_resources([], [Dependency("db", "disk")])
        sub.resolved_at -= 3600
        hub._topology.invalidate()  # the cached lookups expire with the same TTL
        await hub._current_filter(sub)
        assert sub._filter_neighbours.dependencies == frozenset({"db", "disk"})
        await stream.items.aclose()
    finally:
        await store.close()
