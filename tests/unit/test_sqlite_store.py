"""The embedded store refuses a database of another schema version instead of misreading it."""

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
