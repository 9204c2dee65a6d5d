"""Deployments and config changes on the error's resource and its dependencies before it."""

from __future__ import annotations

from errorreplay_server.collectors.base import CollectorResult, Window, WindowSpec
from errorreplay_server.collectors.settings import CollectorSettings
from errorreplay_server.collectors.topology import dependencies_of, neighbourhood
from errorreplay_server.domain.model import CollectionState, ErrorSnapshot
from errorreplay_server.store.base import Store


class ChangesCollector:
    """A change on a dependency can break the resource; one on a dependent cannot, so only
    the resource and what it depends on (up to the topology depth) are searched."""

    name = "changes"

    def __init__(self, store: Store, settings: CollectorSettings) -> None:
        self.window_spec: WindowSpec = settings.windows.changes
        self._store = store
        self._depth = settings.topology_depth
        self._limit = settings.max_changes

    async def aclose(self) -> None:
        return None

    async def resource_ids(self, resource_id: str) -> list[str]:
        topology = await neighbourhood(self._store, resource_id, self._depth)
        if topology is None:
            return [resource_id]
        return [resource_id, *dependencies_of(resource_id, topology.dependencies, self._depth)]

    async def collect(self, error: ErrorSnapshot, window: Window) -> CollectorResult:
        if not error.report.resource_id:
            return CollectorResult.skipped("error has no resource_id")
        ids = await self.resource_ids(error.report.resource_id)
        # An empty kinds list means every kind (Store.list_changes).
        changes = await self._store.list_changes(ids, window.start, window.end, [], self._limit)
        if not changes:
            return CollectorResult.empty("no changes in the window")
        return CollectorResult(CollectionState.OK, changes=changes)
