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
