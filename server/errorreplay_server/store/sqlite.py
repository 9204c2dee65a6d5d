"""The embedded store: SQLite in WAL mode, one writer thread with grouped commits, reader threads.

Why this shape: a commit costs an fsync-ish WAL append whatever its size, so concurrent captures
are queued to the store's one writer (store/core.py BatchWriter), which runs all pending ones in a
single transaction on the thread that holds the writing connection and resolves every caller only
after COMMIT. Reads run on a small thread pool with their own connections (WAL
lets them read while the writer writes). No sqlite call ever runs on the event loop.
"""

from __future__ import annotations

import asyncio
import contextlib
import heapq
import logging
import sqlite3
import threading
from collections.abc import Callable, Collection, Iterable, Iterator, Mapping, Sequence
from concurrent import futures
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from operator import itemgetter
from pathlib import Path
from typing import Any, TypeVar

from errorreplay_server.domain.errors import DomainError, NotFound, StoreUnavailable
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
)
from errorreplay_server.domain.words import words
from errorreplay_server.store import codec
from errorreplay_server.store.base import SEARCH_COUNT_LIMIT, TopologyBounds
from errorreplay_server.store.codec import (
    ERROR_COLUMNS,
    LINK_COLUMNS,
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
    run_walk,
    runs,
    topology,
    walk_topology,
)
from errorreplay_server.store.pagination import PageTokens, error_key, filter_digest, new_key

log = logging.getLogger(__name__)
R = TypeVar("R")

READER_THREADS = 4
# Topology reads (capture-time correlation, enrichment, replay) run on their own threads, so that a
# burst of them can never take the threads that GetError, SearchErrors and ListRecentErrors need.
TOPOLOGY_READER_THREADS = 2
# On close, running reads are interrupted; this long is waited for their threads to notice.
READER_STOP_SECONDS = 2.0
# Above this many text matches a search walks the time index instead of sorting the matches.
TEXT_MATCHES_SCANNED_BY_TIME = 1000
# A related walk's rows start with their domain.model.nearness to the error (three columns).
NEARNESS_COLUMNS = 3
# A tag on more rows than this is checked row by row (a primary-key probe per candidate) rather
# than read into a list first: building a list of 50,000 ids costs more than the probes a page needs.
COMMON_TAG_ROWS = 2000
# Beyond this many ids an IN (...) list is split, to stay under SQLite's variable limit.
MAX_SQL_VARIABLES = 900

_SCHEMA = """
CREATE TABLE IF NOT EXISTS errors (
    seq INTEGER PRIMARY KEY,
    error_id TEXT NOT NULL UNIQUE,
    request_id TEXT UNIQUE,
    group_id TEXT NOT NULL,
    -- Equal to seq: the capture clock makes it unique and increasing, so it is the row id.
    received_at INTEGER NOT NULL,
    occurred_at INTEGER NOT NULL,
    severity INTEGER NOT NULL,
    source INTEGER NOT NULL,
    resource_id TEXT NOT NULL,
    resource_type TEXT NOT NULL,
    service TEXT NOT NULL,
    environment TEXT NOT NULL,
    error_type TEXT NOT NULL,
    correlation_id TEXT NOT NULL,
    trace_id TEXT NOT NULL
);
-- The documents live apart from the filtered columns: a filter that reads many rows then
-- touches ~100-byte rows, not ~1.5 KB ones, and far fewer pages.
CREATE TABLE IF NOT EXISTS error_docs (
    seq INTEGER PRIMARY KEY,
    fingerprint TEXT NOT NULL,
    message TEXT NOT NULL,
    details TEXT NOT NULL,
    context TEXT
);
CREATE INDEX IF NOT EXISTS errors_by_time ON errors (occurred_at, received_at);
CREATE INDEX IF NOT EXISTS errors_by_correlation ON errors (correlation_id, occurred_at, received_at)
    WHERE correlation_id != '';
CREATE INDEX IF NOT EXISTS errors_by_trace ON errors (trace_id, occurred_at, received_at) WHERE trace_id != '';
-- One index per filtered column, in time order for pages, ending with the small columns filters
-- combine most (severity, source, environment): SQLite tests those in the index and reads a row
-- only when they match, so ruling out 125,000 `error_type` rows for `environment` is an index
-- scan (9 ms at 1,000,000 errors), not 125,000 row reads (360 ms).
-- The resource index also holds the rest of LINK_COLUMNS: the related-errors walk (about 140
-- entries around an error at 1,000,000) reads it alone, without a row lookup per entry.
CREATE INDEX IF NOT EXISTS errors_by_resource
    ON errors (resource_id, occurred_at, received_at, severity, source, environment,
               error_id, group_id, correlation_id, trace_id);
CREATE INDEX IF NOT EXISTS errors_by_group
    ON errors (group_id, occurred_at, received_at, severity, source, environment);
CREATE INDEX IF NOT EXISTS errors_by_severity ON errors (severity, occurred_at, received_at, source, environment);
CREATE INDEX IF NOT EXISTS errors_by_type
    ON errors (error_type, occurred_at, received_at, severity, source, environment);
CREATE INDEX IF NOT EXISTS errors_by_resource_type
    ON errors (resource_type, occurred_at, received_at, severity, source, environment);
CREATE INDEX IF NOT EXISTS errors_by_service
    ON errors (service, occurred_at, received_at, severity, source, environment);
CREATE INDEX IF NOT EXISTS errors_by_environment ON errors (environment, occurred_at, received_at, severity, source);
CREATE INDEX IF NOT EXISTS errors_by_source ON errors (source, occurred_at, received_at, severity, environment);
-- Covers GetStatistics over a time range: one sequential index scan, no row lookups.
CREATE INDEX IF NOT EXISTS errors_for_statistics
    ON errors (occurred_at, severity, source, resource_type, resource_id, error_type, group_id);
CREATE TABLE IF NOT EXISTS error_tags (
    seq INTEGER NOT NULL,
    key TEXT NOT NULL,
    value TEXT NOT NULL,
    PRIMARY KEY (key, value, seq)
) WITHOUT ROWID;
-- The words of each message (domain/words.py): text search is one index probe per word.
CREATE TABLE IF NOT EXISTS error_words (
    word TEXT NOT NULL,
    seq INTEGER NOT NULL,
    PRIMARY KEY (word, seq)
) WITHOUT ROWID;
-- Hourly counts per dimension (store/core.py rollup_counts), kept at capture: statistics over
-- whole hours read these, not the errors.
CREATE TABLE IF NOT EXISTS statistics_rollup (
    hour INTEGER NOT NULL,
    dimension INTEGER NOT NULL,
    key TEXT NOT NULL,
    count INTEGER NOT NULL,
    PRIMARY KEY (hour, dimension, key)
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS error_groups (
    group_id TEXT PRIMARY KEY,
    title TEXT NOT NULL,
    error_type TEXT NOT NULL,
    count INTEGER NOT NULL,
    first_seen INTEGER NOT NULL,
    last_seen INTEGER NOT NULL,
    status INTEGER NOT NULL,
    regression INTEGER NOT NULL,
    representative_error_id TEXT NOT NULL,
    max_severity INTEGER NOT NULL
);
CREATE INDEX IF NOT EXISTS groups_by_last_seen ON error_groups (last_seen, group_id);
CREATE INDEX IF NOT EXISTS groups_by_count ON error_groups (count, group_id);
CREATE TABLE IF NOT EXISTS group_resources (
    group_id TEXT NOT NULL,
    resource_id TEXT NOT NULL,
    PRIMARY KEY (group_id, resource_id)
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS resources (
    id TEXT PRIMARY KEY,
    type TEXT NOT NULL,
    name TEXT NOT NULL,
    labels TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS dependencies (
    dependent_id TEXT NOT NULL,
    dependency_id TEXT NOT NULL,
    PRIMARY KEY (dependent_id, dependency_id)
) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS dependencies_by_dependency ON dependencies (dependency_id, dependent_id);
CREATE TABLE IF NOT EXISTS changes (
    change_id TEXT PRIMARY KEY,
    kind INTEGER NOT NULL,
    resource_id TEXT NOT NULL,
    occurred_at INTEGER NOT NULL,
    doc TEXT NOT NULL
);
-- Errors whose context still has a PENDING source (codec.context_pending), so that a restarted
-- server finds the ones to collect again without reading every context.
CREATE TABLE IF NOT EXISTS pending_context (seq INTEGER PRIMARY KEY);
CREATE INDEX IF NOT EXISTS changes_by_resource ON changes (resource_id, occurred_at);
CREATE INDEX IF NOT EXISTS changes_by_time ON changes (occurred_at);
-- Per-database values created once, such as the key that signs page tokens and cursors. A new
-- table with IF NOT EXISTS: a database of this schema version from before it gains it at start.
CREATE TABLE IF NOT EXISTS meta (
    key TEXT PRIMARY KEY,
    value BLOB NOT NULL
);
"""

# The documents, kept in error_docs; the other ERROR_COLUMNS are in errors.
_DOC_COLUMNS = ("fingerprint", "message", "details", "context")
_NARROW_COLUMNS = [c for c in ERROR_COLUMNS if c not in _DOC_COLUMNS]
# USING (seq) keeps unqualified column names valid in every WHERE clause built below.
_SELECT_ERRORS = f"SELECT {', '.join(ERROR_COLUMNS)} FROM errors JOIN error_docs USING (seq)"
_SELECT_LINKS = f"SELECT {', '.join(LINK_COLUMNS)} FROM errors"


def _connect(path: str) -> sqlite3.Connection:
    conn = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
    # 8 KiB pages fit two ~2 KB rows where 4 KiB pages fit one (docs/ARCHITECTURE.md §3); only takes effect
    # on a new database.
    conn.execute("PRAGMA page_size=8192")
    conn.execute("PRAGMA journal_mode=WAL")
    # Checkpoint (and fsync) every ~64 MiB of WAL instead of every 4 MiB: fewer stalls of the writer.
    conn.execute("PRAGMA wal_autocheckpoint=8192")
    # NORMAL in WAL mode: a commit survives a process crash; only an OS crash may lose the last ones.
    conn.execute("PRAGMA synchronous=NORMAL")
    conn.execute("PRAGMA busy_timeout=5000")
    conn.execute("PRAGMA temp_store=MEMORY")
    conn.execute("PRAGMA cache_size=-65536")
    return conn


# Bumped whenever _SCHEMA changes; a database of a version with no upgrade below is refused, not
# silently misread.
SCHEMA_VERSION = 6
# Upgrades from an older version: statements run before _SCHEMA creates what is missing.
_UPGRADES = {
    # 4 -> 5: the per-column indexes end with severity, source and environment; one for environment.
    4: ";".join(
        f"DROP INDEX IF EXISTS errors_by_{name}"
        for name in ("resource", "group", "severity", "type", "resource_type", "service", "source")
    ),
    # 5 -> 6: the resource index covers the related-errors walk.
    5: "DROP INDEX IF EXISTS errors_by_resource",
}


def _create_schema(conn: sqlite3.Connection) -> None:
    version = conn.execute("PRAGMA user_version").fetchone()[0]
    has_tables = conn.execute("SELECT 1 FROM sqlite_master WHERE name = 'errors'").fetchone() is not None
    if has_tables and version in _UPGRADES:
        log.warning("upgrading the embedded store from schema version %d to %d", version, SCHEMA_VERSION)
        conn.executescript(f"BEGIN; {_UPGRADES[version]}; {_SCHEMA}; PRAGMA user_version = {SCHEMA_VERSION}; COMMIT;")
        version = SCHEMA_VERSION
    if version != SCHEMA_VERSION and (version != 0 or has_tables):
        raise RuntimeError(
            f"the database has schema version {version}, this server needs {SCHEMA_VERSION}; "
            "move the data directory aside (or point ERRORREPLAY_DATA_DIR elsewhere)"
        )
    had_pending_table = conn.execute("SELECT 1 FROM sqlite_master WHERE name = 'pending_context'").fetchone()
    conn.executescript(_SCHEMA)
    conn.execute(f"PRAGMA user_version = {SCHEMA_VERSION}")
    if has_tables and had_pending_table is None:
        _backfill_pending_context(conn)


def _backfill_pending_context(conn: sqlite3.Connection) -> None:
    """A database written before pending_context existed: list its pending errors once."""
    pending = [
        (seq,)
        for seq, doc in conn.execute("SELECT seq, context FROM error_docs")
        if codec.context_pending(codec.context_from_json(doc))
    ]
    conn.executemany("INSERT OR IGNORE INTO pending_context (seq) VALUES (?)", pending)


def _token_key(conn: sqlite3.Connection) -> bytes:
    """The database's signing key, created by the first start."""
    conn.execute("INSERT OR IGNORE INTO meta (key, value) VALUES ('token_key', ?)", (new_key(),))
    return bytes(conn.execute("SELECT value FROM meta WHERE key = 'token_key'").fetchone()[0])


# SQLite errors that mean the database cannot be used right now, as opposed to a bad query.
# "interrupted": close() interrupts the reads still running.
_UNAVAILABLE_MESSAGES = (
    "locked",
    "busy",
    "disk i/o",
    "unable to open",
    "disk is full",
    "readonly",
    "closed",
    "interrupted",
)


def _means_unavailable(exc: sqlite3.Error) -> bool:
    text = str(exc).lower()
    return any(m in text for m in _UNAVAILABLE_MESSAGES)


def _fetch_all(sql: str, args: Sequence[Any]) -> Callable[[sqlite3.Connection], list[Any]]:
    """A read of every row of one query, for SqliteStore._read."""
    return lambda conn: conn.execute(sql, args).fetchall()


def _marks(values: Sequence[Any]) -> str:
    return ",".join("?" * len(values))


def _chunks(values: Sequence[R]) -> Iterable[Sequence[R]]:
    """Slices short enough for one IN (...) list."""
    for start in range(0, len(values), MAX_SQL_VARIABLES):
        yield values[start : start + MAX_SQL_VARIABLES]


def _where(
    flt: ErrorFilter,
    common_tags: Collection[tuple[str, str]] = (),
    text_words: Sequence[str] | None = None,
    probe_every_word: bool = False,
) -> tuple[list[str], list[Any]]:
    """SQL conditions for a filter. Tags in `common_tags` are probed per row, the others listed.
    The first of `text_words` (the text's words, rarest first) is listed and the others probed per
    row, or all are probed when the query walks the time index: a list of a common word's
    100,000 ids costs more than the probes a page needs."""
    clauses: list[str] = []
    params: list[Any] = []

    def any_of(column: str, values: Sequence[Any]) -> None:
        clauses.append(f"{column} IN ({','.join('?' * len(values))})")
        params.extend(values)

    if flt.severities:
        any_of("severity", [int(s) for s in flt.severities])
    if flt.min_severity:
        clauses.append("severity >= ?")
        params.append(int(flt.min_severity))
    if flt.sources:
        any_of("source", [int(s) for s in flt.sources])
    if flt.resource_ids:
        any_of("resource_id", flt.resource_ids)
    # The partial indexes on correlation_id and trace_id serve `= ?` only when the query itself
    # rules out '' (a bound parameter proves nothing to the planner).
    for column, value in (("correlation_id", flt.correlation_id), ("trace_id", flt.trace_id)):
        if value:
            clauses.append(f"{column} = ? AND {column} != ''")
            params.append(value)
    for column, value in (
        ("resource_type", flt.resource_type),
        ("error_type", flt.error_type),
        ("group_id", flt.group_id),
        ("service", flt.service),
        ("environment", flt.environment),
    ):
        if value:
            clauses.append(f"{column} = ?")
            params.append(value)
    for key, value in sorted(flt.tags.items()):
        if (key, value) in common_tags:
            clauses.append("EXISTS (SELECT 1 FROM error_tags t WHERE t.key = ? AND t.value = ? AND t.seq = errors.seq)")
        else:
            clauses.append("seq IN (SELECT seq FROM error_tags WHERE key = ? AND value = ?)")
        params.extend((key, value))
    for i, word in enumerate(words(flt.text) if text_words is None else text_words):  # no words: no condition
        if i == 0 and not probe_every_word:
            clauses.append("seq IN (SELECT seq FROM error_words WHERE word = ?)")
        else:
            clauses.append("EXISTS (SELECT 1 FROM error_words w WHERE w.word = ? AND w.seq = errors.seq)")
        params.append(word)
    if flt.start_time is not None:
        clauses.append("occurred_at >= ?")
        params.append(flt.start_time)
    if flt.end_time is not None:
        clauses.append("occurred_at <= ?")
        params.append(flt.end_time)
    if flt.exclude_group_ids:
        clauses.append(f"group_id NOT IN ({','.join('?' * len(flt.exclude_group_ids))})")
        params.extend(flt.exclude_group_ids)
    return clauses, params


# A resource known only by its id (a dependency's end, a change's resource) until it is declared.
_BARE_RESOURCE = "INSERT OR IGNORE INTO resources (id, type, name, labels) VALUES (?, '', '', '{}')"
# One hop of core.walk_topology: the column that holds the frontier, the column of its neighbours.
_HOP_COLUMNS = {DEPENDENCIES: ("dependent_id", "dependency_id"), DEPENDENTS: ("dependency_id", "dependent_id")}

_GROUP_COLUMNS = (
    "group_id, title, error_type, count, first_seen, last_seen, status, regression,"
    " representative_error_id, max_severity"
)


def _common_tags(conn: sqlite3.Connection, tags: Mapping[str, str]) -> set[tuple[str, str]]:
    sql = "SELECT COUNT(*) FROM (SELECT 1 FROM error_tags WHERE key = ? AND value = ? LIMIT ?)"
    return {
        (key, value)
        for key, value in tags.items()
        if conn.execute(sql, (key, value, COMMON_TAG_ROWS + 1)).fetchone()[0] > COMMON_TAG_ROWS
    }


def _sole_condition_count(conn: sqlite3.Connection, flt: ErrorFilter, text: _TextPlan | None, limit: int) -> int | None:
    """The matches, counted up to `limit`, when the filter is one text or one tag condition: that
    condition's own index holds them, without probing the errors table row by row. None otherwise."""
    if text is not None and flt == ErrorFilter(text=flt.text):
        if len(text.words) == 1:
            return min(text.rarest_count, limit)
        # The rarest word's ids, each probed for the other words: the word index alone.
        probes = " AND ".join(
            "EXISTS (SELECT 1 FROM error_words w WHERE w.word = ? AND w.seq = w0.seq)" for _ in text.words[1:]
        )
        sql = f"SELECT COUNT(*) FROM (SELECT 1 FROM error_words w0 WHERE w0.word = ? AND {probes} LIMIT ?)"
        return int(conn.execute(sql, [*text.words, limit]).fetchone()[0])
    if len(flt.tags) == 1 and flt == ErrorFilter(tags=flt.tags):
        ((key, value),) = flt.tags.items()
        sql = "SELECT COUNT(*) FROM (SELECT 1 FROM error_tags WHERE key = ? AND value = ? LIMIT ?)"
        count: int = conn.execute(sql, (key, value, limit)).fetchone()[0]
        return count
    return None


# The equality conditions with an index of their own (column, then time): a search is driven by
# the rarest of them, found by counting each one's index entries up to EQUALITY_PROBE_ROWS.
_EQUALITY_INDEXES = {
    "group_id": "errors_by_group",
    "error_type": "errors_by_type",
    "service": "errors_by_service",
    "resource_type": "errors_by_resource_type",
    "environment": "errors_by_environment",
}
EQUALITY_PROBE_ROWS = 10_000


def _rarest_equality(conn: sqlite3.Connection, flt: ErrorFilter) -> tuple[str | None, bool]:
    """(the index of the filter's rarest equality condition when it has two or more, whether some
    equality condition matches no error at all). The planner has no per-value statistics: without
    this it may walk 125,000 `error_type` rows to rule out an `environment` that no error has."""
    counted: list[tuple[int, int, str]] = []  # ties go to the column listed first
    for position, (column, index) in enumerate(_EQUALITY_INDEXES.items()):
        value = getattr(flt, column)
        if value:
            sql = f"SELECT COUNT(*) FROM (SELECT 1 FROM errors INDEXED BY {index} WHERE {column} = ? LIMIT ?)"
            count = int(conn.execute(sql, (value, EQUALITY_PROBE_ROWS)).fetchone()[0])
            if count == 0:
                return None, True
            counted.append((count, position, index))
    return (min(counted)[2] if len(counted) > 1 else None), False


@dataclass(frozen=True, slots=True)
class _TextPlan:
    """A text's words, rarest first, and how many errors hold the rarest, counted up to a bound (an
    upper bound of the matches, and their count for one word below the bound)."""

    words: list[str]
    rarest_count: int


def _text_plan(conn: sqlite3.Connection, text: str, bound: int) -> _TextPlan | None:
    """None for a text without words (no condition). Counting stops at `bound`: a common word's
    125,000 index entries are not worth reading to learn that it is common."""
    sql = "SELECT COUNT(*) FROM (SELECT 1 FROM error_words WHERE word = ? LIMIT ?)"
    counted = sorted((int(conn.execute(sql, (w, bound)).fetchone()[0]), w) for w in words(text))
    return _TextPlan([w for _, w in counted], counted[0][0]) if counted else None


class SqliteStore(StoreCore):
    """The embedded Store. `path` is the database file; its directory is created if missing."""

    def __init__(
        self, path: str | Path, topology_bounds: TopologyBounds | None = None, *, read_only: bool = False
    ) -> None:
        # read_only: readers only, no writer thread (a worker process of a multi-process server,
        # whose writes go to the writer process: engine/link.py). The writer must have created
        # the database first.
        self._read_only = read_only
        self._path = str(path)
        self._bounds = topology_bounds or TopologyBounds()
        self._writer: BatchWriter | None = None
        # The one thread that writes, holding the one writing connection (start() opens both).
        self._write_thread = ThreadPoolExecutor(max_workers=1, thread_name_prefix="sqlite-writer")
        self._write_connection: sqlite3.Connection | None = None
        self._readers: ThreadPoolExecutor | None = None
        self._topology_readers: ThreadPoolExecutor | None = None
        self._inflight: set[Future[Any]] = set()
        self._tokens = PageTokens(b"")
        self._local = threading.local()
        self._reader_connections: list[sqlite3.Connection] = []
        self._lock = threading.Lock()

    async def start(self) -> None:
        if self._read_only:
            key = await asyncio.to_thread(self._existing_token_key)
        else:
            if self._path != ":memory:":
                Path(self._path).parent.mkdir(parents=True, exist_ok=True)
            try:
                key = await asyncio.get_running_loop().run_in_executor(self._write_thread, self._open_writer)
            except Exception as exc:
                self._write_thread.shutdown()
                raise StoreUnavailable(f"cannot open the embedded store at {self._path}: {exc}") from exc
            self._writer = BatchWriter(self._commit, "sqlite-writer")
            self._writer.start()
        self._token_key = key
        self._tokens = PageTokens(key)
        self._readers = ThreadPoolExecutor(max_workers=READER_THREADS, thread_name_prefix="sqlite-reader")
        self._topology_readers = ThreadPoolExecutor(
            max_workers=TOPOLOGY_READER_THREADS, thread_name_prefix="sqlite-topology-reader"
        )

    def _existing_token_key(self) -> bytes:
        """A read-only store's signing key, from a database the writer has created."""
        try:
            conn = sqlite3.connect(f"file:{self._path}?mode=ro", uri=True)
            try:
                version = conn.execute("PRAGMA user_version").fetchone()[0]
                if version != SCHEMA_VERSION:
                    raise RuntimeError(f"schema version {version}, this server needs {SCHEMA_VERSION}")
                row = conn.execute("SELECT value FROM meta WHERE key = 'token_key'").fetchone()
            finally:
                conn.close()
        except (sqlite3.Error, RuntimeError) as exc:
            raise StoreUnavailable(f"cannot read the embedded store at {self._path}: {exc}") from exc
        if row is None:
            raise StoreUnavailable(f"the embedded store at {self._path} has no signing key yet")
        return bytes(row[0])

    def _open_writer(self) -> bytes:
        """On the writer thread: opens its connection, sets up the schema, returns the signing key."""
        conn = _connect(self._path)
        try:
            _create_schema(conn)
            key = _token_key(conn)
        except BaseException:
            conn.close()
            raise
        self._write_connection = conn
        return key

    async def close(self) -> None:
        if self._writer is not None:
            await self._writer.close()
            self._writer = None
            if self._write_connection is not None:
                await asyncio.get_running_loop().run_in_executor(self._write_thread, self._write_connection.close)
            self._write_thread.shutdown()
        pools = [p for p in (self._readers, self._topology_readers) if p is not None]
        self._readers = self._topology_readers = None
        # Shutdown must not wait on a long read: queued reads are dropped, running ones interrupted
        # (they fail UNAVAILABLE), and their threads are given a bounded time to notice.
        for pool in pools:
            pool.shutdown(wait=False, cancel_futures=True)
        with self._lock:
            connections = list(self._reader_connections)
        for conn in connections:
            conn.interrupt()
        running = list(self._inflight)
        if running:
            # Waited on in a thread: asyncio wrappers would log the interrupted reads' errors again.
            _, still = await asyncio.to_thread(futures.wait, running, READER_STOP_SECONDS)
            if still:
                log.warning(
                    "%d sqlite reads still busy after %.1f s; closing without them",
                    len(still),
                    READER_STOP_SECONDS,
                )
                return  # their connections stay open until the threads end; closing them now could crash
        with self._lock:
            for conn in self._reader_connections:
                conn.close()
            self._reader_connections.clear()

    # --- plumbing ---------------------------------------------------------------------------
    def _reader(self) -> sqlite3.Connection:
        conn: sqlite3.Connection | None = getattr(self._local, "conn", None)
        if conn is None:
            conn = _connect(self._path)
            conn.execute("PRAGMA query_only=ON")
            self._local.conn = conn
            with self._lock:
                self._reader_connections.append(conn)
        return conn

    async def _read(self, fn: Callable[[sqlite3.Connection], R], *, topology: bool = False) -> R:
        pool = self._topology_readers if topology else self._readers
        if pool is None:
            raise StoreUnavailable("the embedded store is not open")
        try:
            work = pool.submit(lambda: fn(self._reader()))
        except RuntimeError as exc:  # the pool was shut down after the check above
            raise StoreUnavailable("the embedded store is closing") from exc
        self._inflight.add(work)
        work.add_done_callback(self._inflight.discard)
        try:
            return await asyncio.wrap_future(work)
        except asyncio.CancelledError:
            task = asyncio.current_task()
            if work.cancelled() and task is not None and not task.cancelling():
                raise StoreUnavailable("the embedded store is closing") from None  # dropped by close()
            raise
        except sqlite3.OperationalError as exc:
            if not _means_unavailable(exc):
                raise  # a query bug is INTERNAL, not "the store is down, retry"
            raise StoreUnavailable(f"embedded store read failed: {exc}") from exc

    async def _write(self, fn: Callable[[sqlite3.Connection], R]) -> R:
        if self._writer is None:
            raise StoreUnavailable("the embedded store is not open")
        return await self._writer.write(fn)

    async def _commit(self, batch: list[WriteJob]) -> list[Any]:
        return await asyncio.get_running_loop().run_in_executor(self._write_thread, self._transaction, batch)

    def _transaction(self, batch: list[WriteJob]) -> list[Any]:
        """On the writer thread: the batch in one transaction (core.BatchWriter)."""
        conn = self._write_connection
        assert conn is not None  # set by start() before the writer runs
        try:
            conn.execute("BEGIN IMMEDIATE")
            results: list[Any] = []
            for captures, run in runs(batch, lambda job: job.captures is not None):
                if captures:
                    results += self._capture_many(conn, [job.captures or [] for job in run])
                    continue
                assert run[0].work is not None
                try:
                    results.append(run[0].work(conn))
                except DomainError as exc:  # such jobs check before they write
                    results.append(exc)
            conn.execute("COMMIT")
            return results
        except BaseException as exc:
            if conn.in_transaction:
                # A failing rollback (a lost disk) must not hide the error that caused it.
                with contextlib.suppress(sqlite3.Error):
                    conn.execute("ROLLBACK")
            if isinstance(exc, sqlite3.Error) and _means_unavailable(exc):
                log.error("sqlite write failed: %s", exc)
                raise StoreUnavailable(f"embedded store write failed: {exc.__class__.__name__}") from exc
            raise

    # --- errors -----------------------------------------------------------------------------
    async def capture(self, errors: Sequence[NewError]) -> list[CaptureOutcome]:
        if self._writer is None:
            raise StoreUnavailable("the embedded store is not open")
        return await self._writer.capture(list(errors))

    @staticmethod
    def _capture_many(conn: sqlite3.Connection, jobs: list[list[NewError]]) -> list[list[CaptureOutcome]]:
        """Insert new errors and count them in their groups, a statement per table, not per row."""
        # The request_id column holds the idempotency key: (scope, request_id) in one string.
        lookups = CapturePlan.lookups(jobs)
        stored = StoredState()
        for chunk in _chunks(lookups.request_ids):
            for row in conn.execute(f"{_SELECT_ERRORS} WHERE request_id IN ({_marks(chunk)})", chunk):
                snap = snapshot_from_row(row)
                stored.by_request[idempotency_key(snap)] = snap
        for chunk in _chunks(lookups.group_ids):
            sql = f"SELECT group_id, status FROM error_groups WHERE group_id IN ({_marks(chunk)})"
            stored.statuses.update(conn.execute(sql, chunk).fetchall())
        plan = CapturePlan.build(jobs, stored)
        fresh = plan.fresh
        if not fresh:
            return plan.outcomes
        columns = [error_columns(i.snapshot) for i in fresh]
        for table, names in (("errors", _NARROW_COLUMNS), ("error_docs", _DOC_COLUMNS)):
            conn.executemany(
                f"INSERT INTO {table} (seq, {', '.join(names)}) VALUES (?, {_marks(names)})",
                [(c["received_at"], *(c[name] for name in names)) for c in columns],
            )
        conn.executemany(
            "INSERT INTO pending_context (seq) VALUES (?)",
            [(i.snapshot.received_at,) for i in fresh if codec.context_pending(i.snapshot.context)],
        )
        conn.executemany(
            "INSERT INTO error_words (word, seq) VALUES (?, ?)",
            [(w, i.snapshot.received_at) for i in fresh for w in words(i.snapshot.report.message)],
        )
        conn.executemany(
            "INSERT OR IGNORE INTO error_tags (seq, key, value) VALUES (?, ?, ?)",
            [(i.snapshot.received_at, k, v) for i in fresh for k, v in i.snapshot.report.tags.items()],
        )
        conn.executemany(
            "INSERT INTO statistics_rollup (hour, dimension, key, count) VALUES (?, ?, ?, ?)"
            " ON CONFLICT (hour, dimension, key) DO UPDATE SET count = count + excluded.count",
            plan.rollup_rows(),
        )
        # A reopened group takes the new status and the regression flag; otherwise both stay.
        conn.executemany(
            f"""INSERT INTO error_groups ({_GROUP_COLUMNS}) VALUES (?,?,?,?,?,?,?,?,?,?)
                ON CONFLICT (group_id) DO UPDATE SET
                    count = count + excluded.count,
                    first_seen = MIN(first_seen, excluded.first_seen),
                    last_seen = MAX(last_seen, excluded.last_seen),
                    max_severity = MAX(max_severity, excluded.max_severity),
                    status = CASE WHEN excluded.regression = 1 THEN excluded.status ELSE status END,
                    regression = MAX(regression, excluded.regression)""",
            [
                (
                    g.group_id,
                    g.title,
                    g.error_type,
                    g.count,
                    g.first_seen,
                    g.last_seen,
                    int(GroupStatus.OPEN),
                    int(g.reopen),
                    g.representative_error_id,
                    g.max_severity,
                )
                for g in plan.groups.values()
            ],
        )
        conn.executemany(
            "INSERT OR IGNORE INTO group_resources (group_id, resource_id) VALUES (?, ?)",
            [(g.group_id, resource) for g in plan.groups.values() for resource in sorted(g.resources)],
        )
        return plan.outcomes

    async def _errors_by_id(self, ids: list[str]) -> list[ErrorSnapshot]:
        def run(conn: sqlite3.Connection) -> list[ErrorSnapshot]:
            rows: list[Any] = []
            for chunk in _chunks(ids):
                rows += conn.execute(f"{_SELECT_ERRORS} WHERE error_id IN ({_marks(chunk)})", chunk).fetchall()
            return [snapshot_from_row(row) for row in rows]

        return await self._read(run)

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

        def run(conn: sqlite3.Connection) -> Page[ErrorSnapshot]:
            text = _text_plan(conn, flt.text, max(TEXT_MATCHES_SCANNED_BY_TIME, count_limit) + 1)
            rarest, absent = _rarest_equality(conn, flt)
            if absent or (text is not None and text.rarest_count == 0):
                return Page([], "", 0 if with_total else -1)
            walk_time = text is not None and text.rarest_count > TEXT_MATCHES_SCANNED_BY_TIME
            common_tags = _common_tags(conn, flt.tags) if flt.tags else set()
            text_words = text.words if text else None
            clauses, params = _where(flt, common_tags, text_words)
            where, args = _where(flt, common_tags, text_words, probe_every_word=walk_time)
            if after is not None:
                where.append(
                    "(occurred_at, received_at) > (?, ?)" if oldest_first else "(occurred_at, received_at) < (?, ?)"
                )
                args.extend(after)
            direction = "ASC" if oldest_first else "DESC"
            # Many matching words: walking the time index until a page is found beats sorting
            # every match (2 ms against 27 ms for 12,500 matches of 100,000). Without text, the
            # rarest of several equality columns drives the query.
            index = "errors_by_time" if walk_time else rarest if text is None else None
            table = f"errors INDEXED BY {index}" if index else "errors"
            select = _SELECT_ERRORS.replace("FROM errors ", f"FROM {table} ", 1)
            sql = select + (f" WHERE {' AND '.join(where)}" if where else "")
            sql += f" ORDER BY occurred_at {direction}, received_at {direction} LIMIT ?"
            rows = conn.execute(sql, [*args, page_size + 1]).fetchall()
            items, token = self._tokens.page([snapshot_from_row(row) for row in rows], page_size, digest, error_key)
            if not with_total:
                return Page(items, token)
            if after is None and len(rows) <= page_size:
                return Page(items, token, len(rows))  # the first page holds every match
            counted = _sole_condition_count(conn, flt, text, count_limit + 1)
            if counted is None:
                table = f"errors INDEXED BY {rarest}" if rarest and text is None else "errors"
                count_sql = f"SELECT COUNT(*) FROM (SELECT 1 FROM {table}"
                count_sql += (f" WHERE {' AND '.join(clauses)}" if clauses else "") + " LIMIT ?)"
                counted = int(conn.execute(count_sql, [*params, count_limit + 1]).fetchone()[0])
            return Page(items, token, *bounded_total(counted, count_limit))

        return await self._read(run)

    async def errors_after(self, received_after: Micros, limit: int) -> list[ErrorSnapshot]:
        def run(conn: sqlite3.Connection) -> list[ErrorSnapshot]:
            sql = f"{_SELECT_ERRORS} WHERE seq > ? ORDER BY seq LIMIT ?"
            return [snapshot_from_row(row) for row in conn.execute(sql, (received_after, limit))]

        return await self._read(run)

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
        links: list[tuple[str, str]] = []
        if r.correlation_id:
            links.append(("correlation_id = ? AND correlation_id != ''", r.correlation_id))
        if r.trace_id:
            links.append(("trace_id = ? AND trace_id != ''", r.trace_id))
        resources = [x for x in dict.fromkeys([r.resource_id, *resource_ids]) if x]
        links += [("resource_id = ?", x) for x in resources]
        if not links:
            return []
        pivot = r.occurred_at
        # Link rows come from `errors` alone: no join to the documents, nothing to decode.
        columns, select, decode = (
            (ERROR_COLUMNS, _SELECT_ERRORS, snapshot_from_row)
            if documents
            else (LINK_COLUMNS, _SELECT_LINKS, link_from_row)
        )
        at_id, at_occurred, at_received = (
            NEARNESS_COLUMNS + columns.index(c) for c in ("error_id", "occurred_at", "received_at")
        )
        # Each link's index is walked away from the error's time on both sides; the walks, each in
        # nearness order, are merged lazily, so a cursor reads only as far as the nearest `limit`
        # of all links reach: what a call reads follows the limit, not how many errors the window
        # holds (about 2,900 around an error at 1,000,000). A window that does not hold the
        # error's time is walked from its nearer edge, on one side only. Each row starts with its
        # `nearness` to the error, so the merge compares rows as they come.
        before = select.replace("SELECT ", "SELECT ? - occurred_at, occurred_at, -received_at, ", 1)
        after = select.replace("SELECT ", "SELECT occurred_at - ?, occurred_at, received_at, ", 1)
        walks = [
            (
                f"{before} WHERE {condition} AND occurred_at BETWEEN ? AND ?"
                " ORDER BY occurred_at DESC, received_at DESC LIMIT ?",
                (pivot, value, start, min(pivot, end), limit + 1),
            )
            for condition, value in links
        ] + [
            (
                f"{after} WHERE {condition} AND occurred_at > ? AND occurred_at <= ?"
                " ORDER BY occurred_at, received_at LIMIT ?",
                (pivot, value, max(pivot, start - 1), end, limit + 1),
            )
            for condition, value in links
        ]

        def run(conn: sqlite3.Connection) -> list[ErrorSnapshot]:
            cursors = [conn.execute(sql, args) for sql, args in walks]
            kept: dict[Micros, Any] = {}  # by received_at: one error may be on several links
            for row in heapq.merge(*cursors):
                if row[at_id] != error.error_id:
                    kept.setdefault(row[at_received], row)
                    if len(kept) == limit:
                        break
            for cursor in cursors:
                cursor.close()
            # The merge kept the nearest already; oldest first, as `nearest` orders them.
            oldest_first = sorted(kept.values(), key=itemgetter(at_occurred, at_received))
            return [decode(row[NEARNESS_COLUMNS:]) for row in oldest_first]

        return await self._read(run)

    async def update_context(self, error_id: str, context: ErrorContext) -> None:
        doc = codec.context_to_json(context)
        pending = codec.context_pending(context)

        def run(conn: sqlite3.Connection) -> None:
            row = conn.execute("SELECT seq FROM errors WHERE error_id = ?", (error_id,)).fetchone()
            if row is None:
                raise NotFound("error", error_id)
            conn.execute("UPDATE error_docs SET context = ? WHERE seq = ?", (doc, row[0]))
            if pending:
                conn.execute("INSERT OR IGNORE INTO pending_context (seq) VALUES (?)", row)
            else:
                conn.execute("DELETE FROM pending_context WHERE seq = ?", row)

        await self._write(run)

    async def pending_context_errors(self, received_after: Micros, limit: int) -> list[ErrorSnapshot]:
        sql = f"{_SELECT_ERRORS} WHERE seq IN (SELECT seq FROM pending_context WHERE seq > ? ORDER BY seq LIMIT ?)"
        sql += " ORDER BY seq"
        return await self._read(
            lambda conn: [snapshot_from_row(row) for row in conn.execute(sql, (received_after, limit))]
        )

    async def _rollups(
        self, first_hour: Micros, end_hour: Micros, dimension: int | None = None, key: str = ""
    ) -> list[Any]:
        sql = "SELECT hour, dimension, key, count FROM statistics_rollup WHERE hour >= ? AND hour < ?"
        args: list[Any] = [first_hour, end_hour]
        if dimension is not None:
            sql += " AND dimension = ?"
            args.append(dimension)
        if key:
            sql += " AND key = ?"
            args.append(key)
        return await self._read(_fetch_all(sql, args))

    async def _group_titles(self, group_ids: list[str]) -> dict[str, tuple[str, int]]:
        sql = f"SELECT group_id, title, status FROM error_groups WHERE group_id IN ({_marks(group_ids)})"
        return {gid: (title, status) for gid, title, status in await self._read(_fetch_all(sql, group_ids))}

    async def _count_by(
        self,
        bounded: ErrorFilter,
        columns: Sequence[str],
        buckets: tuple[Micros, Micros] | None = None,
        only_groups: Sequence[str] = (),
    ) -> list[Any]:
        clauses, params = _where(bounded)
        keys = [*columns, *(["(occurred_at - ?) / ?"] if buckets else [])]
        group_by = ", ".join(str(i) for i in range(1, len(keys) + 1))
        rows: list[Any] = []
        for chunk in _chunks(only_groups) if only_groups else [()]:
            where = [*clauses, f"group_id IN ({_marks(chunk)})"] if chunk else clauses
            sql = f"SELECT {', '.join(keys)}, COUNT(*) FROM errors WHERE {' AND '.join(where)} GROUP BY {group_by}"
            rows += await self._read(_fetch_all(sql, [*(buckets or ()), *params, *chunk]))
        return rows

    async def count_errors(self) -> int:
        return await self._read(lambda conn: int(conn.execute("SELECT COUNT(*) FROM errors").fetchone()[0]))

    async def latest_received_at(self) -> Micros:
        return await self._read(
            lambda conn: int(conn.execute("SELECT COALESCE(MAX(seq), 0) FROM errors").fetchone()[0])
        )

    # --- groups -----------------------------------------------------------------------------
    def _group_resources(self, conn: sqlite3.Connection, group_id: str) -> list[str]:
        rows = conn.execute(
            "SELECT resource_id FROM group_resources WHERE group_id = ? ORDER BY resource_id LIMIT ?",
            (group_id, MAX_GROUP_RESOURCES_LISTED),
        )
        return [r[0] for r in rows]

    def _load_group(self, conn: sqlite3.Connection, group_id: str) -> ErrorGroup:
        row = conn.execute(f"SELECT {_GROUP_COLUMNS} FROM error_groups WHERE group_id = ?", (group_id,)).fetchone()
        if row is None:
            raise NotFound("group", group_id)
        return group_from_row(row, self._group_resources(conn, group_id))

    async def get_group(self, group_id: str) -> ErrorGroup:
        return await self._read(lambda conn: self._load_group(conn, group_id))

    async def _groups(self, statuses: list[int], key: str, after: list[Any] | None, limit: int) -> list[ErrorGroup]:
        def run(conn: sqlite3.Connection) -> list[ErrorGroup]:
            where: list[str] = []
            args: list[Any] = []
            if statuses:
                where.append(f"status IN ({_marks(statuses)})")
                args.extend(statuses)
            if after is not None:
                where.append(f"({key}, group_id) < (?, ?)")
                args.extend(after)
            sql = f"SELECT {_GROUP_COLUMNS} FROM error_groups"
            sql += (f" WHERE {' AND '.join(where)}" if where else "") + f" ORDER BY {key} DESC, group_id DESC LIMIT ?"
            rows = conn.execute(sql, [*args, limit]).fetchall()
            return [group_from_row(row, self._group_resources(conn, row[0])) for row in rows]

        return await self._read(run)

    async def update_group_status(self, group_id: str, status: GroupStatus) -> ErrorGroup:
        def run(conn: sqlite3.Connection) -> ErrorGroup:
            cur = conn.execute(
                "UPDATE error_groups SET status = ?, regression = 0 WHERE group_id = ?",
                (int(status), group_id),
            )
            if cur.rowcount == 0:
                raise NotFound("group", group_id)
            return self._load_group(conn, group_id)

        return await self._write(run)

    async def muted_group_ids(self) -> list[str]:
        return await self._read(
            lambda conn: [
                r[0]
                for r in conn.execute("SELECT group_id FROM error_groups WHERE status = ?", (int(GroupStatus.MUTED),))
            ]
        )

    # --- topology and changes ---------------------------------------------------------------
    async def upsert_resources(
        self, resources: Sequence[Resource], dependencies: Sequence[Dependency]
    ) -> tuple[int, int]:
        res = list(resources)
        deps = list(dependencies)

        def run(conn: sqlite3.Connection) -> tuple[int, int]:
            conn.executemany(
                """INSERT INTO resources (id, type, name, labels) VALUES (?, ?, ?, ?)
                   ON CONFLICT (id) DO UPDATE SET type = excluded.type, name = excluded.name,
                   labels = excluded.labels""",
                [(r.id, r.type, r.name, codec.dumps(r.labels)) for r in res],
            )
            ends = {x for d in deps for x in (d.dependent_id, d.dependency_id)}
            conn.executemany(_BARE_RESOURCE, [(x,) for x in sorted(ends)])
            conn.executemany(
                "INSERT OR IGNORE INTO dependencies (dependent_id, dependency_id) VALUES (?, ?)",
                [(d.dependent_id, d.dependency_id) for d in deps],
            )
            return len(res), len(deps)

        return await self._write(run)

    async def get_topology(self, resource_id: str, depth: int) -> Topology:
        max_edges = self._bounds.max_edges

        def neighbours(conn: sqlite3.Connection, direction: str, frontier: list[str], limit: int) -> Iterator[str]:
            near, far = _HOP_COLUMNS[direction]
            for chunk in _chunks(frontier):  # read lazily: the walk stops at the first hop that overflows
                sql = f"SELECT DISTINCT {far} FROM dependencies WHERE {near} IN ({_marks(chunk)}) LIMIT ?"
                yield from (row[0] for row in conn.execute(sql, [*chunk, limit]))

        def run(conn: sqlite3.Connection) -> Topology:
            if conn.execute("SELECT 1 FROM resources WHERE id = ?", (resource_id,)).fetchone() is None:
                raise NotFound("resource", resource_id)
            walk = walk_topology(resource_id, depth, self._bounds.max_neighbours_per_hop)
            reach, truncated = run_walk(walk, lambda *request: neighbours(conn, *request))
            ids = codec.dumps(reach)
            resources = conn.execute(
                "SELECT id, type, name, labels FROM resources WHERE id IN (SELECT value FROM json_each(?))", (ids,)
            )
            # Each reached resource's own edges, kept when both ends were reached: linear in those
            # edges. The unary + keeps dependency_id out of the index lookup; with it SQLite probed
            # every (dependent, dependency) pair, the square of the neighbourhood.
            edges = conn.execute(
                "SELECT d.dependent_id, d.dependency_id FROM json_each(?) AS r"
                " CROSS JOIN dependencies AS d ON d.dependent_id = r.value"
                " WHERE +d.dependency_id IN (SELECT value FROM json_each(?)) LIMIT ?",
                (ids, ids, max_edges + 1),
            ).fetchall()
            return topology(resource_id, resources, edges, max_edges, truncated)

        return await self._read(run, topology=True)

    async def record_change(self, change: Change) -> Change:
        doc = codec.dumps(codec.to_doc(change))

        def run(conn: sqlite3.Connection) -> Change:
            conn.execute(
                """INSERT INTO changes (change_id, kind, resource_id, occurred_at, doc) VALUES (?, ?, ?, ?, ?)
                   ON CONFLICT (change_id) DO UPDATE SET kind = excluded.kind, resource_id = excluded.resource_id,
                   occurred_at = excluded.occurred_at, doc = excluded.doc""",
                (change.change_id, int(change.kind), change.resource_id, change.occurred_at, doc),
            )
            if change.resource_id:
                conn.execute(_BARE_RESOURCE, (change.resource_id,))
            return change

        return await self._write(run)

    async def list_changes(
        self,
        resource_ids: Sequence[str],
        start: Micros,
        end: Micros,
        kinds: Sequence[ChangeKind],
        limit: int,
    ) -> list[Change]:
        where = ["occurred_at BETWEEN ? AND ?"]
        args: list[Any] = [start, end]
        if resource_ids:
            where.append(f"resource_id IN ({','.join('?' * len(resource_ids))})")
            args.extend(resource_ids)
        if kinds:
            where.append(f"kind IN ({','.join('?' * len(kinds))})")
            args.extend(int(k) for k in kinds)
        sql = f"SELECT doc FROM changes WHERE {' AND '.join(where)} ORDER BY occurred_at DESC, change_id LIMIT ?"
        return await self._read(
            lambda conn: [codec.from_doc(Change, codec.loads(r[0])) for r in conn.execute(sql, [*args, limit])]
        )
