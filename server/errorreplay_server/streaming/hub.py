"""The in-process hub behind SubscribeErrors.

Captures are published after they commit, in commit order. One dispatcher task fans each one
out to the subscriptions; publishing only appends to the dispatcher's queue, so a slow
subscriber never slows capture. Every subscription has a bounded queue: when it overflows the
subscription ends with RESOURCE_EXHAUSTED and the client resumes from its cursor.

`Hub` is the interface. Positions (what cursors carry) are received_at here; with several
replicas, streaming/jetstream.py puts NATS JetStream behind the same methods and positions are
the stream's sequence numbers.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections import OrderedDict, deque
from collections.abc import AsyncGenerator, AsyncIterator, Sequence
from dataclasses import dataclass
from typing import Protocol

from errorreplay_server.analysis.correlation import (
    NO_NEIGHBOURHOOD,
    Neighbourhood,
    RelationFacts,
    RelationRule,
    affected_resources,
)
from errorreplay_server.analysis.model import CorrelationReason, Propagation
from errorreplay_server.analysis.propagation import correlation_origin
from errorreplay_server.analysis.settings import DEFAULT_SETTINGS, AnalysisSettings
from errorreplay_server.domain.errors import InvalidArgument, NotFound, OutOfRange, ResourceExhausted, ShuttingDown
from errorreplay_server.domain.model import Dependency, ErrorSnapshot, Micros
from errorreplay_server.settings_types import Count, Seconds, SettingsModel, setting
from errorreplay_server.store.base import Store
from errorreplay_server.store.pagination import StreamCursors
from errorreplay_server.streaming.matcher import ErrorMatcher

log = logging.getLogger(__name__)


def too_slow(resume_after: str) -> ResourceExhausted:
    """How a subscription that overflowed ends: always with the cursor of the last message written."""
    return ResourceExhausted(
        f"subscriber too slow: its queue overflowed; resubscribe with resume_after={resume_after}",
        resume_after=resume_after,
    )


class HubSettings(SettingsModel):
    """Streaming knobs (README: Streaming). Which errors are related, and the window and hops that
    decide it, are the analysis' (AnalysisSettings, analysis/correlation.py RelationRule)."""

    queue_size: Count = setting(1000, "STREAM_QUEUE_SIZE", "messages buffered per subscriber before overflow")
    # To correlate later errors with.
    memory_size: Count = setting(1000, "STREAM_MEMORY_SIZE", "errors each subscription remembers")
    # To name related errors and the origin.
    recent_size: Count = setting(20_000, "STREAM_RECENT_SIZE", "recent errors the hub indexes")
    topology_ttl_seconds: Seconds = setting(
        30.0, "STREAM_TOPOLOGY_TTL", "how long neighbourhoods are cached, for streams and related errors"
    )
    topology_cache_size: Count = setting(10_000, "STREAM_TOPOLOGY_CACHE_SIZE", "resources in the topology cache")
    backfill_page: Count = setting(500, "STREAM_BACKFILL_PAGE", "stored errors read per page when resuming")
    max_subscriptions: Count = setting(10_000, "MAX_SUBSCRIPTIONS", "concurrent streams, all callers")


@dataclass(frozen=True, slots=True)
class StreamCorrelation:
    correlated: bool
    reason: CorrelationReason
    origin_error_id: str = ""
    related_error_ids: tuple[str, ...] = ()
    affected_resource_ids: tuple[str, ...] = ()
    matched_error_id: str = ""


@dataclass(frozen=True, slots=True)
class StreamItem:
    """One message of a stream: an error, or a heartbeat (snapshot None)."""

    snapshot: ErrorSnapshot | None
    correlation: StreamCorrelation | None
    cursor: str


@dataclass(frozen=True, slots=True)
class Neighbours:
    """The relation rule's neighbourhood of one resource, and the topology walked to find it."""

    near: Neighbourhood
    edges: tuple[Dependency, ...]
    resource_ids: tuple[str, ...] = ()  # every resource reached, the resource itself included

    @property
    def dependencies(self) -> frozenset[str]:
        return self.near.dependencies

    @property
    def dependents(self) -> frozenset[str]:
        return self.near.dependents


NO_NEIGHBOURS = Neighbours(NO_NEIGHBOURHOOD, ())


@dataclass(frozen=True, slots=True)
class FilterNeighbours:
    """Resources within the related hops of any resource a subscription's filter names."""

    dependencies: frozenset[str] = frozenset()
    dependents: frozenset[str] = frozenset()


class TopologyCache:
    """Neighbourhoods loaded from the store, kept for a short time, for streams and for the related
    errors of GetError and replays (dataplane.py). `invalidate` drops them all when this server
    writes topology; the TTL bounds how stale an edge written elsewhere (another replica, or
    straight into a shared Neo4j graph) can be."""

    def __init__(self, store: Store, settings: HubSettings, rule: RelationRule) -> None:
        self._store = store
        self._settings = settings
        self._rule = rule
        self._entries: OrderedDict[str, tuple[float, Neighbours]] = OrderedDict()
        # Bumped by invalidate, so a lookup that started before it does not store a stale answer.
        self._generation = 0

    def invalidate(self) -> None:
        self._entries.clear()
        self._generation += 1

    async def neighbours(self, resource_id: str) -> Neighbours:
        if not resource_id:
            return NO_NEIGHBOURS
        now = time.monotonic()
        hit = self._entries.get(resource_id)
        if hit is not None and now - hit[0] < self._settings.topology_ttl_seconds:
            return hit[1]
        generation = self._generation
        try:
            topology = await self._store.get_topology(resource_id, self._rule.hops)
        except NotFound:
            found = Neighbours(Neighbourhood(resource_id, frozenset(), frozenset()), ())
        else:
            edges = tuple(topology.dependencies)
            reached = tuple(r.id for r in topology.resources)
            found = Neighbours(self._rule.neighbourhood(resource_id, edges), edges, reached)
        if generation != self._generation:
            return found
        self._entries[resource_id] = (now, found)
        self._entries.move_to_end(resource_id)
        while len(self._entries) > self._settings.topology_cache_size:
            self._entries.popitem(last=False)
        return found


class RecentErrors:
    """Recent errors indexed by correlation id, trace id and resource, to name related ones: the
    index only finds the candidates, the relation rule decides."""

    def __init__(self, size: int) -> None:
        self._order: deque[ErrorSnapshot] = deque()
        self._size = size
        self._by_key: dict[str, deque[ErrorSnapshot]] = {}

    @staticmethod
    def _keys(s: ErrorSnapshot) -> list[str]:
        r = s.report
        keys = []
        if r.correlation_id:
            keys.append("c:" + r.correlation_id)
        if r.trace_id:
            keys.append("t:" + r.trace_id)
        if r.resource_id:
            keys.append("r:" + r.resource_id)
        return keys

    def add(self, s: ErrorSnapshot) -> None:
        self._order.append(s)
        for key in self._keys(s):
            self._by_key.setdefault(key, deque()).append(s)
        while len(self._order) > self._size:
            old = self._order.popleft()
            for key in self._keys(old):
                bucket = self._by_key.get(key)
                if bucket and bucket[0] is old:
                    bucket.popleft()
                    if not bucket:
                        del self._by_key[key]

    def related(self, s: ErrorSnapshot, neighbours: Neighbours, rule: RelationRule) -> list[ErrorSnapshot]:
        """The remembered errors `rule` relates to `s`: the rule's limit of the newest, which are
        the nearest in time to a new error."""
        keys = self._keys(s) + ["r:" + x for x in sorted(neighbours.near.resource_ids)]
        facts = RelationFacts.of(s)
        found: dict[str, ErrorSnapshot] = {}
        for key in keys:
            for other in self._by_key.get(key, ()):
                if other.error_id in found:
                    continue
                if rule.reason(facts, RelationFacts.of(other), neighbours.near) is not None:
                    found[other.error_id] = other
        return sorted(found.values(), key=lambda e: (e.report.occurred_at, e.error_id))[-rule.limit :]


class Subscription:
    """One subscriber: its matcher, what it matched recently, and its bounded queue."""

    def __init__(
        self,
        matcher: ErrorMatcher,
        include_correlated: bool,
        filter_neighbours: FilterNeighbours,
        settings: HubSettings,
        rule: RelationRule,
        topology_version: int = 0,
    ) -> None:
        self.matcher = matcher
        self.include_correlated = include_correlated
        self._filter_neighbours = filter_neighbours
        # The hub's topology version the filter's neighbourhood was resolved at, and when.
        self.topology_version = topology_version
        self.resolved_at = time.monotonic()
        self._settings = settings
        self._rule = rule
        self._memory: deque[RelationFacts] = deque(maxlen=settings.memory_size)
        # (snapshot, correlation, position): position is what the stream's cursor carries.
        self._queue: deque[tuple[ErrorSnapshot, StreamCorrelation, int]] = deque()
        self._wake = asyncio.Event()
        # Set on overflow, so a writer blocked on a slow client can give up at once.
        self.overflow_event = asyncio.Event()
        self.overflowed = False
        self.closed = False

    def decide(self, s: ErrorSnapshot, neighbours: Neighbours) -> tuple[bool, CorrelationReason, str]:
        """(deliver?, why, the remembered error it correlates with)."""
        if self.matcher.matches(s):
            self._remember(s)
            return True, CorrelationReason.FILTER_MATCH, ""
        if not self.include_correlated or not self.matcher.matches_severity(s):
            return False, CorrelationReason.UNSPECIFIED, ""
        reason, matched = self._correlate(s, neighbours)
        if reason is CorrelationReason.UNSPECIFIED:
            return False, reason, ""
        self._remember(s)
        return True, reason, matched

    def set_filter_neighbours(self, neighbours: FilterNeighbours, topology_version: int) -> None:
        self._filter_neighbours = neighbours
        self.topology_version = topology_version
        self.resolved_at = time.monotonic()

    def _remember(self, s: ErrorSnapshot) -> None:
        self._memory.append(RelationFacts.of(s))

    def _correlate(self, s: ErrorSnapshot, nb: Neighbours) -> tuple[CorrelationReason, str]:
        """The relation rule between each remembered error (newest first) and `s`: why `s` is
        related to it, as a replay of the remembered error would say."""
        facts = RelationFacts.of(s)
        found = self._rule.first_related(reversed(self._memory), facts, nb.near)
        if found is not None:
            return found[0], found[1].error_id
        # Failures within the related hops of the resources the filter names, before any of them
        # failed: the same graph rule, as if each named resource had just failed.
        if facts.resource_id in self._filter_neighbours.dependencies:
            return CorrelationReason.DOWNSTREAM_FAILURE, ""
        if facts.resource_id in self._filter_neighbours.dependents:
            return CorrelationReason.UPSTREAM_FAILURE, ""
        return CorrelationReason.UNSPECIFIED, ""

    def offer(self, s: ErrorSnapshot, correlation: StreamCorrelation, position: int) -> None:
        if self.closed or self.overflowed:
            return
        if len(self._queue) >= self._settings.queue_size:
            self.overflowed = True
            self.overflow_event.set()
            self._queue.clear()
        else:
            self._queue.append((s, correlation, position))
        self._wake.set()

    def first_queued(self) -> int | None:
        """The position of the oldest live item waiting, if any."""
        return self._queue[0][2] if self._queue else None

    @property
    def queued(self) -> int:
        return len(self._queue)

    def close(self) -> None:
        self.closed = True
        self._wake.set()

    async def next(self, timeout: float | None) -> tuple[ErrorSnapshot, StreamCorrelation, int] | None:
        """The next queued item; None on timeout. Raises when overflowed, or closed and drained."""
        while True:
            if self.overflowed:
                raise ResourceExhausted("subscriber too slow: its queue overflowed")
            if self._queue:
                return self._queue.popleft()
            if self.closed:
                raise ShuttingDown("the server is shutting down; resubscribe with resume_after")
            self._wake.clear()
            try:
                await asyncio.wait_for(self._wake.wait(), timeout)
            except TimeoutError:
                return None


@dataclass(slots=True)
class Stream:
    """An open subscription: its items, and the event a blocked writer watches for overflow.
    Close `items` (aclose) to free the subscription at once. `start_cursor` is the position the
    subscription starts after, the resume point until a first message is written."""

    subscription: Subscription
    items: AsyncGenerator[StreamItem, None]
    start_cursor: str

    @property
    def overflow_event(self) -> asyncio.Event:
        return self.subscription.overflow_event


class Hub(Protocol):
    def publish(self, snapshot: ErrorSnapshot) -> None: ...

    def topology_changed(self) -> None:
        """DEPENDS_ON edges were written: correlated subscriptions must see the new neighbourhood."""
        ...

    async def neighbours(self, resource_id: str) -> Neighbours:
        """The topology within the related hops of `resource_id`, from the cache that streams use."""
        ...

    async def subscribe(
        self, matcher: ErrorMatcher, include_correlated: bool, resume_after: str, heartbeat_seconds: float | None
    ) -> Stream: ...

    @property
    def subscriber_count(self) -> int: ...

    async def start(self) -> None: ...

    async def close(self) -> None: ...

    async def finish_publishing(self) -> None: ...


class InProcessHub:
    def __init__(
        self, store: Store, settings: HubSettings | None = None, analysis: AnalysisSettings = DEFAULT_SETTINGS
    ) -> None:
        self._store = store
        self._settings = settings or HubSettings()
        # What "related" means is the analysis' rule, with its settings: streams and replays agree.
        self._rule = RelationRule(analysis)
        self._topology = TopologyCache(store, self._settings, self._rule)
        self._recent = RecentErrors(self._settings.recent_size)
        self._subscriptions: set[Subscription] = set()
        self._inbox: asyncio.Queue[ErrorSnapshot | None] = asyncio.Queue()
        self._dispatcher: asyncio.Task[None] | None = None
        self._topology_version = 0
        self._cursors = StreamCursors(b"")
        # received_at of the last error fanned out to every subscription: a subscription that
        # starts now receives exactly the errors after it.
        self._dispatched_through: Micros = 0
        self.published = 0
        self.delivered = 0

    @property
    def subscriber_count(self) -> int:
        return len(self._subscriptions)

    async def start(self) -> None:
        self._cursors = StreamCursors(self._store.token_key())
        self._dispatched_through = await self._store.latest_received_at()
        self._dispatcher = asyncio.create_task(self._dispatch(), name="hub-dispatcher")

    @property
    def dispatched_through(self) -> Micros:
        """The received_at of the last error fanned out (or stored, when nothing was yet)."""
        return self._dispatched_through

    def cursor_for(self, received_at: Micros) -> str:
        return self._cursors.encode(received_at)

    async def close(self) -> None:
        """Flush what was published, then end every stream (they drain their queues first)."""
        if self._dispatcher is not None:
            self._inbox.put_nowait(None)
            with contextlib.suppress(asyncio.CancelledError):
                await self._dispatcher
            self._dispatcher = None
        for sub in list(self._subscriptions):
            sub.close()

    def publish(self, snapshot: ErrorSnapshot) -> None:
        self.published += 1
        self._inbox.put_nowait(snapshot)

    async def finish_publishing(self) -> None:
        """After the last capture: hand what was published to a shared bus (nothing to do here)."""

    def topology_changed(self) -> None:
        """Drop every cached neighbourhood; each correlated subscription resolves its filter's
        neighbourhood again before it judges its next error (in `_current_filter`)."""
        self._topology.invalidate()
        self._topology_version += 1

    async def neighbours(self, resource_id: str) -> Neighbours:
        return await self._topology.neighbours(resource_id)

    async def _current_filter(self, sub: Subscription) -> None:
        """Re-resolve the filter's neighbourhood after a topology change here, or once it is older
        than the cache TTL (edges written elsewhere)."""
        if not sub.include_correlated:
            return
        expired = time.monotonic() - sub.resolved_at >= self._settings.topology_ttl_seconds
        if sub.topology_version != self._topology_version or expired:
            version = self._topology_version
            sub.set_filter_neighbours(await self._filter_neighbours(sub.matcher), version)

    async def _dispatch(self) -> None:
        while True:
            snapshot = await self._inbox.get()
            if snapshot is None:
                return
            try:
                await self._fan_out(snapshot, snapshot.received_at, self._recent, self._subscriptions)
            except Exception:
                log.exception("dispatch of %s failed", snapshot.error_id)
            # Only now: a subscription registered while the fan-out awaited the topology got it
            # live, so its start position must still be before it.
            self._dispatched_through = max(self._dispatched_through, snapshot.received_at)

    async def _fan_out(
        self,
        s: ErrorSnapshot,
        position: int,
        recent: RecentErrors,
        subscriptions: Sequence[Subscription] | set[Subscription],
    ) -> None:
        neighbours = await self._topology.neighbours(s.report.resource_id)
        block: tuple[str, tuple[str, ...], tuple[str, ...]] | None = None
        # One correlation object per (reason, matched error): subscribers that got the error for
        # the same reason share it, so the transport can encode the message once for all of them.
        shared: dict[tuple[CorrelationReason, str], StreamCorrelation] = {}
        for sub in list(subscriptions):
            await self._current_filter(sub)
            deliver, reason, matched = sub.decide(s, neighbours)
            if not deliver:
                continue
            correlation = shared.get((reason, matched))
            if correlation is None:
                if block is None:
                    block = self._correlation_block(s, neighbours, recent)
                origin, related, affected = block
                correlation = shared[(reason, matched)] = StreamCorrelation(
                    correlated=reason is not CorrelationReason.FILTER_MATCH,
                    reason=reason,
                    origin_error_id=origin,
                    related_error_ids=related,
                    affected_resource_ids=affected,
                    matched_error_id=matched,
                )
            sub.offer(s, correlation, position)
            self.delivered += 1
        recent.add(s)

    def _correlation_block(
        self, s: ErrorSnapshot, neighbours: Neighbours, recent: RecentErrors
    ) -> tuple[str, tuple[str, ...], tuple[str, ...]]:
        related = recent.related(s, neighbours, self._rule)
        propagation: Propagation | None = correlation_origin([*related, s], neighbours.edges) if related else None
        affected = affected_resources(s, neighbours.edges, self._rule.hops)
        origin = propagation.origin_error_id if propagation is not None else ""
        return origin, tuple(e.error_id for e in related), tuple(affected)

    async def _resume_point(self, resume_after: str) -> Micros:
        """The received_at a resumed stream starts after: a cursor of this database (signed), or an
        error id. A cursor past the newest stored error is OUT_OF_RANGE: accepting it would drop
        every live error up to it."""
        position = self._cursors.decode(resume_after)
        if position is None:
            try:
                return (await self._store.get_error(resume_after)).received_at
            except NotFound:
                raise InvalidArgument.single(
                    "resume_after", "is neither a cursor of this server nor a known error id"
                ) from None
        newest = await self._store.latest_received_at()
        if position > newest:
            raise OutOfRange("resume_after", "is past the newest stored error")
        return position

    async def _filter_neighbours(self, matcher: ErrorMatcher) -> FilterNeighbours:
        deps: set[str] = set()
        dependents: set[str] = set()
        for rid in matcher.filter.resource_ids:
            nb = await self._topology.neighbours(rid)
            deps |= nb.dependencies
            dependents |= nb.dependents
        return FilterNeighbours(frozenset(deps), frozenset(dependents))

    async def subscribe(
        self, matcher: ErrorMatcher, include_correlated: bool, resume_after: str, heartbeat_seconds: float | None
    ) -> Stream:
        if len(self._subscriptions) >= self._settings.max_subscriptions:
            raise ResourceExhausted("too many subscriptions on this server", retry_after_seconds=5)
        resumed = await self._resume_point(resume_after) if resume_after else None
        version = self._topology_version
        filter_neighbours = await self._filter_neighbours(matcher) if include_correlated else FilterNeighbours()
        sub = Subscription(matcher, include_correlated, filter_neighbours, self._settings, self._rule, version)
        # Register before reading the backlog: whatever commits from now on is queued live. The
        # backlog stops where the live queue starts, and anything at or before the last error sent
        # is skipped, so the switch has no gap and no duplicate. Without a resume point the stream
        # starts after the last error dispatched (in the same step as registering), so its first
        # heartbeat already names a position that resumes without replaying history.
        start_after = self._dispatched_through if resumed is None else resumed
        self._subscriptions.add(sub)
        items = self._items(sub, start_after, resumed is not None, heartbeat_seconds)
        return Stream(sub, items, self.cursor_for(start_after))

    async def _items(
        self, sub: Subscription, start_after: int, backfill: bool, heartbeat_seconds: float | None
    ) -> AsyncGenerator[StreamItem, None]:
        try:
            last = start_after
            if backfill:
                async for position, item in self._backfill(sub, start_after):
                    last = position
                    yield item
            while True:
                got = await sub.next(heartbeat_seconds)
                if got is None:
                    yield StreamItem(None, None, self.cursor_for(last))
                    continue
                snapshot, correlation, position = got
                if position <= last:
                    continue
                last = position
                yield StreamItem(snapshot, correlation, self.cursor_for(last))
        finally:
            self._subscriptions.discard(sub)

    async def _backfill(self, sub: Subscription, after: int) -> AsyncIterator[tuple[int, StreamItem]]:
        """(position, item) of every stored error after `after` the subscription wants, up to
        where its live queue starts."""
        recent = RecentErrors(self._settings.recent_size)
        cursor = after
        while True:
            page = await self._store.errors_after(cursor, self._settings.backfill_page)
            for s in page:
                live_from = sub.first_queued()
                if live_from is not None and s.received_at >= live_from:
                    return  # the live queue holds the rest
                cursor = s.received_at
                neighbours = await self._topology.neighbours(s.report.resource_id)
                await self._current_filter(sub)
                deliver, reason, matched = sub.decide(s, neighbours)
                if deliver:
                    yield s.received_at, self._backfill_item(s, neighbours, recent, reason, matched, s.received_at)
                recent.add(s)
            if len(page) < self._settings.backfill_page:
                return

    def _backfill_item(
        self,
        s: ErrorSnapshot,
        neighbours: Neighbours,
        recent: RecentErrors,
        reason: CorrelationReason,
        matched: str,
        position: int,
    ) -> StreamItem:
        origin, related, affected = self._correlation_block(s, neighbours, recent)
        correlation = StreamCorrelation(
            reason is not CorrelationReason.FILTER_MATCH, reason, origin, related, affected, matched
        )
        return StreamItem(s, correlation, self.cursor_for(position))
