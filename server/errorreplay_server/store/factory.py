"""Builds the configured store."""

from __future__ import annotations

from errorreplay_server.settings import Settings
from errorreplay_server.store.base import Store


def open_store(settings: Settings, *, read_only: bool = False) -> Store:
    """read_only: the store of a worker process, whose writes go to the writer process. SQLite
    then opens readers only; the Neo4j store needs no difference (the driver's sessions)."""
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

    return SqliteStore(settings.sqlite_path, settings.limits.topology_bounds, read_only=read_only)
