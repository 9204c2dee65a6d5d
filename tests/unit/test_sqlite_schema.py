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
