"""Builds the configured store."""

from __future__ import annotations

from errorreplay_server.settings import Settings
from errorreplay_server.store.base import Store


def open_store(settings: Settings) -> Store:
    if settings.store == "neo4j":
        try:
            from errorreplay_server.store.neo4j import Neo4jStore
        except ImportError as exc:  # the driver is the server's `neo4j` extra (pyproject.toml)
            raise ValueError(
                f"ERRORREPLAY_STORE=neo4j needs the Neo4j driver: pip install 'errorreplay[neo4j]' ({exc})"
            ) from None

        if not settings.neo4j.uri:
            raise ValueError("ERRORREPLAY_STORE=neo4j needs NEO4J_URI (for example bolt://localhost:7687)")
        return Neo4jStore(settings.neo4j, settings.limits.topology_bounds)
    from errorreplay_server.store.sqlite import SqliteStore

    return SqliteStore(settings.sqlite_path, settings.limits.topology_bounds)
