"""The outbox beside the store: SQLite on its own connection to the store's file, and Neo4j
nodes on their own driver (run against the Bolt test server, ArcadeDB)."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from errorreplay_server.notify.outbox import Outbox, OutboxEntry, OutboxState, SqliteOutbox
from errorreplay_server.settings import Neo4jSettings, Settings
from errorreplay_server.store.factory import open_store
from tests.bolt_server import bolt_server  # noqa: F401  (the session-scoped ArcadeDB fixture)


@pytest.fixture(params=["sqlite", "bolt"])
async def outbox(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[tuple[Outbox, str]]:
    prefix = uuid.uuid4().hex[:8]  # the Bolt database is shared by the session's tests
    if request.param == "sqlite":
        settings = Settings(data_dir=tmp_path)
        store = open_store(settings)
        await store.start()  # the store's own connection holds the same file open
        sqlite = SqliteOutbox(settings.sqlite_path)
        await sqlite.start()
        yield sqlite, prefix
        await sqlite.close()
        await store.close()
        return
    from errorreplay_server.notify.neo4j_outbox import Neo4jOutbox

    bolt = request.getfixturevalue("bolt_server")
    neo4j = Neo4jOutbox(
        Neo4jSettings(uri=bolt.uri, username=bolt.username, password=bolt.password, database=bolt.database)
    )
    await neo4j.start()
    yield neo4j, prefix
    await neo4j.close()


def entry(message_id: str, decided_at: int, group: str) -> OutboxEntry:
    return OutboxEntry(message_id, "rule", "target", "new_group", "err", group, decided_at, next_attempt_at=decided_at)


async def test_due_retry_sent_dead_and_retention(outbox: tuple[Outbox, str]) -> None:
    box, p = outbox
    # Times far in the past keep this test's rows apart from any other test's on a shared database.
    t = 1_000 + int(uuid.uuid4().int % 1_000_000) * 10_000
    a, b, c = f"{p}a", f"{p}b", f"{p}c"
    grp = f"grp_{p}"
    await box.add([entry(a, t + 100, grp), entry(b, t + 200, grp), entry(c, t + 300, grp)])
    await box.add([entry(a, t + 100, grp)])  # a repeated write of one decision is ignored

    def mine(entries: list[OutboxEntry]) -> list[str]:
        return [e.message_id for e in entries if e.message_id.startswith(p)]

    assert mine(await box.due(t + 250, 1000, [])) == [a, b]
    assert mine(await box.due(t + 250, 1000, [a])) == [b]  # in flight elsewhere
    await box.set_payload(a, '{"x":1}')
    await box.retry_later(a, 1, t + 1000, "HTTP 500")
    assert mine(await box.due(t + 500, 1000, [])) == [b, c]
    await box.mark_sent(b, 1, t + 600)
    await box.mark_dead(c, 3, "HTTP 404")
    states = {e.message_id: e for e in await box.entries([], 100_000) if e.message_id.startswith(p)}
    assert {k: e.state for k, e in states.items()} == {
        a: OutboxState.PENDING,
        b: OutboxState.SENT,
        c: OutboxState.DEAD,
    }
    assert (states[a].payload, states[a].attempts, states[a].next_attempt_at, states[a].last_error) == (
        '{"x":1}',
        1,
        t + 1000,
        "HTTP 500",
    )
    assert mine(await box.entries([OutboxState.DEAD], 100_000)) == [c]
    assert ("rule", grp, t + 300) in await box.recent_decisions(t + 150)
    counts = await box.counts()
    assert counts[OutboxState.PENDING] >= 1 and counts[OutboxState.DEAD] >= 1
    # Retention removes finished messages only: the pending one stays, however old.
    assert await box.forget_before(t + 1_000) >= 2
    assert mine(await box.entries([], 100_000)) == [a]


def test_reading_a_database_without_an_outbox(tmp_path: Path) -> None:
    import sqlite3

    sqlite3.connect(tmp_path / "errorreplay.db").close()
    outbox = SqliteOutbox(tmp_path / "errorreplay.db", read_only=True)
    outbox.start_sync()
    assert outbox.entries_sync([], 10) == []
