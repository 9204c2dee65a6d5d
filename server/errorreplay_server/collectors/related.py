"""Errors related to this one (DESIGN §4), found in the store at collection time.

The links are symmetric only when computed at read time, so this list is a snapshot: an error
captured later is linked by the reader, not by this collector.
"""

from __future__ import annotations

from errorreplay_server.collectors.base import CollectorResult, Window, WindowSpec
from errorreplay_server.collectors.settings import CollectorSettings
from errorreplay_server.collectors.topology import neighbourhood
from errorreplay_server.domain.model import CollectionState, ErrorSnapshot
from errorreplay_server.store.base import Store


class RelatedErrorsCollector:
    name = "related_errors"

    def __init__(self, store: Store, settings: CollectorSettings) -> None:
        self.window_spec: WindowSpec = settings.windows.related
        self._store = store
        self._depth = settings.topology_depth
        self._limit = settings.max_related_errors

    async def aclose(self) -> None:
        return None

    async def resource_ids(self, resource_id: str) -> list[str]:
        """The resource and every resource joined to it by DEPENDS_ON within the depth, either way."""
        if not resource_id:
            return []
        topology = await neighbourhood(self._store, resource_id, self._depth)
        if topology is None:
            return [resource_id]
        return list(dict.fromkeys([resource_id, *(r.id for r in topology.resources)]))

    async def collect(self, error: ErrorSnapshot, window: Window) -> CollectorResult:
        r = error.report
        if not (r.resource_id or r.correlation_id or r.trace_id):
            return CollectorResult.skipped("error has no resource_id, correlation_id or trace_id")
        ids = await self.resource_ids(r.resource_id)
        related = await self._store.related_errors(error, window.start, window.end, ids, self._limit)
        if not related:
            return CollectorResult(CollectionState.EMPTY, "no related errors in the window", related_error_ids=[])
        return CollectorResult(CollectionState.OK, related_error_ids=[e.error_id for e in related])
