"""The durable outbox: every decided notification is a row here until it is sent or dead.

It lives in the store's database file but on its own connection and table, so the store's
writer never waits on it (WAL lets both write; writes here take BEGIN IMMEDIATE and retry on
busy through busy_timeout). A row is written when the rule fires, before the message is composed,
so a decision made before a crash is composed and sent after the restart.
"""

from __future__ import annotations

import asyncio
import sqlite3
import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from enum import StrEnum
from pathlib import Path
from typing import TYPE_CHECKING, Protocol, TypeVar

from errorreplay_server.domain.model import Micros

if TYPE_CHECKING:
    from errorreplay_server.settings import Settings

T = TypeVar("T")


class OutboxState(StrEnum):
    PENDING = "pending"
    SENT = "sent"
    DEAD = "dead"


@dataclass(slots=True)
class OutboxEntry:
    message_id: str
    rule: str
    target: str
    trigger: str
    error_id: str
    group_id: str
    decided_at: Micros
    # The composed body, exactly as sent on every attempt; "" until composed.
    payload: str = ""
    state: OutboxState = OutboxState.PENDING
    attempts: int = 0
    next_attempt_at: Micros = 0
    last_error: str = ""
    sent_at: Micros = 0


class Outbox(Protocol):
    async def start(self) -> None: ...

    async def close(self) -> None: ...

    async def add(self, entries: Sequence[OutboxEntry]) -> None: ...

    async def set_payload(self, message_id: str, payload: str) -> None: ...

    async def due(self, now: Micros, limit: int, skip: Sequence[str]) -> list[OutboxEntry]: ...

    async def next_due_at(self) -> Micros | None: ...

    async def mark_sent(self, message_id: str, attempts: int, now: Micros) -> None: ...

    async def retry_later(self, message_id: str, attempts: int, at: Micros, error: str) -> None: ...

    async def mark_dead(self, message_id: str, attempts: int, error: str) -> None: ...

    async def recent_decisions(self, since: Micros) -> list[tuple[str, str, Micros]]: ...

    async def entries(self, states: Sequence[OutboxState], limit: int) -> list[OutboxEntry]: ...

    async def counts(self) -> dict[OutboxState, int]: ...

    async def forget_before(self, before: Micros) -> int: ...


_SCHEMA = """
CREATE TABLE IF NOT EXISTS notification_outbox (
    message_id TEXT PRIMARY KEY,
    rule TEXT NOT NULL,
    target TEXT NOT NULL,
    trigger TEXT NOT NULL,
    error_id TEXT NOT NULL,
    group_id TEXT NOT NULL,
    decided_at INTEGER NOT NULL,
    payload TEXT NOT NULL DEFAULT '',
    state TEXT NOT NULL,
    attempts INTEGER NOT NULL DEFAULT 0,
    next_attempt_at INTEGER NOT NULL DEFAULT 0,
    last_error TEXT NOT NULL DEFAULT '',
    sent_at INTEGER NOT NULL DEFAULT 0
);
CREATE INDEX IF NOT EXISTS notification_outbox_due ON notification_outbox (state, next_attempt_at);
CREATE INDEX IF NOT EXISTS notification_outbox_decided ON notification_outbox (decided_at);
"""
_COLUMNS = (
    "message_id, rule, target, trigger, error_id, group_id, decided_at, payload, state, attempts,"
    " next_attempt_at, last_error, sent_at"
)


def _entry(row: Sequence[object]) -> OutboxEntry:
    values = list(row)
    values[8] = OutboxState(str(values[8]))
    return OutboxEntry(*values)  # type: ignore[arg-type]


class SqliteOutbox:
    """The outbox table in the SQLite store's file, on a connection of its own."""

    def __init__(self, path: Path, *, read_only: bool = False) -> None:
        self._path = path
        self._read_only = read_only
        self._conn: sqlite3.Connection | None = None
        self._lock = threading.Lock()

    def _open(self) -> sqlite3.Connection:
        if self._read_only:
            conn = sqlite3.connect(f"file:{self._path}?mode=ro", uri=True, check_same_thread=False)
        else:
            self._path.parent.mkdir(parents=True, exist_ok=True)
            conn = sqlite3.connect(self._path, isolation_level=None, check_same_thread=False)
            conn.execute("PRAGMA journal_mode=WAL")
            conn.execute("PRAGMA synchronous=FULL")
        conn.execute("PRAGMA busy_timeout=5000")
        if not self._read_only:
            conn.executescript(_SCHEMA)
        return conn

    async def start(self) -> None:
        self._conn = await asyncio.to_thread(self._open)

    def start_sync(self) -> None:
        self._conn = self._open()

    async def close(self) -> None:
        conn, self._conn = self._conn, None
        if conn is not None:
            await asyncio.to_thread(self._close, conn)

    def _close(self, conn: sqlite3.Connection) -> None:
        with self._lock:
            conn.close()

    def _run(self, work: Callable[[sqlite3.Connection], T]) -> T:
        if self._conn is None:
            raise RuntimeError("outbox is closed")
        with self._lock:
            return work(self._conn)

    def _write(self, work: Callable[[sqlite3.Connection], object]) -> None:
        def transaction(conn: sqlite3.Connection) -> None:
            conn.execute("BEGIN IMMEDIATE")
            try:
                work(conn)
            except BaseException:
                conn.execute("ROLLBACK")
                raise
            conn.execute("COMMIT")

        self._run(transaction)

    async def add(self, entries: Sequence[OutboxEntry]) -> None:
        rows = [
            (e.message_id, e.rule, e.target, e.trigger, e.error_id, e.group_id, e.decided_at, e.payload,
             e.state.value, e.attempts, e.next_attempt_at, e.last_error, e.sent_at)
            for e in entries
        ]  # fmt: skip
        await asyncio.to_thread(
            self._write,
            lambda conn: conn.executemany(
                f"INSERT OR IGNORE INTO notification_outbox ({_COLUMNS}) VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?)", rows
            ),
        )

    async def set_payload(self, message_id: str, payload: str) -> None:
        await asyncio.to_thread(
            self._write,
            lambda conn: conn.execute(
                "UPDATE notification_outbox SET payload = ? WHERE message_id = ?", (payload, message_id)
            ),
        )

    async def due(self, now: Micros, limit: int, skip: Sequence[str]) -> list[OutboxEntry]:
        skipped = list(skip)
        sql = (
            f"SELECT {_COLUMNS} FROM notification_outbox WHERE state = 'pending' AND next_attempt_at <= ?"
            + (f" AND message_id NOT IN ({','.join('?' * len(skipped))})" if skipped else "")
            + " ORDER BY next_attempt_at, decided_at LIMIT ?"
        )
        rows = await asyncio.to_thread(self._run, lambda conn: conn.execute(sql, [now, *skipped, limit]).fetchall())
        return [_entry(row) for row in rows]

    async def next_due_at(self) -> Micros | None:
        row = await asyncio.to_thread(
            self._run,
            lambda conn: conn.execute(
                "SELECT MIN(next_attempt_at) FROM notification_outbox WHERE state = 'pending'"
            ).fetchone(),
        )
        return None if row is None or row[0] is None else int(row[0])

    async def mark_sent(self, message_id: str, attempts: int, now: Micros) -> None:
        await asyncio.to_thread(
            self._write,
            lambda conn: conn.execute(
                "UPDATE notification_outbox SET state = 'sent', attempts = ?, sent_at = ?, last_error = ''"
                " WHERE message_id = ?",
                (attempts, now, message_id),
            ),
        )

    async def retry_later(self, message_id: str, attempts: int, at: Micros, error: str) -> None:
        await asyncio.to_thread(
            self._write,
            lambda conn: conn.execute(
                "UPDATE notification_outbox SET attempts = ?, next_attempt_at = ?, last_error = ? WHERE message_id = ?",
                (attempts, at, error, message_id),
            ),
        )

    async def mark_dead(self, message_id: str, attempts: int, error: str) -> None:
        await asyncio.to_thread(
            self._write,
            lambda conn: conn.execute(
                "UPDATE notification_outbox SET state = 'dead', attempts = ?, last_error = ? WHERE message_id = ?",
                (attempts, error, message_id),
            ),
        )

    async def recent_decisions(self, since: Micros) -> list[tuple[str, str, Micros]]:
        rows = await asyncio.to_thread(
            self._run,
            lambda conn: conn.execute(
                "SELECT rule, group_id, MAX(decided_at) FROM notification_outbox WHERE decided_at >= ?"
                " GROUP BY rule, group_id",
                (since,),
            ).fetchall(),
        )
        return [(str(r[0]), str(r[1]), int(r[2])) for r in rows]

    async def entries(self, states: Sequence[OutboxState], limit: int) -> list[OutboxEntry]:
        return await asyncio.to_thread(self.entries_sync, states, limit)

    def entries_sync(self, states: Sequence[OutboxState], limit: int) -> list[OutboxEntry]:
        wanted = [s.value for s in states]
        where = f" WHERE state IN ({','.join('?' * len(wanted))})" if wanted else ""
        sql = f"SELECT {_COLUMNS} FROM notification_outbox{where} ORDER BY decided_at DESC LIMIT ?"
        try:
            rows = self._run(lambda conn: conn.execute(sql, [*wanted, limit]).fetchall())
        except sqlite3.OperationalError as exc:
            if "no such table" in str(exc):
                return []  # nothing was ever decided in this database
            raise
        return [_entry(row) for row in rows]

    async def counts(self) -> dict[OutboxState, int]:
        rows = await asyncio.to_thread(
            self._run,
            lambda conn: conn.execute("SELECT state, COUNT(*) FROM notification_outbox GROUP BY state").fetchall(),
        )
        counts = dict.fromkeys(OutboxState, 0)
        counts.update({OutboxState(str(state)): int(n) for state, n in rows})
        return counts

    async def forget_before(self, before: Micros) -> int:
        """Delete sent and dead messages decided before `before`; pending ones always stay."""
        removed = 0

        def delete(conn: sqlite3.Connection) -> None:
            nonlocal removed
            removed = conn.execute(
                "DELETE FROM notification_outbox WHERE state != 'pending' AND decided_at < ?", (before,)
            ).rowcount

        await asyncio.to_thread(self._write, delete)
        return removed


def open_outbox(settings: Settings, *, read_only: bool = False) -> Outbox:
    """The outbox of the configured store: a table in the SQLite file, or nodes in Neo4j."""
    if settings.store == "neo4j":
        from errorreplay_server.notify.neo4j_outbox import Neo4jOutbox

        return Neo4jOutbox(settings.neo4j)
    return SqliteOutbox(settings.sqlite_path, read_only=read_only)
