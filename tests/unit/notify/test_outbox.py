"""The SQLite outbox on its own connection beside the store, in the store's file."""

from __future__ import annotations

from pathlib import Path

from errorreplay_server.notify.outbox import OutboxEntry, OutboxState, SqliteOutbox
from errorreplay_server.settings import Settings
from errorreplay_server.store.factory import open_store


def entry(message_id: str, decided_at: int) -> OutboxEntry:
    return OutboxEntry(message_id, "rule", "target", "new_group", "err", "grp", decided_at, next_attempt_at=decided_at)


async def test_due_retry_sent_dead_and_retention(tmp_path: Path) -> None:
    settings = Settings(data_dir=tmp_path)
    store = open_store(settings)
    await store.start()  # the store's own connection holds the same file open
    outbox = SqliteOutbox(settings.sqlite_path)
    await outbox.start()
    try:
        await outbox.add([entry("a", 100), entry("b", 200), entry("c", 300)])
        await outbox.add([entry("a", 100)])  # a repeated write of one decision is ignored
        assert [e.message_id for e in await outbox.due(250, 10, [])] == ["a", "b"]
        assert [e.message_id for e in await outbox.due(250, 10, ["a"])] == ["b"]  # in flight elsewhere
        await outbox.set_payload("a", '{"x":1}')
        await outbox.retry_later("a", 1, 1000, "HTTP 500")
        assert [e.message_id for e in await outbox.due(500, 10, [])] == ["b", "c"]
        assert await outbox.next_due_at() == 200
        await outbox.mark_sent("b", 1, 600)
        await outbox.mark_dead("c", 3, "HTTP 404")
        counts = await outbox.counts()
        assert counts == {OutboxState.PENDING: 1, OutboxState.SENT: 1, OutboxState.DEAD: 1}
        (a,) = await outbox.entries([OutboxState.PENDING], 10)
        assert (a.payload, a.attempts, a.next_attempt_at, a.last_error) == ('{"x":1}', 1, 1000, "HTTP 500")
        assert await outbox.recent_decisions(150) == [("rule", "grp", 300)]
        # Retention removes finished messages only: the pending one stays, however old.
        assert await outbox.forget_before(1_000) == 2
        assert [e.message_id for e in await outbox.entries([], 10)] == ["a"]
    finally:
        await outbox.close()
        await store.close()


def test_reading_a_database_without_an_outbox(tmp_path: Path) -> None:
    import sqlite3

    sqlite3.connect(tmp_path / "errorreplay.db").close()
    outbox = SqliteOutbox(tmp_path / "errorreplay.db", read_only=True)
    outbox.start_sync()
    assert outbox.entries_sync([], 10) == []
