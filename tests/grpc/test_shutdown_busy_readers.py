"""SIGTERM's path (RunningServer.stop) finishes even while every store reader is busy."""

from __future__ import annotations

import asyncio
import sqlite3
import threading
from pathlib import Path

from errorreplay_server.domain.errors import StoreUnavailable
from errorreplay_server.server import start_server
from errorreplay_server.store import sqlite
from errorreplay_server.store.sqlite import SqliteStore
from tests.grpc.conftest import server_settings

# Tens of seconds of work: only an interrupt ends it early.
SLOW = "WITH RECURSIVE n(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM n WHERE x < 100000000) SELECT COUNT(*) FROM n"


async def test_stop_interrupts_busy_readers_instead_of_waiting_for_them(tmp_path: Path) -> None:
    running = await start_server(server_settings(tmp_path))
    store = running.store
    assert isinstance(store, SqliteStore)
    started = threading.Semaphore(0)

    def busy(conn: sqlite3.Connection) -> int:
        started.release()
        return int(conn.execute(SLOW).fetchone()[0])

    reads = [asyncio.ensure_future(store._read(busy)) for _ in range(sqlite.READER_THREADS)]
    for _ in range(sqlite.READER_THREADS):
        await asyncio.to_thread(started.acquire)
    await asyncio.wait_for(running.stop(grace=1.0), 60)
    outcomes = await asyncio.gather(*reads, return_exceptions=True)
    assert all(isinstance(o, StoreUnavailable) for o in outcomes), outcomes
