"""One store fixture, parametrised over every store: the contract suite runs against each."""

from __future__ import annotations

import os
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from errorreplay_server.settings import Neo4jSettings, Settings
from errorreplay_server.store.base import Store
from errorreplay_server.store.sqlite import SqliteStore
from tests.bolt_server import bolt_server  # noqa: F401  (the session-scoped ArcadeDB fixture)

STORES = ["sqlite", "bolt", "neo4j"]


@pytest.fixture(params=STORES)
async def store(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[Store]:
    kind = request.param
    s: Store
    if kind == "sqlite":
        s = SqliteStore(tmp_path / "contract.db")
    elif kind == "bolt":
        from errorreplay_server.store.neo4j import Neo4jStore

        server = request.getfixturevalue("bolt_server")
        s = Neo4jStore(
            Neo4jSettings(uri=server.uri, username=server.username, password=server.password, database=server.database)
        )
    else:
        neo4j = Settings.from_env(os.environ).neo4j
        if not neo4j.uri:
            pytest.skip("real Neo4j variant: set ERRORREPLAY_NEO4J_URI (and _USERNAME/_PASSWORD) to run it")
        from errorreplay_server.store.neo4j import Neo4jStore

        s = Neo4jStore(neo4j)
    await s.start()
    try:
        yield s
    finally:
        await s.close()
