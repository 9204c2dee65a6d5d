"""The differences between the Bolt servers the Neo4j store runs on, in one place.

The store writes Neo4j 5 Cypher. The contract suite also runs it against ArcadeDB's Bolt endpoint
(arcadedb-embedded 26.10), which answers `dbms.components()` as "Neo4j Kernel 5.26.0" and
accepts the same constraint and index syntax. What differs, as measured:

- TEXT indexes. Neo4j 5 builds a trigram index that `CONTAINS` uses. ArcadeDB accepts
  `CREATE TEXT INDEX` but builds an ordinary LSM range index (SHOW INDEXES says RANGE) that
  `CONTAINS` cannot use. Text search no longer uses `CONTAINS` (it matches whole words, see
  domain/words.py), so the store creates no TEXT index.
- Full-text indexes (`CREATE FULLTEXT INDEX`, `db.index.fulltext.queryNodes`) are rejected by
  ArcadeDB ("Only standard, RANGE and TEXT index types are supported"). Neither server indexes the
  elements of a list property, so the `words` list is checked per candidate on both.
- Uniqueness constraints. Neo4j rejects a duplicate at the statement that writes it; ArcadeDB
  accepts the statement and fails the COMMIT of an explicit transaction with
  `Neo.ClientError.Schema.ConstraintValidationFailed`. The store treats an error from either
  place the same way (the writer retries the jobs of a failed commit one by one).
- Planning. ArcadeDB plans from the first pattern of a MATCH: a tag filter written as
  `(:Tag {…})<-[:TAGGED]-(e:ErrorSnapshot)` is 5-25x faster there than
  `(e:ErrorSnapshot), (e)-[:TAGGED]->(:Tag {…})`, so the store writes tags first (Neo4j's planner
  does not care). ArcadeDB never serves ORDER BY from an index and intersects no two indexes: a
  broad search sorts every match (about 80 ms for 50,000 errors on 2 cores). Neo4j can read
  the (occurred_at, received_at) index in order when a bound on occurred_at lets it seek there
  (not measured: no Neo4j was at hand).
- Integers above 2**53. ArcadeDB's index range scans answer wrongly when the bound is above 2**53:
  with 60 groups last seen in 2026 and two near 1.0e16 µs, `WHERE g.last_seen <= 10029006900000000`
  counted 2 groups instead of 62 (bounds below 2**53 were right), so a page of groups after such a
  group ended the list. Epoch microseconds stay below 2**53 until the year 2255, and capture
  refuses an occurred_at more than ERRORREPLAY_MAX_FUTURE_SKEW_SECONDS ahead, so stored times never reach
  it; tests that write to the store directly keep their times below it (tests/factories.py).
- The agent string: ArcadeDB says "Neo4j/5.26.0 compatible (ArcadeDB 26.10.2)", which is how
  `detect` tells them apart; `dbms.components()` says "Neo4j Kernel 5.26.0" on both.

Everything else the store uses behaved the same on both: UNWIND, MERGE … ON CREATE SET, FOREACH
with MERGE, pattern comprehensions, UNION ALL, OPTIONAL MATCH, integer division that truncates,
`SET n = map`, `REMOVE`, LIMIT from a parameter, shared bookmarks, composite uniqueness
constraints, and NULLs ignored by uniqueness constraints (request_id is absent when empty).
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class Dialect:
    name: str


NEO4J = Dialect(name="neo4j")
ARCADEDB = Dialect(name="arcadedb")


def detect(server_agent: str) -> Dialect:
    """The dialect of a server from its Bolt agent string.

    ArcadeDB says "Neo4j/5.26.0 compatible (ArcadeDB 26.10.2)"; Neo4j says "Neo4j/5.x.y". Anything
    unknown is treated as Neo4j, whose Cypher the store is written in.
    """
    return ARCADEDB if "arcadedb" in server_agent.lower() else NEO4J
