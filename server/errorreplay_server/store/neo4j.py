"""The Neo4j store: the Store interface over Bolt with the official async driver.

Graph model:
    (:ErrorSnapshot {error_id, …})-[:OCCURRED_ON]->(:Resource {id, type, name, labels_json})
    (:ErrorSnapshot)-[:IN_GROUP]->(:ErrorGroup {group_id, …})
    (:ErrorSnapshot)-[:TAGGED]->(:Tag {key, value})
    (:ErrorGroup)-[:AFFECTS]->(:Resource)
    (:Resource)-[:DEPENDS_ON]->(:Resource)           from the dependent to its dependency
    (:Change {change_id, kind, version, occurred_at, …})-[:CHANGED]->(:Resource)

Timestamps are integers (epoch microseconds). The searched report fields are properties; the
rest (details, context, a change's document) are JSON strings from codec, because Neo4j rejects
map properties. Empty optional strings are not stored, so the indexes stay small; reads coalesce
them back to "".

Why this shape:
- Tags are (:Tag {key, value}) nodes under a composite uniqueness constraint. A tag filter is an
  exact match on two parameters (no escaping, no string joining to get wrong), it can start from
  the constraint's index, and Neo4j does not index the elements of list properties anyway.
- Text search has the one meaning of domain/words.py: each error keeps its message's word set in a
  `words` list property, and a query matches when all its words are in it. Neither server
  indexes list elements (see neo4j_dialect), so the condition is checked on the errors the other
  conditions leave, as the former substring search was on ArcadeDB.
- A resource first seen on an error is created as a bare node flagged `implicit`, so errors always
  hang off a Resource, while get_topology still answers NotFound for it exactly as SQLite does
  (SQLite creates no resource on capture). Declaring it (upsert, dependency end, change) clears
  the flag. Resources of an existing graph have no flag and are found as they are.
- All writes go through one writer (store/core.py BatchWriter). It runs everything pending in one
  transaction, with consecutive captures folded into UNWIND statements (UNWIND of
  200 rows is about 8× single MERGEs), and resolves each caller after COMMIT. One writer also means
  captures commit in submission (received_at) order and never conflict with each other.
- Every query is a constant or assembled from constant fragments with positional parameter
  names; no value is ever formatted into Cypher.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
from collections import Counter
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import asdict, dataclass
from typing import Any, TypeVar
from urllib.parse import urlsplit

import neo4j
from neo4j import AsyncDriver, AsyncGraphDatabase, AsyncSession, AsyncTransaction
from neo4j.exceptions import (
    AuthError,
    ClientError,
    ConfigurationError,
    ConnectionPoolError,
    ConstraintError,
    Neo4jError,
    ServiceUnavailable,
    SessionExpired,
    TransientError,
)

from errorreplay_server.domain.errors import DomainError, NotFound, StampTaken, StoreUnavailable
from errorreplay_server.domain.model import (
    CaptureOutcome,
    Change,
    ChangeKind,
    Dependency,
    ErrorContext,
    ErrorFilter,
    ErrorGroup,
    ErrorSnapshot,
    GroupStatus,
    Micros,
    NewError,
    Page,
    Resource,
    Topology,
    idempotency_key,
    nearest,
)
from errorreplay_server.domain.words import words
from errorreplay_server.settings import Neo4jSettings
from errorreplay_server.store import codec
from errorreplay_server.store.base import SEARCH_COUNT_LIMIT, TopologyBounds

# Shared with the SQLite store, so that both write and read rows and list group resources the same way.
from errorreplay_server.store.codec import (
    MAX_GROUP_RESOURCES_LISTED,
    error_columns,
    group_from_row,
    link_from_row,
    snapshot_from_row,
)
from errorreplay_server.store.core import (
    DEPENDENCIES,
    DEPENDENTS,
    BatchWriter,
    CapturePlan,
    StoreCore,
    StoredState,
    WriteJob,
    bounded_total,
    rollup_counts,
    run_walk_async,
    runs,
    topology,
    walk_topology,
)
from errorreplay_server.store.neo4j_dialect import NEO4J, Dialect, detect
from errorreplay_server.store.pagination import PageTokens, error_key, filter_digest, new_key

log = logging.getLogger(__name__)
R = TypeVar("R")

BOLT_SCHEMES = ("bolt", "bolt+s", "bolt+ssc", "neo4j", "neo4j+s", "neo4j+ssc")
# A refused connection fails at once; this bounds a black-holed host.
CONNECTION_TIMEOUT_SECONDS = 3.0
CONNECTION_ACQUISITION_TIMEOUT_SECONDS = 10.0
# Retries after a lost connection or a transient error. A pooled connection that died with a
# restarted server fails once and is replaced; a server that is down fails within about a second.
RETRY_DELAYS_SECONDS = (0.05, 0.25, 0.75)
# Writes that conflict with another writer's (DeadlockDetected, a concurrent change to the same
# record: several replicas updating one group) are retried this often more, each after a random
# wait of up to CONFLICT_BACKOFF_SECONDS.
CONFLICT_RETRIES = 10
# Captures refused by a unique constraint that another replica's concurrent capture won (the same
# request id, or the same new tag, resource or group) are run again this often.
CONSTRAINT_RACE_RETRIES = 3
# What a unique-constraint failure on an error's received_at names (Neo4j: the constraint's
# name; ArcadeDB: its index, 'ErrorSnapshot[received_at]').
STAMP_CONSTRAINT = "received_at"
CONFLICT_BACKOFF_SECONDS = 0.05

_UNAVAILABLE: tuple[type[BaseException], ...] = (
    ServiceUnavailable,  # includes IncompleteCommit, Routing/Read/WriteServiceUnavailable
    SessionExpired,
    TransientError,  # includes DatabaseUnavailable
    ConnectionPoolError,  # includes the acquisition timeout
    OSError,
    asyncio.TimeoutError,
)

# --- schema ---------------------------------------------------------------------------------------
# Neo4j 5 syntax, idempotent. Unique constraints carry their own index.
_CONSTRAINTS = (
    "CREATE CONSTRAINT errorreplay_error_id IF NOT EXISTS FOR (e:ErrorSnapshot) REQUIRE e.error_id IS UNIQUE",
    "CREATE CONSTRAINT errorreplay_error_request_id IF NOT EXISTS FOR (e:ErrorSnapshot) REQUIRE e.request_id IS UNIQUE",
    "CREATE CONSTRAINT errorreplay_error_received_at IF NOT EXISTS"
    " FOR (e:ErrorSnapshot) REQUIRE e.received_at IS UNIQUE",
    "CREATE CONSTRAINT errorreplay_group_id IF NOT EXISTS FOR (g:ErrorGroup) REQUIRE g.group_id IS UNIQUE",
    "CREATE CONSTRAINT errorreplay_resource_id IF NOT EXISTS FOR (r:Resource) REQUIRE r.id IS UNIQUE",
    "CREATE CONSTRAINT errorreplay_change_id IF NOT EXISTS FOR (c:Change) REQUIRE c.change_id IS UNIQUE",
    "CREATE CONSTRAINT errorreplay_tag IF NOT EXISTS FOR (t:Tag) REQUIRE (t.key, t.value) IS UNIQUE",
    "CREATE CONSTRAINT errorreplay_meta_name IF NOT EXISTS FOR (m:ErrorReplayMeta) REQUIRE m.name IS UNIQUE",
    "CREATE CONSTRAINT errorreplay_rollup IF NOT EXISTS"
    " FOR (x:StatisticsRollup) REQUIRE (x.hour, x.dimension, x.key) IS UNIQUE",
)
# The singleton that holds the database's signing key for page tokens and cursors (pagination.py).
_TOKEN_KEY = "MERGE (m:ErrorReplayMeta {name: 'token_key'}) ON CREATE SET m.value = $value RETURN m.value"
# Every property a search filters or sorts on.
_INDEXES = (
    "CREATE INDEX errorreplay_error_time IF NOT EXISTS FOR (e:ErrorSnapshot) ON (e.occurred_at, e.received_at)",
    "CREATE INDEX errorreplay_error_occurred_at IF NOT EXISTS FOR (e:ErrorSnapshot) ON (e.occurred_at)",
    "CREATE INDEX errorreplay_error_severity IF NOT EXISTS FOR (e:ErrorSnapshot) ON (e.severity)",
    "CREATE INDEX errorreplay_error_source IF NOT EXISTS FOR (e:ErrorSnapshot) ON (e.source)",
    "CREATE INDEX errorreplay_error_resource IF NOT EXISTS FOR (e:ErrorSnapshot) ON (e.resource_id)",
    "CREATE INDEX errorreplay_error_resource_type IF NOT EXISTS FOR (e:ErrorSnapshot) ON (e.resource_type)",
    "CREATE INDEX errorreplay_error_type IF NOT EXISTS FOR (e:ErrorSnapshot) ON (e.error_type)",
    "CREATE INDEX errorreplay_error_correlation IF NOT EXISTS FOR (e:ErrorSnapshot) ON (e.correlation_id)",
    "CREATE INDEX errorreplay_error_trace IF NOT EXISTS FOR (e:ErrorSnapshot) ON (e.trace_id)",
    "CREATE INDEX errorreplay_error_group IF NOT EXISTS FOR (e:ErrorSnapshot) ON (e.group_id)",
    "CREATE INDEX errorreplay_error_service IF NOT EXISTS FOR (e:ErrorSnapshot) ON (e.service)",
    "CREATE INDEX errorreplay_error_environment IF NOT EXISTS FOR (e:ErrorSnapshot) ON (e.environment)",
    "CREATE INDEX errorreplay_group_status IF NOT EXISTS FOR (g:ErrorGroup) ON (g.status)",
    "CREATE INDEX errorreplay_group_last_seen IF NOT EXISTS FOR (g:ErrorGroup) ON (g.last_seen, g.group_id)",
    "CREATE INDEX errorreplay_group_count IF NOT EXISTS FOR (g:ErrorGroup) ON (g.count, g.group_id)",
    # Set (to received_at) only while the context has a PENDING source: the index holds the backlog only.
    "CREATE INDEX errorreplay_error_context_pending IF NOT EXISTS FOR (e:ErrorSnapshot) ON (e.context_pending_at)",
    "CREATE INDEX errorreplay_change_time IF NOT EXISTS FOR (c:Change) ON (c.occurred_at)",
    "CREATE INDEX errorreplay_change_resource IF NOT EXISTS FOR (c:Change) ON (c.resource_id)",
    "CREATE INDEX errorreplay_rollup_hour IF NOT EXISTS FOR (x:StatisticsRollup) ON (x.hour)",
)

# --- errors ---------------------------------------------------------------------------------------
# The column order of sqlite.snapshot_from_row, so both stores decode a snapshot with one function.
_ERROR_ROW = (
    "[e.error_id, e.request_id, e.group_id, e.fingerprint, e.received_at, e.occurred_at, e.severity, e.source,"
    " coalesce(e.resource_id, ''), coalesce(e.resource_type, ''), coalesce(e.service, ''),"
    " coalesce(e.environment, ''), coalesce(e.error_type, ''), coalesce(e.correlation_id, ''),"
    " coalesce(e.trace_id, ''), e.message, e.details, e.context] AS row"
)
_LINK_ROW = (
    "[e.error_id, e.group_id, e.received_at, e.occurred_at, e.severity, e.source, coalesce(e.resource_id, ''),"
    " coalesce(e.correlation_id, ''), coalesce(e.trace_id, '')] AS row"
)
_OPTIONAL_ERROR_STRINGS = (
    "request_id",
    "resource_id",
    "resource_type",
    "service",
    "environment",
    "error_type",
    "correlation_id",
    "trace_id",
)

# One read answers both questions the capture simulation needs: which request ids are stored
# already, and the status of each group the captures touch. On a retry it also finds the errors
# a lost COMMIT may have stored after all.
_CAPTURE_LOOKUP = (
    f"UNWIND $request_ids AS rid MATCH (e:ErrorSnapshot {{request_id: rid}}) RETURN 'request' AS kind, {_ERROR_ROW}"
    " UNION ALL"
    " UNWIND $group_ids AS gid MATCH (g:ErrorGroup {group_id: gid})"
    " RETURN 'group' AS kind, [g.group_id, g.status] AS row"
    " UNION ALL"
    f" UNWIND $error_ids AS eid MATCH (e:ErrorSnapshot {{error_id: eid}}) RETURN 'error' AS kind, {_ERROR_ROW}"
)
_UPSERT_GROUPS = """
UNWIND $groups AS g
MERGE (grp:ErrorGroup {group_id: g.group_id})
ON CREATE SET grp.title = g.title, grp.error_type = g.error_type, grp.count = 0,
    grp.first_seen = g.first_seen, grp.last_seen = g.last_seen, grp.status = $open, grp.regression = false,
    grp.representative_error_id = g.representative_error_id, grp.max_severity = g.max_severity
SET grp.count = grp.count + g.count,
    grp.first_seen = CASE WHEN g.first_seen < grp.first_seen THEN g.first_seen ELSE grp.first_seen END,
    grp.last_seen = CASE WHEN g.last_seen > grp.last_seen THEN g.last_seen ELSE grp.last_seen END,
    grp.max_severity = CASE WHEN g.max_severity > grp.max_severity THEN g.max_severity ELSE grp.max_severity END,
    grp.status = CASE WHEN g.reopen THEN $open ELSE grp.status END,
    grp.regression = CASE WHEN g.reopen THEN true ELSE grp.regression END
"""
_CREATE_ERRORS = """
UNWIND $rows AS row
MATCH (g:ErrorGroup {group_id: row.props.group_id})
CREATE (e:ErrorSnapshot)-[:IN_GROUP]->(g)
SET e = row.props
FOREACH (kv IN row.tags |
    MERGE (t:Tag {key: kv[0], value: kv[1]})
    CREATE (e)-[:TAGGED]->(t))
FOREACH (rid IN row.resource |
    MERGE (r:Resource {id: rid})
    ON CREATE SET r.type = '', r.name = '', r.labels_json = '{}', r.implicit = true
    CREATE (e)-[:OCCURRED_ON]->(r)
    MERGE (g)-[:AFFECTS]->(r))
"""

# Hourly counts per dimension (store/core.py rollup_counts), kept at capture as in the SQLite store:
# statistics over whole hours read these, not the errors.
_ADD_ROLLUPS = """
UNWIND $rollups AS r
MERGE (x:StatisticsRollup {hour: r[0], dimension: r[1], key: r[2]})
ON CREATE SET x.count = 0
SET x.count = x.count + r[3]
"""
# A database without this marker (written before rollups) gets them counted from its errors, in the
# transaction that creates the marker: what rollups there are is replaced by the count. A replica
# that finds the marker made by another counts nothing.
_ROLLUPS_MARKER = (
    "MERGE (m:ErrorReplayMeta {name: 'statistics_rollups'}) ON CREATE SET m.value = $token RETURN m.value = $token"
)
_ROLLUP_SOURCE_ROWS = (
    "MATCH (e:ErrorSnapshot) RETURN e.occurred_at, e.severity, e.source, coalesce(e.resource_id, ''),"
    " coalesce(e.resource_type, ''), coalesce(e.error_type, ''), e.group_id"
)
ROLLUP_WRITE_ROWS = 5000

# --- groups ---------------------------------------------------------------------------------------
_GROUP_ROW = (
    "[g.group_id, g.title, g.error_type, g.count, g.first_seen, g.last_seen, g.status, g.regression,"
    " g.representative_error_id, g.max_severity] AS row, [(g)-[:AFFECTS]->(r:Resource) | r.id] AS resources"
)

# --- topology -------------------------------------------------------------------------------------
_BARE_RESOURCE = "r.type = '', r.name = '', r.labels_json = '{}'"
_UPSERT_RESOURCES = """
UNWIND $resources AS res
MERGE (r:Resource {id: res.id})
SET r.type = res.type, r.name = res.name, r.labels_json = res.labels_json
REMOVE r.implicit
"""
_UPSERT_DEPENDENCIES = """
UNWIND $dependencies AS dep
MERGE (a:Resource {id: dep[0]})
ON CREATE SET a.type = '', a.name = '', a.labels_json = '{}'
MERGE (b:Resource {id: dep[1]})
ON CREATE SET b.type = '', b.name = '', b.labels_json = '{}'
REMOVE a.implicit, b.implicit
MERGE (a)-[:DEPENDS_ON]->(b)
"""
_NEIGHBOURS = {
    # The hops of core.walk_topology. LIMIT without ORDER BY: the query stops after enough rows
    # instead of reading a hub's every edge.
    DEPENDENCIES: "UNWIND $ids AS id MATCH (:Resource {id: id})-[:DEPENDS_ON]->(n:Resource)"
    " RETURN DISTINCT n.id LIMIT $limit",
    DEPENDENTS: "UNWIND $ids AS id MATCH (:Resource {id: id})<-[:DEPENDS_ON]-(n:Resource)"
    " RETURN DISTINCT n.id LIMIT $limit",
}


def _error_row(snap: ErrorSnapshot) -> dict[str, Any]:
    r = snap.report
    props = error_columns(snap)
    # domain/words.py: the one split that text search matches against, on every store.
    props["words"] = words(r.message)
    if codec.context_pending(snap.context):
        props["context_pending_at"] = snap.received_at
    for name in _OPTIONAL_ERROR_STRINGS:
        if not props[name]:
            del props[name]
    return {
        "props": props,
        "tags": [[k, v] for k, v in r.tags.items()],
        "resource": [r.resource_id] if r.resource_id else [],
    }


@dataclass(slots=True)
class _Query:
    """A MATCH … WHERE over errors, with its parameters."""

    tags: list[str]  # one `(:Tag {…})` node pattern per tag filter
    clauses: list[str]
    params: dict[str, Any]

    def match(self, *extra_clauses: str) -> str:
        # Tags first, chained through e: ArcadeDB plans from the first pattern and counts a
        # tag-anchored chain 5-25x faster than `(e:ErrorSnapshot), (e)-[:TAGGED]->(…)` (see
        # neo4j_dialect). Neo4j's planner is indifferent to the order.
        if not self.tags:
            pattern = "(e:ErrorSnapshot)"
        else:
            pattern = f"{self.tags[0]}<-[:TAGGED]-(e:ErrorSnapshot)"
            if len(self.tags) > 1:
                pattern += f"-[:TAGGED]->{self.tags[1]}"
            pattern = ", ".join([pattern, *(f"(e)-[:TAGGED]->{t}" for t in self.tags[2:])])
        where = [*self.clauses, *extra_clauses]
        return f"MATCH {pattern}" + (" WHERE " + " AND ".join(where) if where else "")


def _where(flt: ErrorFilter) -> _Query:
    """The filter as Cypher: values only ever travel as parameters named by position."""
    q = _Query([], [], {})

    def param(name: str, value: Any) -> str:
        q.params[name] = value
        return "$" + name

    if flt.severities:
        q.clauses.append(f"e.severity IN {param('severities', [int(s) for s in flt.severities])}")
    if flt.min_severity:
        q.clauses.append(f"e.severity >= {param('min_severity', int(flt.min_severity))}")
    if flt.sources:
        q.clauses.append(f"e.source IN {param('sources', [int(s) for s in flt.sources])}")
    if flt.resource_ids:
        q.clauses.append(f"e.resource_id IN {param('resource_ids', list(flt.resource_ids))}")
    for prop, value in (
        ("resource_type", flt.resource_type),
        ("error_type", flt.error_type),
        ("correlation_id", flt.correlation_id),
        ("trace_id", flt.trace_id),
        ("group_id", flt.group_id),
        ("service", flt.service),
        ("environment", flt.environment),
    ):
        if value:
            q.clauses.append(f"e.{prop} = {param(prop, value)}")
    for i, (key, value) in enumerate(sorted(flt.tags.items())):
        k, v = param(f"tag_key_{i}", key), param(f"tag_value_{i}", value)
        q.tags.append(f"(:Tag {{key: {k}, value: {v}}})")
    if words(flt.text):
        q.clauses.append(f"all(w IN {param('words', words(flt.text))} WHERE w IN e.words)")
    if flt.start_time is not None:
        q.clauses.append(f"e.occurred_at >= {param('start_time', flt.start_time)}")
    if flt.end_time is not None:
        q.clauses.append(f"e.occurred_at <= {param('end_time', flt.end_time)}")
    if flt.exclude_group_ids:
        q.clauses.append(f"NOT e.group_id IN {param('exclude_group_ids', list(flt.exclude_group_ids))}")
    return q


def _is_unavailable(exc: BaseException) -> bool:
    return isinstance(exc, _UNAVAILABLE)


def _is_conflict(exc: TransientError) -> bool:
    """A transaction lost to a concurrent one (Neo4j and ArcadeDB both say DeadlockDetected)."""
    code = exc.code or ""
    return "DeadlockDetected" in code or "LockClient" in code or "Outdated" in code


async def _rows(runner: AsyncSession | AsyncTransaction, query: str, **params: Any) -> list[list[Any]]:
    result = await runner.run(query, params)
    return await result.values()


class Neo4jStore(StoreCore):
    """The Store over Bolt (Neo4j 5, or ArcadeDB's Bolt endpoint in the tests)."""

    def __init__(self, settings: Neo4jSettings, topology_bounds: TopologyBounds | None = None) -> None:
        self._settings = settings
        self._bounds = topology_bounds or TopologyBounds()
        self._database = settings.database or None
        self._driver: AsyncDriver | None = None
        self._dialect: Dialect = NEO4J
        self._writer: BatchWriter | None = None
        # Shared by every session, so that a read sees every write acknowledged before it, also
        # when a cluster routes reads to a follower (the SQLite store's read-your-writes).
        self._bookmarks = AsyncGraphDatabase.bookmark_manager()
        self._tokens = PageTokens(b"")

    @property
    def dialect(self) -> Dialect:
        return self._dialect

    # --- lifecycle ----------------------------------------------------------------------------
    async def start(self) -> None:
        uri = self._settings.uri
        if urlsplit(uri).scheme not in BOLT_SCHEMES:
            # The driver also takes http:// (its Query API preview), which is not what we speak.
            raise StoreUnavailable(f"NEO4J_URI {uri!r} is not a Bolt URI (schemes: {', '.join(BOLT_SCHEMES)})")
        try:
            driver = AsyncGraphDatabase.driver(
                uri,
                auth=(self._settings.username, self._settings.password),
                connection_timeout=CONNECTION_TIMEOUT_SECONDS,
                connection_acquisition_timeout=CONNECTION_ACQUISITION_TIMEOUT_SECONDS,
            )
        except (ConfigurationError, ValueError) as exc:
            raise StoreUnavailable(f"NEO4J_URI {uri!r} is not a usable Bolt URI: {exc}") from exc
        try:
            await driver.verify_connectivity()
            info = await driver.get_server_info()
            self._dialect = detect(info.agent or "")
            async with driver.session(database=self._database) as session:
                await self._create_schema(session)
                await self._build_rollups(session)
                # Hex: every Bolt server takes a string; not all take bytes.
                stored = await (await session.run(_TOKEN_KEY, value=new_key().hex())).single()
                assert stored is not None
                self._token_key = bytes.fromhex(stored[0])
                self._tokens = PageTokens(self._token_key)
        except BaseException as exc:
            await driver.close()
            raise self._start_failure(exc) from exc
        self._driver = driver
        self._writer = BatchWriter(self._run_with_retries, "neo4j-writer")
        self._writer.start()
        log.info("neo4j store at %s (database %s, %s)", uri, self._database or "default", self._dialect.name)

    def _start_failure(self, exc: BaseException) -> BaseException:
        uri = self._settings.uri
        if isinstance(exc, AuthError):
            return StoreUnavailable(f"Neo4j at {uri} refused the credentials of user {self._settings.username!r}")
        if isinstance(exc, ClientError) and exc.code == "Neo.ClientError.Database.DatabaseNotFound":
            return StoreUnavailable(f"Neo4j at {uri} has no database {self._database!r} (NEO4J_DATABASE)")
        if isinstance(exc, Neo4jError):
            return StoreUnavailable(f"cannot set up the errorreplay schema in Neo4j at {uri}: {exc.message}")
        if _is_unavailable(exc):
            return StoreUnavailable(f"cannot reach Neo4j at {uri}: {exc}")
        return exc

    async def _create_schema(self, session: AsyncSession) -> None:
        # Schema changes cannot share a transaction with data, nor with each other on Neo4j.
        for statement in (*_CONSTRAINTS, *_INDEXES):
            await (await session.run(statement)).consume()

    async def _build_rollups(self, session: AsyncSession) -> None:
        """Statistics rollups counted from the errors, once: for a database written before them."""
        tx = await session.begin_transaction()
        try:
            marker = await (await tx.run(_ROLLUPS_MARKER, token=new_key().hex())).single()
            if marker is not None and marker[0]:
                await (await tx.run("MATCH (x:StatisticsRollup) DETACH DELETE x")).consume()
                # Streamed and counted a chunk at a time: a million errors never sit in memory at once.
                counts: Counter[tuple[int, int, str]] = Counter()
                chunk: list[list[Any]] = []
                async for record in await tx.run(_ROLLUP_SOURCE_ROWS):
                    chunk.append(record.values())
                    if len(chunk) == ROLLUP_WRITE_ROWS:
                        counts.update(rollup_counts(chunk))
                        chunk.clear()
                counts.update(rollup_counts(chunk))
                rows = [[*key, n] for key, n in counts.items()]
                for start in range(0, len(rows), ROLLUP_WRITE_ROWS):
                    await (await tx.run(_ADD_ROLLUPS, rollups=rows[start : start + ROLLUP_WRITE_ROWS])).consume()
                if rows:
                    log.warning("built statistics rollups for the errors stored before them (%d rows)", len(rows))
            await tx.commit()
        except (TransientError, ConstraintError):
            # Another replica made the marker at the same moment: its commit holds the rollups.
            log.info("another replica built the statistics rollups")
        finally:
            if not tx.closed():
                await tx.close()

    async def close(self) -> None:
        if self._writer is not None:
            await self._writer.close()
            self._writer = None
        if self._driver is not None:
            await self._driver.close()
            self._driver = None

    # --- plumbing -----------------------------------------------------------------------------
    def _unavailable(self, exc: BaseException) -> StoreUnavailable:
        # The client sees the message (UNAVAILABLE); the address and the cause go to the log only.
        log.warning("Neo4j at %s is unavailable: %s", self._settings.uri, exc)
        return StoreUnavailable(f"the Neo4j store is unavailable ({exc.__class__.__name__})")

    def _require_driver(self) -> AsyncDriver:
        if self._driver is None:
            raise StoreUnavailable("the Neo4j store is not open")
        return self._driver

    async def _read(self, work: Callable[[AsyncSession], Awaitable[R]]) -> R:
        """Runs read-only work in auto-commit queries, retrying a lost connection briefly."""
        driver = self._require_driver()
        for delay in (*RETRY_DELAYS_SECONDS, None):
            try:
                async with driver.session(
                    database=self._database,
                    default_access_mode=neo4j.READ_ACCESS,
                    bookmark_manager=self._bookmarks,
                ) as session:
                    return await work(session)
            except Exception as exc:
                if not _is_unavailable(exc):
                    raise
                if delay is None:
                    raise self._unavailable(exc) from exc
                log.debug("neo4j read failed, retrying: %s", exc)
                await asyncio.sleep(delay)
        raise AssertionError("unreachable")

    async def _fetch(self, query: str, **params: Any) -> list[list[Any]]:
        """One read query's rows."""
        return await self._read(lambda session: _rows(session, query, **params))

    async def _write(self, work: Callable[[AsyncTransaction], Awaitable[R]]) -> R:
        if self._writer is None:
            raise StoreUnavailable("the Neo4j store is not open")
        return await self._writer.write(work)

    async def _run_with_retries(self, batch: list[WriteJob]) -> list[Any]:
        """The batch in one transaction (core.BatchWriter), retried after a lost connection or a conflict."""
        driver = self._require_driver()
        # Another server (replica) committed, between our reads and our writes, a capture with one
        # of these request ids, or the same new tag, resource or group node (MERGE is not atomic
        # across transactions): a unique constraint refused ours. Run it once more: the lookup now
        # finds the winning capture (this one answers as its duplicate) and MERGE the nodes. Each
        # kind of node can be lost once, so a few times at most.
        races_left = CONSTRAINT_RACE_RETRIES if any(job.captures for job in batch) else 0
        conflicts_left = CONFLICT_RETRIES
        delays = iter((*RETRY_DELAYS_SECONDS, None))
        delay = next(delays)
        # Only after a lost connection may an earlier attempt have committed (its reply lost).
        commit_uncertain = False
        while True:
            try:
                async with driver.session(database=self._database, bookmark_manager=self._bookmarks) as session:
                    tx = await session.begin_transaction()
                    try:
                        results = await self._apply(tx, batch, retry=commit_uncertain)
                        await tx.commit()
                    except BaseException:
                        # Roll back; on a dead connection that fails too, and the first error is the one to report.
                        with contextlib.suppress(Exception):
                            await tx.close()
                        raise
                    return results
            except ConstraintError as exc:
                if STAMP_CONSTRAINT in str(exc):
                    # The same stamp again would fail again: the capture layer must stamp anew.
                    raise StampTaken("another replica committed a capture with the same received_at") from exc
                if races_left <= 0:
                    raise
                races_left -= 1
                continue
            except TransientError as exc:
                if not _is_conflict(exc) or conflicts_left <= 0:
                    if delay is None:
                        raise self._unavailable(exc) from exc
                    commit_uncertain = True
                    await asyncio.sleep(delay)
                    delay = next(delays)
                    continue
                # Another writer (another replica's writer) changed the same records, such as one
                # group's counters: wait a random moment so the two do not collide again.
                conflicts_left -= 1
                log.debug("neo4j write conflicted, retrying: %s", exc)
                await asyncio.sleep(random.uniform(0.005, CONFLICT_BACKOFF_SECONDS))
            except Exception as exc:
                if not _is_unavailable(exc):
                    raise
                if delay is None:
                    raise self._unavailable(exc) from exc
                log.debug("neo4j write failed, retrying: %s", exc)
                commit_uncertain = True
                await asyncio.sleep(delay)
                delay = next(delays)

    async def _apply(self, tx: AsyncTransaction, batch: list[WriteJob], *, retry: bool) -> list[Any]:
        """Runs the jobs in order; consecutive captures share their statements.

        A domain error (NotFound) is a job's result, not the batch's failure: such jobs check
        before they write, so they leave nothing behind.
        """
        results: list[Any] = []
        for captures, run in runs(batch, lambda job: job.captures is not None):
            if captures:
                results.extend(await self._capture_segment(tx, [job.captures or [] for job in run], retry))
                continue
            work = run[0].work
            assert work is not None
            try:
                results.append(await work(tx))
            except DomainError as exc:
                results.append(exc)
        return results

    # --- errors -------------------------------------------------------------------------------
    async def capture(self, errors: Sequence[NewError]) -> list[CaptureOutcome]:
        items = list(errors)
        if not items:
            return []
        if self._writer is None:
            raise StoreUnavailable("the Neo4j store is not open")
        return await self._writer.capture(items)

    async def _capture_segment(
        self, tx: AsyncTransaction, jobs: list[list[NewError]], retry: bool
    ) -> list[list[CaptureOutcome]]:
        # The request_id property holds the idempotency key: (scope, request_id) in one string.
        # Only a retry can find its own errors: the COMMIT of the failed attempt may have landed.
        lookups = CapturePlan.lookups(jobs, retry=retry)
        stored = StoredState()
        for kind, row in await _rows(
            tx,
            _CAPTURE_LOOKUP,
            request_ids=lookups.request_ids,
            group_ids=lookups.group_ids,
            error_ids=lookups.error_ids,
        ):
            if kind == "group":
                stored.statuses[row[0]] = row[1]
            elif kind == "request":
                snap = snapshot_from_row(row)
                stored.by_request[idempotency_key(snap)] = snap
            else:
                snap = snapshot_from_row(row)
                stored.by_id[snap.error_id] = snap
        plan = CapturePlan.build(jobs, stored)
        if plan.groups:
            # The affected resources are written with the errors (_CREATE_ERRORS), not here.
            groups = [{k: v for k, v in asdict(g).items() if k != "resources"} for g in plan.groups.values()]
            await (await tx.run(_UPSERT_GROUPS, groups=groups, open=int(GroupStatus.OPEN))).consume()
        if plan.fresh:
            await (await tx.run(_CREATE_ERRORS, rows=[_error_row(i.snapshot) for i in plan.fresh])).consume()
            await (await tx.run(_ADD_ROLLUPS, rollups=plan.rollup_rows())).consume()
        return plan.outcomes

    async def _errors_by_id(self, ids: list[str]) -> list[ErrorSnapshot]:
        query = f"UNWIND $ids AS id MATCH (e:ErrorSnapshot {{error_id: id}}) RETURN {_ERROR_ROW}"
        return [snapshot_from_row(row) for row in _first(await self._fetch(query, ids=ids))]

    async def search_errors(
        self,
        flt: ErrorFilter,
        page_size: int,
        page_token: str = "",
        *,
        oldest_first: bool = False,
        with_total: bool = True,
        count_limit: int = SEARCH_COUNT_LIMIT,
    ) -> Page[ErrorSnapshot]:
        digest = filter_digest(flt, oldest_first)
        after = self._tokens.decode(page_token, digest, (int, int))
        q = _where(flt)
        keyset: list[str] = []
        params = dict(q.params)
        if after is not None:
            params["after_occurred_at"], params["after_received_at"] = after
            op = ">" if oldest_first else "<"
            keyset.append(
                f"e.occurred_at {op}= $after_occurred_at AND (e.occurred_at {op} $after_occurred_at"
                f" OR e.received_at {op} $after_received_at)"
            )
        direction = "" if oldest_first else " DESC"
        query = (
            q.match(*keyset)
            + f" WITH e ORDER BY e.occurred_at{direction}, e.received_at{direction} LIMIT $limit RETURN {_ERROR_ROW}"
        )
        count_query = q.match() + " WITH e LIMIT $count_limit RETURN count(e)"

        async def run(session: AsyncSession) -> Page[ErrorSnapshot]:
            rows = _first(await _rows(session, query, **params, limit=page_size + 1))
            items, token = self._tokens.page([snapshot_from_row(row) for row in rows], page_size, digest, error_key)
            if not with_total:
                return Page(items, token)
            if after is None and not token:
                return Page(items, token, len(items))  # the first page holds every match
            counted = await _rows(session, count_query, **q.params, count_limit=count_limit + 1)
            return Page(items, token, *bounded_total(int(counted[0][0]), count_limit))

        return await self._read(run)

    async def errors_after(self, received_after: Micros, limit: int) -> list[ErrorSnapshot]:
        return await self._errors_in_order_of("received_at", received_after, limit)

    async def _errors_in_order_of(self, prop: str, after: Micros, limit: int) -> list[ErrorSnapshot]:
        """Errors whose `prop` (a constant property name, never user input) is past `after`, in its order."""
        query = (
            f"MATCH (e:ErrorSnapshot) WHERE e.{prop} > $after WITH e ORDER BY e.{prop} LIMIT $limit RETURN {_ERROR_ROW}"
        )
        return [snapshot_from_row(row) for row in _first(await self._fetch(query, after=after, limit=limit))]

    async def related_errors(
        self,
        error: ErrorSnapshot,
        start: Micros,
        end: Micros,
        resource_ids: Sequence[str],
        limit: int,
        *,
        documents: bool = True,
    ) -> list[ErrorSnapshot]:
        r = error.report
        links: list[str] = []
        pivot = r.occurred_at
        params: dict[str, Any] = {
            "start": start,
            "end": end,
            "pivot": pivot,
            "error_id": error.error_id,
            "limit": limit,
        }
        if r.correlation_id:
            links.append("e.correlation_id = $correlation_id")
            params["correlation_id"] = r.correlation_id
        if r.trace_id:
            links.append("e.trace_id = $trace_id")
            params["trace_id"] = r.trace_id
        resources = [x for x in dict.fromkeys([r.resource_id, *resource_ids]) if x]
        if resources:
            links.append("e.resource_id IN $resource_ids")
            params["resource_ids"] = resources
        if not links:
            return []
        query = (
            "MATCH (e:ErrorSnapshot) WHERE e.occurred_at >= $start AND e.occurred_at <= $end"
            f" AND e.error_id <> $error_id AND ({' OR '.join(links)})"
            # The nearest to the pivot are kept, in store/core.py `nearness` order.
            " WITH e ORDER BY abs(e.occurred_at - $pivot), e.occurred_at,"
            " CASE WHEN e.occurred_at > $pivot THEN e.received_at ELSE -e.received_at END LIMIT $limit"
            f" RETURN {_ERROR_ROW if documents else _LINK_ROW}"
        )
        decode = snapshot_from_row if documents else link_from_row

        async def run(session: AsyncSession) -> list[ErrorSnapshot]:
            rows = _first(await _rows(session, query, **params))
            return nearest((decode(row) for row in rows), pivot, limit)

        return await self._read(run)

    async def update_context(self, error_id: str, context: ErrorContext) -> None:
        doc = codec.context_to_json(context)

        async def work(tx: AsyncTransaction) -> None:
            rows = await _rows(
                tx,
                "MATCH (e:ErrorSnapshot {error_id: $error_id})"
                " SET e.context = $context,"
                " e.context_pending_at = CASE WHEN $pending THEN e.received_at ELSE null END"
                " RETURN count(e)",
                error_id=error_id,
                context=doc,
                pending=codec.context_pending(context),
            )
            if not rows or rows[0][0] == 0:
                raise NotFound("error", error_id)

        await self._write(work)

    async def pending_context_errors(self, received_after: Micros, limit: int) -> list[ErrorSnapshot]:
        return await self._errors_in_order_of("context_pending_at", received_after, limit)

    async def _rollups(
        self, first_hour: Micros, end_hour: Micros, dimension: int | None = None, key: str = ""
    ) -> list[Any]:
        query = (
            "MATCH (x:StatisticsRollup) WHERE x.hour >= $first AND x.hour < $end"
            + (" AND x.dimension = $dimension" if dimension is not None else "")
            + (" AND x.key = $key" if key else "")
            + " RETURN x.hour, x.dimension, x.key, x.count"
        )
        return await self._fetch(query, first=first_hour, end=end_hour, dimension=dimension, key=key)

    async def _group_titles(self, group_ids: list[str]) -> dict[str, tuple[str, int]]:
        query = "UNWIND $ids AS gid MATCH (g:ErrorGroup {group_id: gid}) RETURN gid, g.title, g.status"
        return {gid: (title, status) for gid, title, status in await self._fetch(query, ids=group_ids)}

    async def _count_by(
        self,
        bounded: ErrorFilter,
        columns: Sequence[str],
        buckets: tuple[Micros, Micros] | None = None,
        only_groups: Sequence[str] = (),
    ) -> list[Any]:
        q = _where(bounded)
        keys = [f"coalesce(e.{c}, '')" if c in _OPTIONAL_ERROR_STRINGS else f"e.{c}" for c in columns]
        params = dict(q.params)
        if buckets:
            keys.append("(e.occurred_at - $bucket_start) / $bucket_size")
            params["bucket_start"], params["bucket_size"] = buckets
        only = []
        if only_groups:
            only.append("e.group_id IN $only_groups")
            params["only_groups"] = list(only_groups)
        # Cypher groups by the returned values that are not aggregates.
        returns = ", ".join(f"{key} AS k{i}" for i, key in enumerate(keys))
        return await self._fetch(f"{q.match(*only)} RETURN {returns}, count(*) AS n", **params)

    async def count_errors(self) -> int:
        return int((await self._fetch("MATCH (e:ErrorSnapshot) RETURN count(e)"))[0][0])

    async def latest_received_at(self) -> Micros:
        rows = await self._fetch(
            "MATCH (e:ErrorSnapshot) WHERE e.received_at IS NOT NULL"
            " RETURN e.received_at ORDER BY e.received_at DESC LIMIT 1"
        )
        return int(rows[0][0]) if rows else 0

    # --- groups -------------------------------------------------------------------------------
    async def get_group(self, group_id: str) -> ErrorGroup:
        rows = await self._fetch(f"MATCH (g:ErrorGroup {{group_id: $id}}) RETURN {_GROUP_ROW}", id=group_id)
        if not rows:
            raise NotFound("group", group_id)
        return _group(rows[0])

    async def _groups(self, statuses: list[int], key: str, after: list[Any] | None, limit: int) -> list[ErrorGroup]:
        where: list[str] = []
        params: dict[str, Any] = {"limit": limit, "statuses": statuses}
        if statuses:
            where.append("g.status IN $statuses")
        if after is not None:
            where.append(f"g.{key} <= $after_key AND (g.{key} < $after_key OR g.group_id < $after_id)")
            params["after_key"], params["after_id"] = after
        query = (
            "MATCH (g:ErrorGroup)"
            + (f" WHERE {' AND '.join(where)}" if where else "")
            + f" WITH g ORDER BY g.{key} DESC, g.group_id DESC LIMIT $limit RETURN {_GROUP_ROW}"
        )
        return [_group(row) for row in await self._fetch(query, **params)]

    async def update_group_status(self, group_id: str, status: GroupStatus) -> ErrorGroup:
        async def work(tx: AsyncTransaction) -> ErrorGroup:
            rows = await _rows(
                tx,
                "MATCH (g:ErrorGroup {group_id: $id}) SET g.status = $status, g.regression = false"
                f" WITH g RETURN {_GROUP_ROW}",
                id=group_id,
                status=int(status),
            )
            if not rows:
                raise NotFound("group", group_id)
            return _group(rows[0])

        return await self._write(work)

    async def muted_group_ids(self) -> list[str]:
        query = "MATCH (g:ErrorGroup) WHERE g.status = $muted RETURN g.group_id"
        return _first(await self._fetch(query, muted=int(GroupStatus.MUTED)))

    # --- topology and changes -----------------------------------------------------------------
    async def upsert_resources(
        self, resources: Sequence[Resource], dependencies: Sequence[Dependency]
    ) -> tuple[int, int]:
        res = [{"id": r.id, "type": r.type, "name": r.name, "labels_json": codec.dumps(r.labels)} for r in resources]
        deps = [[d.dependent_id, d.dependency_id] for d in dependencies]

        async def work(tx: AsyncTransaction) -> tuple[int, int]:
            if res:
                await (await tx.run(_UPSERT_RESOURCES, resources=res)).consume()
            if deps:
                await (await tx.run(_UPSERT_DEPENDENCIES, dependencies=deps)).consume()
            return len(res), len(deps)

        return await self._write(work)

    async def get_topology(self, resource_id: str, depth: int) -> Topology:
        max_edges = self._bounds.max_edges

        async def run(session: AsyncSession) -> Topology:
            found = await _rows(
                session,
                "MATCH (r:Resource {id: $id}) WHERE coalesce(r.implicit, false) = false RETURN r.id",
                id=resource_id,
            )
            if not found:
                raise NotFound("resource", resource_id)

            async def neighbours(direction: str, frontier: list[str], limit: int) -> list[str]:
                return _first(await _rows(session, _NEIGHBOURS[direction], ids=frontier, limit=limit))

            walk = walk_topology(resource_id, depth, self._bounds.max_neighbours_per_hop)
            ids, truncated = await run_walk_async(walk, neighbours)
            resources = await _rows(
                session,
                "UNWIND $ids AS id MATCH (r:Resource {id: id}) RETURN r.id AS id, r.type, r.name, r.labels_json",
                ids=ids,
            )
            edges = await _rows(
                session,
                "UNWIND $ids AS id MATCH (a:Resource {id: id})-[:DEPENDS_ON]->(b:Resource) WHERE b.id IN $ids"
                " RETURN a.id AS a, b.id AS b LIMIT $limit",
                ids=ids,
                limit=max_edges + 1,
            )
            return topology(resource_id, resources, edges, max_edges, truncated)

        return await self._read(run)

    async def record_change(self, change: Change) -> Change:
        doc = codec.to_doc(change)
        # The document's fields as properties, the metadata (a map) in the document only.
        params = {**{k: v for k, v in doc.items() if k != "metadata"}, "doc": codec.dumps(doc)}

        async def work(tx: AsyncTransaction) -> Change:
            await (
                await tx.run(
                    """MERGE (c:Change {change_id: $change_id})
                       SET c.kind = $kind, c.resource_id = $resource_id, c.occurred_at = $occurred_at,
                           c.version = $version, c.description = $description, c.author = $author, c.doc = $doc
                       WITH c
                       OPTIONAL MATCH (c)-[old:CHANGED]->(:Resource)
                       DELETE old""",
                    params,
                )
            ).consume()
            if change.resource_id:
                await (
                    await tx.run(
                        f"""MATCH (c:Change {{change_id: $change_id}})
                            MERGE (r:Resource {{id: $resource_id}})
                            ON CREATE SET {_BARE_RESOURCE}
                            REMOVE r.implicit
                            MERGE (c)-[:CHANGED]->(r)""",
                        change_id=change.change_id,
                        resource_id=change.resource_id,
                    )
                ).consume()
            return change

        return await self._write(work)

    async def list_changes(
        self,
        resource_ids: Sequence[str],
        start: Micros,
        end: Micros,
        kinds: Sequence[ChangeKind],
        limit: int,
    ) -> list[Change]:
        where = ["c.occurred_at >= $start", "c.occurred_at <= $end"]
        params: dict[str, Any] = {"start": start, "end": end, "limit": limit}
        if resource_ids:
            where.append("c.resource_id IN $resource_ids")
            params["resource_ids"] = list(resource_ids)
        if kinds:
            where.append("c.kind IN $kinds")
            params["kinds"] = [int(k) for k in kinds]
        query = (
            f"MATCH (c:Change) WHERE {' AND '.join(where)}"
            " WITH c ORDER BY c.occurred_at DESC, c.change_id LIMIT $limit RETURN c.doc"
        )
        return [codec.from_doc(Change, codec.loads(row[0])) for row in await self._fetch(query, **params)]


def _first(rows: list[list[Any]]) -> list[Any]:
    """The first column of each row (queries that return one `row` list)."""
    return [row[0] for row in rows]


def _group(record: list[Any]) -> ErrorGroup:
    row, resources = record
    return group_from_row(tuple(row), sorted(resources)[:MAX_GROUP_RESOURCES_LISTED])
