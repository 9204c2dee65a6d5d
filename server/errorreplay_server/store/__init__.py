"""Stores: one `Store` interface, an embedded SQLite implementation and a Neo4j (Bolt) one."""
