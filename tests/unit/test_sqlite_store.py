"""The embedded store refuses a database of another schema version instead of misreading it, and
upgrades one it knows how to."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest

from errorreplay_server.domain.errors import StoreUnavailable
from errorreplay_server.store.sqlite import SCHEMA_VERSION, SqliteStore


async def test_reopening_keeps_the_schema(tmp_path: Path) -> None:
    for _ in range(2):
        store = SqliteStore(tmp_path / "db.sqlite")
        await store.start()
        await store.close()
    with sqlite3.connect(tmp_path / "db.sqlite") as conn:
        assert conn.execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION


async def test_another_schema_version_is_refused(tmp_path: Path) -> None:
    with sqlite3.connect(tmp_path / "old.sqlite") as conn:
        conn.execute("CREATE TABLE errors (seq INTEGER PRIMARY KEY, fingerprint TEXT)")
    with pytest.raises(StoreUnavailable, match="schema version 0"):
        await SqliteStore(tmp_path / "old.sqlite").start()


async def test_a_version_4_database_is_upgraded_in_place(tmp_path: Path) -> None:
    from errorreplay_server.domain.model import ErrorFilter
    from tests.factories import new_error

    path = tmp_path / "db.sqlite"
    store = SqliteStore(path)
    await store.start()
    await store.capture([new_error("kept across the upgrade", error_type="Kept", environment="prod")])
    await store.close()
    with sqlite3.connect(path) as conn:  # back to version 4: time-only column indexes, none on environment
        conn.execute("DROP INDEX errors_by_environment")
        for name, column in (("type", "error_type"), ("resource", "resource_id"), ("severity", "severity")):
            conn.execute(f"DROP INDEX errors_by_{name}")
            conn.execute(f"CREATE INDEX errors_by_{name} ON errors ({column}, occurred_at, received_at)")
        conn.execute("PRAGMA user_version = 4")
    store = SqliteStore(path)
    await store.start()
    try:
        page = await store.search_errors(ErrorFilter(error_type="Kept", environment="prod"), 10)
        assert [e.report.message for e in page.items] == ["kept across the upgrade"]
    finally:
        await store.close()
    with sqlite3.connect(path) as conn:
        assert conn.execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION
        columns = [row[2] for row in conn.execute("PRAGMA index_info(errors_by_type)")]
        assert columns == ["error_type", "occurred_at", "received_at", "severity", "source", "environment"]
        assert next(row[2] for row in conn.execute("PRAGMA index_info(errors_by_environment)")) == "environment"
        assert [row[2] for row in conn.execute("PRAGMA index_info(errors_by_resource)")] == RESOURCE_INDEX_COLUMNS


RESOURCE_INDEX_COLUMNS = [
    *("resource_id", "occurred_at", "received_at", "severity", "source", "environment"),
    *("error_id", "group_id", "correlation_id", "trace_id"),
]


async def test_a_version_5_database_gets_the_covering_resource_index(tmp_path: Path) -> None:
    from tests.factories import new_error

    path = tmp_path / "db.sqlite"
    store = SqliteStore(path)
    await store.start()
    pivot = new_error("the error", resource_id="db-1", occurred_at=10_000_000)
    await store.capture([pivot, new_error("a neighbour", resource_id="db-1", occurred_at=10_000_500)])
    await store.close()
    with sqlite3.connect(path) as conn:  # back to version 5: the resource index without the link columns
        conn.execute("DROP INDEX errors_by_resource")
        conn.execute(
            "CREATE INDEX errors_by_resource"
            " ON errors (resource_id, occurred_at, received_at, severity, source, environment)"
        )
        conn.execute("PRAGMA user_version = 5")
    store = SqliteStore(path)
    await store.start()
    try:
        related = await store.related_errors(pivot.snapshot, 0, 20_000_000, [], 10, documents=False)
        assert [e.report.occurred_at for e in related] == [10_000_500]
    finally:
        await store.close()
    with sqlite3.connect(path) as conn:
        assert conn.execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION
        assert [row[2] for row in conn.execute("PRAGMA index_info(errors_by_resource)")] == RESOURCE_INDEX_COLUMNS


async def test_the_related_walk_on_a_resource_reads_its_index_alone(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """GetError's related read walks about 140 index entries at 1,000,000 errors; a row lookup
    per entry was most of its cost, so the walk must be answered from errors_by_resource."""
    from errorreplay_server.store import sqlite
    from tests.factories import new_error

    statements: list[str] = []
    connect = sqlite._connect

    def traced(path: str) -> sqlite3.Connection:
        conn = connect(path)
        conn.set_trace_callback(statements.append)
        return conn

    monkeypatch.setattr(sqlite, "_connect", traced)
    path = tmp_path / "db.sqlite"
    store = SqliteStore(path)
    await store.start()
    try:
        errors = [new_error(f"e{i}", resource_id=f"svc-{i % 3}", occurred_at=10_000_000 + i) for i in range(30)]
        await store.capture(errors)
        statements.clear()
        related = await store.related_errors(errors[0].snapshot, 0, 20_000_000, ["svc-1"], 100, documents=False)
        assert len(related) == 19  # svc-0's other nine and svc-1's ten
    finally:
        await store.close()
    walks = [sql for sql in statements if "resource_id = " in sql and "ORDER BY occurred_at" in sql]
    assert len(walks) == 4  # two resources, each walked back and forward from the error
    with sqlite3.connect(path) as conn:
        for sql in walks:
            plan = " ".join(str(row[3]) for row in conn.execute(f"EXPLAIN QUERY PLAN {sql}"))
            assert "USING COVERING INDEX errors_by_resource" in plan, (sql, plan)


async def test_text_search_walking_the_time_index_gives_the_same_pages(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from errorreplay_server.domain.model import ErrorFilter
    from errorreplay_server.store import sqlite
    from tests.factories import new_error

    store = SqliteStore(tmp_path / "db.sqlite")
    await store.start()
    try:
        await store.capture([new_error(f"disk full on node {i}", occurred_at=1_000 + i % 7) for i in range(40)])
        await store.capture([new_error(f"other text {i}") for i in range(10)])
        flt = ErrorFilter(text="disk full")

        async def walk() -> tuple[list[str], int]:
            ids, token, total = [], "", -1
            while True:
                page = await store.search_errors(flt, 6, token)
                ids += [e.error_id for e in page.items]
                total, token = page.total_size, page.next_page_token
                if not token:
                    return ids, total

        sorted_matches = await walk()
        monkeypatch.setattr(sqlite, "TEXT_MATCHES_SCANNED_BY_TIME", 0)
        assert await walk() == sorted_matches
        assert sorted_matches[1] == 40 and len(set(sorted_matches[0])) == 40
    finally:
        await store.close()


async def test_tag_search_probing_rows_gives_the_same_pages(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from errorreplay_server.domain.model import ErrorFilter, Severity
    from errorreplay_server.store import sqlite
    from tests.factories import new_error

    store = SqliteStore(tmp_path / "db.sqlite")
    await store.start()
    try:
        await store.capture(
            [
                new_error(
                    f"e {i}",
                    severity=Severity.CRITICAL if i % 3 else Severity.LOW,
                    occurred_at=1_000 + i % 11,
                    tags={"region": "eu" if i % 2 else "us", "pod": f"p{i % 5}"},
                )
                for i in range(90)
            ]
        )
        filters = [
            ErrorFilter(tags={"region": "eu"}),
            ErrorFilter(tags={"region": "eu"}, severities=[Severity.CRITICAL]),
            ErrorFilter(tags={"region": "eu", "pod": "p1"}),
            ErrorFilter(tags={"region": "nowhere"}),
        ]

        async def walk(flt: ErrorFilter) -> tuple[list[str], int]:
            ids, token, total = [], "", -1
            while True:
                page = await store.search_errors(flt, 7, token)
                ids += [e.error_id for e in page.items]
                total = total if token else page.total_size
                token = page.next_page_token
                if not token:
                    return ids, total

        listed = [await walk(f) for f in filters]
        monkeypatch.setattr(sqlite, "COMMON_TAG_ROWS", 0)  # every tag is common: probed row by row
        assert [await walk(f) for f in filters] == listed
        assert [total for _, total in listed] == [45, 30, 9, 0]
        assert [len(set(ids)) for ids, _ in listed] == [45, 30, 9, 0]
    finally:
        await store.close()


async def test_rollup_statistics_equal_the_row_ones(tmp_path: Path) -> None:
    from errorreplay_server.domain.model import MICROS_PER_HOUR, MICROS_PER_MINUTE, ErrorFilter, Severity, Source
    from tests.factories import new_error

    store = SqliteStore(tmp_path / "db.sqlite")
    await store.start()
    try:
        t0 = 1_760_000_000_000_000
        await store.capture(
            [
                new_error(
                    f"e {i}",
                    severity=Severity(1 + i % 5),
                    source=Source(1 + i % 3),
                    resource_id=f"r{i % 4}" if i % 6 else "",
                    resource_type="db" if i % 2 else "",
                    error_type=f"T{i % 3}",
                    group_id=f"grp_{i % 5}",
                    occurred_at=t0 + i * 7 * MICROS_PER_MINUTE,
                    tags={"all": "yes"},
                )
                for i in range(120)
            ]
        )
        for start, end, bucket in (
            (t0 + 13 * MICROS_PER_MINUTE, t0 + 11 * MICROS_PER_HOUR + 5, MICROS_PER_HOUR),
            (t0 - t0 % MICROS_PER_HOUR, t0 + 14 * MICROS_PER_HOUR, 3 * MICROS_PER_HOUR),
        ):
            from_rollups = await store.statistics(ErrorFilter(), start, end, bucket, 3)
            from_rows = await store.statistics(ErrorFilter(tags={"all": "yes"}), start, end, bucket, 3)
            assert from_rollups == from_rows
            assert from_rollups.total_count == sum(t.count for t in from_rollups.timed_counts) > 50
            assert len(from_rollups.top_groups) == 3
    finally:
        await store.close()


def test_only_errors_of_the_database_itself_mean_unavailable() -> None:
    from errorreplay_server.store.sqlite import _means_unavailable

    assert _means_unavailable(sqlite3.OperationalError("database is locked"))
    assert _means_unavailable(sqlite3.OperationalError("disk I/O error"))
    assert _means_unavailable(sqlite3.OperationalError("unable to open database file"))
    assert not _means_unavailable(sqlite3.OperationalError('fts5: syntax error near "("'))
    assert not _means_unavailable(sqlite3.OperationalError("no such column: nope"))


async def test_close_interrupts_busy_readers_instead_of_waiting_for_them(tmp_path: Path) -> None:
    import asyncio
    import threading

    from errorreplay_server.store import sqlite

    store = SqliteStore(tmp_path / "db.sqlite")
    await store.start()
    started = threading.Semaphore(0)
    # Long enough (tens of seconds) that only an interrupt ends it early; it also keeps every
    # reader thread busy, so one more read waits in the queue.
    slow = "WITH RECURSIVE n(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM n WHERE x < 100000000) SELECT COUNT(*) FROM n"

    def busy(conn: sqlite3.Connection) -> int:
        started.release()
        return int(conn.execute(slow).fetchone()[0])

    reads = [asyncio.ensure_future(store._read(busy)) for _ in range(sqlite.READER_THREADS + 1)]
    for _ in range(sqlite.READER_THREADS):
        await asyncio.to_thread(started.acquire)
    await asyncio.wait_for(store.close(), 60)
    outcomes = await asyncio.gather(*reads, return_exceptions=True)
    assert all(isinstance(o, StoreUnavailable) for o in outcomes), outcomes


async def test_the_signing_key_is_made_once_and_kept_across_restarts(tmp_path: Path) -> None:
    from errorreplay_server.domain.model import ErrorFilter
    from tests.factories import new_error

    store = SqliteStore(tmp_path / "db.sqlite")
    await store.start()
    await store.capture([new_error(f"e{i}") for i in range(3)])
    token = (await store.search_errors(ErrorFilter(), 1)).next_page_token
    key = store.token_key()
    await store.close()
    again = SqliteStore(tmp_path / "db.sqlite")
    await again.start()
    try:
        assert again.token_key() == key and len(key) == 32
        assert len((await again.search_errors(ErrorFilter(), 1, token)).items) == 1
    finally:
        await again.close()
    other = SqliteStore(tmp_path / "other.sqlite")
    await other.start()
    try:
        assert other.token_key() != key
    finally:
        await other.close()


async def test_topology_bounds_cap_each_hop_and_the_edges(tmp_path: Path) -> None:
    from errorreplay_server.domain.model import Dependency
    from errorreplay_server.store.base import TopologyBounds

    store = SqliteStore(tmp_path / "db.sqlite", TopologyBounds(max_neighbours_per_hop=2, max_edges=3))
    await store.start()
    try:
        # root <- a, b, c (three dependents); a <- a1, a2, a3; root -> x (one dependency).
        deps = [Dependency(d, "root") for d in ("a", "b", "c")]
        deps += [Dependency(d, "a") for d in ("a1", "a2", "a3")] + [Dependency("root", "x")]
        await store.upsert_resources([], deps)
        one_hop = await store.get_topology("root", 1)
        assert one_hop.truncated
        ids = {r.id for r in one_hop.resources}
        assert "root" in ids and "x" in ids and len(ids - {"root", "x"}) == 2
        small = await store.get_topology("x", 1)
        assert not small.truncated and {r.id for r in small.resources} == {"x", "root"}
        deep = await store.get_topology("a", 2)
        # a's dependents are capped at 2; edges at 3 of the 4 among the reached resources.
        assert deep.truncated and len(deep.dependencies) == 3
    finally:
        await store.close()


async def test_a_database_from_before_pending_context_lists_its_pending_errors(tmp_path: Path) -> None:
    from errorreplay_server.domain.model import CollectionState, CollectorStatus, ErrorContext
    from tests.factories import new_error

    path = tmp_path / "db.sqlite"
    store = SqliteStore(path)
    await store.start()
    pending, done = new_error(), new_error()
    pending.snapshot.context = ErrorContext(statuses=[CollectorStatus("loki", CollectionState.PENDING, "", 0, 0)])
    done.snapshot.context = ErrorContext(statuses=[CollectorStatus("loki", CollectionState.OK, "", 1, 1)])
    await store.capture([pending, done])
    await store.close()
    with sqlite3.connect(path) as conn:  # as a database written by the previous release looks
        conn.execute("DROP TABLE pending_context")
    store = SqliteStore(path)
    await store.start()
    try:
        assert [s.error_id for s in await store.pending_context_errors(0, 10)] == [pending.snapshot.error_id]
    finally:
        await store.close()


async def test_text_walking_the_time_index_gives_the_same_answers(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A common word makes search walk the time index and probe every word per row: the filter
    cases of the contract suite must answer exactly as through the word lists."""
    from errorreplay_server.store import sqlite
    from tests.contract.filter_cases import CASES, case_filter, dataset

    monkeypatch.setattr(sqlite, "TEXT_MATCHES_SCANNED_BY_TIME", 0)
    store = SqliteStore(tmp_path / "db.sqlite")
    await store.start()
    try:
        snapshots = [o.snapshot for o in await store.capture(dataset("walk"))]
        index = {s.error_id: i for i, s in enumerate(snapshots)}
        for name, fields, expected in CASES:
            page = await store.search_errors(case_filter("walk", fields), 3)
            got = set()
            while True:
                got |= {index[e.error_id] for e in page.items}
                assert page.total_size == len(expected), name
                if not page.next_page_token:
                    break
                page = await store.search_errors(case_filter("walk", fields), 3, page.next_page_token)
            assert got == expected, name
    finally:
        await store.close()
