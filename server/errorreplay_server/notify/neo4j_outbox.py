"""The outbox for the Neo4j store: :NotificationOutbox nodes in the same database, on the outbox's
own driver (so the store's writer never waits on it), unique by message id."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict
from typing import Any

from neo4j import AsyncDriver, AsyncGraphDatabase

from errorreplay_server.domain.model import Micros
from errorreplay_server.notify.outbox import OutboxEntry, OutboxState
from errorreplay_server.settings import Neo4jSettings

_SCHEMA = (
    "CREATE CONSTRAINT errorreplay_outbox_message_id IF NOT EXISTS"
    " FOR (n:NotificationOutbox) REQUIRE n.message_id IS UNIQUE",
    "CREATE INDEX errorreplay_outbox_due IF NOT EXISTS FOR (n:NotificationOutbox) ON (n.state, n.next_attempt_at)",
    "CREATE INDEX errorreplay_outbox_decided IF NOT EXISTS FOR (n:NotificationOutbox) ON (n.decided_at)",
)
_FIELDS = (
    "n.message_id, n.rule, n.target, n.trigger, n.error_id, n.group_id, n.decided_at, n.payload, n.state,"
    " n.attempts, n.next_attempt_at, n.last_error, n.sent_at"
)


def _entry(values: Sequence[Any]) -> OutboxEntry:
    row = list(values)
    row[8] = OutboxState(str(row[8]))
    return OutboxEntry(*row)


class Neo4jOutbox:
    def __init__(self, settings: Neo4jSettings) -> None:
        self._settings = settings
        self._database = settings.database or None
        self._driver: AsyncDriver | None = None

    async def start(self) -> None:
        driver = AsyncGraphDatabase.driver(self._settings.uri, auth=(self._settings.username, self._settings.password))
        try:
            await driver.verify_connectivity()
            for statement in _SCHEMA:
                async with driver.session(database=self._database) as session:
                    await (await session.run(statement)).consume()
        except BaseException:
            await driver.close()
            raise
        self._driver = driver

    async def close(self) -> None:
        driver, self._driver = self._driver, None
        if driver is not None:
            await driver.close()

    async def _rows(self, query: str, **params: Any) -> list[list[Any]]:
        if self._driver is None:
            raise RuntimeError("outbox is closed")
        async with self._driver.session(database=self._database) as session:
            result = await session.run(query, params)
            return [list(record.values()) async for record in result]

    async def add(self, entries: Sequence[OutboxEntry]) -> None:
        rows = [{**asdict(e), "state": e.state.value} for e in entries]
        await self._rows(
            "UNWIND $rows AS row MERGE (n:NotificationOutbox {message_id: row.message_id}) ON CREATE SET n = row",
            rows=rows,
        )

    async def set_payload(self, message_id: str, payload: str) -> None:
        await self._rows("MATCH (n:NotificationOutbox {message_id: $id}) SET n.payload = $payload", id=message_id,
                         payload=payload)  # fmt: skip

    async def due(self, now: Micros, limit: int, skip: Sequence[str]) -> list[OutboxEntry]:
        rows = await self._rows(
            "MATCH (n:NotificationOutbox) WHERE n.state = 'pending' AND n.next_attempt_at <= $now"
            f" AND NOT n.message_id IN $skip RETURN {_FIELDS} ORDER BY n.next_attempt_at, n.decided_at LIMIT $limit",
            now=now,
            skip=list(skip),
            limit=limit,
        )
        return [_entry(r) for r in rows]

    async def next_due_at(self) -> Micros | None:
        rows = await self._rows("MATCH (n:NotificationOutbox) WHERE n.state = 'pending' RETURN min(n.next_attempt_at)")
        return None if not rows or rows[0][0] is None else int(rows[0][0])

    async def mark_sent(self, message_id: str, attempts: int, now: Micros) -> None:
        await self._rows(
            "MATCH (n:NotificationOutbox {message_id: $id})"
            " SET n.state = 'sent', n.attempts = $attempts, n.sent_at = $now, n.last_error = ''",
            id=message_id,
            attempts=attempts,
            now=now,
        )

    async def retry_later(self, message_id: str, attempts: int, at: Micros, error: str) -> None:
        await self._rows(
            "MATCH (n:NotificationOutbox {message_id: $id})"
            " SET n.attempts = $attempts, n.next_attempt_at = $at, n.last_error = $error",
            id=message_id,
            attempts=attempts,
            at=at,
            error=error,
        )

    async def mark_dead(self, message_id: str, attempts: int, error: str) -> None:
        await self._rows(
            "MATCH (n:NotificationOutbox {message_id: $id})"
            " SET n.state = 'dead', n.attempts = $attempts, n.last_error = $error",
            id=message_id,
            attempts=attempts,
            error=error,
        )

    async def recent_decisions(self, since: Micros) -> list[tuple[str, str, Micros]]:
        rows = await self._rows(
            "MATCH (n:NotificationOutbox) WHERE n.decided_at >= $since RETURN n.rule, n.group_id, max(n.decided_at)",
            since=since,
        )
        return [(str(r[0]), str(r[1]), int(r[2])) for r in rows]

    async def entries(self, states: Sequence[OutboxState], limit: int) -> list[OutboxEntry]:
        rows = await self._rows(
            "MATCH (n:NotificationOutbox) WHERE size($states) = 0 OR n.state IN $states"
            f" RETURN {_FIELDS} ORDER BY n.decided_at DESC LIMIT $limit",
            states=[s.value for s in states],
            limit=limit,
        )
        return [_entry(r) for r in rows]

    async def counts(self) -> dict[OutboxState, int]:
        rows = await self._rows("MATCH (n:NotificationOutbox) RETURN n.state, count(n)")
        counts = dict.fromkeys(OutboxState, 0)
        counts.update({OutboxState(str(state)): int(n) for state, n in rows})
        return counts

    async def forget_before(self, before: Micros) -> int:
        doomed = await self._rows(
            "MATCH (n:NotificationOutbox) WHERE n.state <> 'pending' AND n.decided_at < $before RETURN n.message_id",
            before=before,
        )
        ids = [r[0] for r in doomed]
        if ids:
            await self._rows("MATCH (n:NotificationOutbox) WHERE n.message_id IN $ids DELETE n", ids=ids)
        return len(ids)
