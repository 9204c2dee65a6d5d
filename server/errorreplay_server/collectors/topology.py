"""The error's resource neighbourhood from the store's DEPENDS_ON graph (both ways, 2 hops)."""

from __future__ import annotations

from collections.abc import Sequence

from errorreplay_server.collectors.base import CollectorResult, Window, WindowSpec
from errorreplay_server.collectors.settings import CollectorSettings
from errorreplay_server.domain.errors import NotFound
from errorreplay_server.domain.model import CollectionState, Dependency, ErrorSnapshot, Topology
from errorreplay_server.store.base import Store


class TopologyCollector:
    name = "topology"

    def __init__(self, store: Store, settings: CollectorSettings) -> None:
        self.window_spec: WindowSpec = settings.windows.topology
        self._store = store
        self._depth = settings.topology_depth

    async def aclose(self) -> None:
        return None

    async def collect(self, error: ErrorSnapshot, window: Window) -> CollectorResult:
        if not error.report.resource_id:
            return CollectorResult.skipped("error has no resource_id")
        topology = await neighbourhood(self._store, error.report.resource_id, self._depth)
        if topology is None:
            return CollectorResult.empty("resource is not in the topology")
        return CollectorResult(CollectionState.OK, topology=topology)


async def neighbourhood(store: Store, resource_id: str, depth: int) -> Topology | None:
    """The resources within `depth` hops either way, or None for a resource the store lacks."""
    try:
        return await store.get_topology(resource_id, depth)
    except NotFound:
        return None


def dependencies_of(resource_id: str, edges: Sequence[Dependency], depth: int) -> list[str]:
    """What `resource_id` depends on, directly or through up to `depth` hops, nearest first."""
    found: dict[str, None] = {}
    frontier = [resource_id]
    for _ in range(depth):
        frontier = [e.dependency_id for e in edges if e.dependent_id in frontier and e.dependency_id != resource_id]
        frontier = [r for r in dict.fromkeys(frontier) if r not in found]
        if not frontier:
            break
        found.update(dict.fromkeys(frontier))
    return list(found)
