"""What only the Neo4j store has: Cypher injection, the graph model, start-up and outages.

Runs against the ArcadeDB Bolt server of tests/bolt_server.py (the session `bolt_server`, or a
private one for the outage test, which stops and restarts it).
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from neo4j import AsyncGraphDatabase

from errorreplay_server.domain.errors import NotFound, StoreUnavailable
from errorreplay_server.domain.model import (
    MICROS_PER_HOUR,
    MICROS_PER_MINUTE,
    Change,
    ChangeKind,
    Dependency,
    ErrorFilter,
    GroupStatus,
    Resource,
    Severity,
)
from errorreplay_server.settings import Neo4jSettings
from errorreplay_server.store.neo4j import Neo4jStore
from errorreplay_server.store.neo4j_dialect import ARCADEDB, NEO4J, detect
from tests.bolt_server import BoltServer, free_port, start_arcadedb
from tests.factories import new_error, own_days, uid

pytestmark = pytest.mark.bolt

T0 = 1_760_000_000_000_000

HOSTILE = [
    "it's",
    'say "hi"',
    "back\\slash\\",
    "}) RETURN 1 //",
    "// comment",
    "MATCH (n) DETACH DELETE n",
    "'}) MATCH (n) DETACH DELETE n //",
    '"}) WITH 1 AS x MATCH (n) DETACH DELETE n RETURN x //',
    "$error_id {x: 1}",
    "`backtick` ; DROP CONSTRAINT errorreplay_error_id",
    "new\nline\ttab",
]


def settings_of(server: BoltServer) -> Neo4jSettings:
    return Neo4jSettings(uri=server.uri, username=server.username, password=server.password, database=server.database)


@pytest.fixture
async def bolt_store(bolt_server: BoltServer) -> AsyncIterator[Neo4jStore]:
    store = Neo4jStore(settings_of(bolt_server))
    await store.start()
    try:
        yield store
    finally:
        await store.close()


async def cypher(server: BoltServer, query: str, **params: Any) -> list[list[Any]]:
    """Reads the graph directly, to check the model the store writes."""
    driver = AsyncGraphDatabase.driver(server.uri, auth=(server.username, server.password))
    try:
        async with driver.session(database=server.database) as session:
            result = await session.run(query, params)
            return await result.values()
    finally:
        await driver.close()


# --- Cypher injection -------------------------------------------------------------------------------
@pytest.mark.parametrize("hostile", HOSTILE)
async def test_hostile_strings_are_stored_and_found_exactly(
    bolt_store: Neo4jStore, bolt_server: BoltServer, hostile: str
) -> None:
    canary = new_error(tags={"canary": uid()})
    await bolt_store.capture([canary])
    before = await bolt_store.count_errors()
    key = uid()
    new = new_error(
        f"boom {hostile} end",
        resource_id=f"res {hostile} {key}",
        resource_type=hostile,
        service=hostile,
        environment=hostile,
        error_type=hostile,
        correlation_id=f"corr {hostile} {key}",
        trace_id=f"trace {hostile} {key}",
        request_id=f"req {hostile} {key}",
        group_id=f"grp {hostile} {key}",
        tags={hostile: hostile, "key": key},
        attributes={hostile: [hostile]},
        stack_trace=hostile,
    )
    new.snapshot.error_id = f"err {hostile} {key}"
    (outcome,) = await bolt_store.capture([new])
    assert not outcome.duplicate
    got = await bolt_store.get_error(new.snapshot.error_id)
    assert got.report == new.snapshot.report and got.error_id == new.snapshot.error_id

    r = new.snapshot.report
    for flt in (
        ErrorFilter(correlation_id=r.correlation_id),
        ErrorFilter(trace_id=r.trace_id),
        ErrorFilter(resource_ids=[r.resource_id]),
        ErrorFilter(group_id=new.snapshot.group_id),
        ErrorFilter(tags={hostile: hostile, "key": key}),
        ErrorFilter(tags={"key": key}, text=hostile),
        ErrorFilter(tags={"key": key}, resource_type=hostile, error_type=hostile, service=hostile, environment=hostile),
    ):
        page = await bolt_store.search_errors(flt, 10)
        assert [e.error_id for e in page.items] == [new.snapshot.error_id], flt
        assert page.total_size == 1
    # A tag value is matched exactly, not as a pattern or a prefix.
    assert (await bolt_store.search_errors(ErrorFilter(tags={hostile: hostile[:-1]}), 10)).total_size == 0

    (retry,) = await bolt_store.capture([new_error(request_id=new.snapshot.request_id)])
    assert retry.duplicate and retry.snapshot.error_id == new.snapshot.error_id
    group = await bolt_store.get_group(new.snapshot.group_id)
    assert group.count == 1 and group.affected_resource_ids == [r.resource_id]
    await bolt_store.update_group_status(new.snapshot.group_id, GroupStatus.MUTED)
    assert new.snapshot.group_id in await bolt_store.muted_group_ids()

    a, b = f"{hostile} a {key}", f"{hostile} b {key}"
    await bolt_store.upsert_resources([Resource(a, hostile, hostile, {hostile: hostile})], [Dependency(a, b)])
    topo = await bolt_store.get_topology(b, 1)
    assert {x.id for x in topo.resources} == {a, b}
    assert next(x for x in topo.resources if x.id == a).labels == {hostile: hostile}
    change = Change(f"chg {hostile} {key}", ChangeKind.CONFIG, a, T0, hostile, hostile, hostile, {hostile: hostile})
    await bolt_store.record_change(change)
    assert await bolt_store.list_changes([a], T0, T0, [], 10) == [change]

    # Nothing else was touched: the canary is there and nothing was deleted.
    assert (await bolt_store.get_error(canary.snapshot.error_id)).error_id == canary.snapshot.error_id
    assert await bolt_store.count_errors() == before + 1
    constraints = await cypher(bolt_server, "SHOW CONSTRAINTS YIELD name RETURN name")
    assert ["errorreplay_error_id"] in constraints


async def test_text_search_matches_the_stored_word_set(bolt_store: Neo4jStore, bolt_server: BoltServer) -> None:
    run = uid()
    new = new_error("Timeout in Straße (x.y) [z] *.* 100% done", tags={"run": run})
    await bolt_store.capture([new])
    rows = await cypher(bolt_server, "MATCH (e:ErrorSnapshot {error_id: $id}) RETURN e.words", id=new.snapshot.error_id)
    assert rows == [[["timeout", "in", "strasse", "x", "y", "z", "100", "done"]]]

    async def hits(text: str) -> int:
        return (await bolt_store.search_errors(ErrorFilter(tags={"run": run}, text=text), 10)).total_size

    # Whole words (domain/words.py), as on SQLite and in the stream matcher: no substrings.
    for text in ("timeout", "STRASSE", "(x.y)", "[z]", "100%", "timeout done", "*.*"):
        assert await hits(text) == 1, text
    for text in ("TIME", "100z", "timeout missing", "x.yz"):
        assert await hits(text) == 0, text


# --- the graph model --------------------------------------------------------------------------------
async def test_graph_model_edges(bolt_store: Neo4jStore, bolt_server: BoltServer) -> None:
    res, dep, key = uid("res-"), uid("res-"), uid()
    new = new_error(resource_id=res, tags={"key": key}, occurred_at=T0)
    await bolt_store.capture([new])
    await bolt_store.upsert_resources([], [Dependency(res, dep)])
    await bolt_store.record_change(Change(uid("chg-"), ChangeKind.DEPLOYMENT, res, T0 - 1, "v1"))
    eid, gid = new.snapshot.error_id, new.snapshot.group_id
    rows = await cypher(
        bolt_server,
        """MATCH (e:ErrorSnapshot {error_id: $eid})-[:OCCURRED_ON]->(r:Resource {id: $res}),
                 (e)-[:IN_GROUP]->(g:ErrorGroup {group_id: $gid})-[:AFFECTS]->(r),
                 (e)-[:TAGGED]->(:Tag {key: 'key', value: $key}),
                 (r)-[:DEPENDS_ON]->(:Resource {id: $dep}),
                 (:Change)-[:CHANGED]->(r)
           RETURN e.occurred_at, e.received_at, e.severity""",
        eid=eid,
        res=res,
        gid=gid,
        key=key,
        dep=dep,
    )
    # Timestamps and enums are integers, so that ranges and ordering are exact.
    assert rows == [[T0, new.snapshot.received_at, int(new.snapshot.report.severity)]]


async def test_errors_attach_to_an_existing_topology_graph(bolt_store: Neo4jStore, bolt_server: BoltServer) -> None:
    # A graph written by someone else: no labels_json, extra properties of its own.
    api, db = uid("api-"), uid("db-")
    await cypher(
        bolt_server,
        "CREATE (a:Resource {id: $api, type: 'service', name: 'API', owner: 'team-a'})"
        "-[:DEPENDS_ON]->(:Resource {id: $db, type: 'postgres', name: 'DB'})",
        api=api,
        db=db,
    )
    new = new_error(resource_id=api)
    await bolt_store.capture([new])
    topo = await bolt_store.get_topology(db, 1)
    assert {(r.id, r.type, r.name, tuple(r.labels)) for r in topo.resources} == {
        (api, "service", "API", ()),
        (db, "postgres", "DB", ()),
    }
    assert topo.dependencies == [Dependency(api, db)]
    owners = await cypher(
        bolt_server,
        "MATCH (:ErrorSnapshot {error_id: $eid})-[:OCCURRED_ON]->(r:Resource) RETURN r.owner, count(r)",
        eid=new.snapshot.error_id,
    )
    assert owners == [["team-a", 1]]


async def test_resource_seen_only_on_errors_is_not_a_topology_resource(bolt_store: Neo4jStore) -> None:
    res = uid("res-")
    await bolt_store.capture([new_error(resource_id=res)])
    # As in SQLite, which creates no resource on capture.
    with pytest.raises(NotFound):
        await bolt_store.get_topology(res, 1)
    await bolt_store.upsert_resources([], [Dependency(res, uid("res-"))])
    assert res in {r.id for r in (await bolt_store.get_topology(res, 1)).resources}


async def test_concurrent_captures_with_one_request_id_store_one(bolt_store: Neo4jStore) -> None:
    rid, gid = uid("req-"), uid("grp_")
    outcomes = await asyncio.gather(*(bolt_store.capture([new_error(request_id=rid, group_id=gid)]) for _ in range(20)))
    flat = [o for batch in outcomes for o in batch]
    assert sum(not o.duplicate for o in flat) == 1
    assert len({o.snapshot.error_id for o in flat}) == 1
    assert (await bolt_store.get_group(gid)).count == 1


async def test_regression_within_one_commit(bolt_store: Neo4jStore) -> None:
    gid = uid("grp_")
    await bolt_store.capture([new_error(group_id=gid)])
    await bolt_store.update_group_status(gid, GroupStatus.RESOLVED)
    outcomes = await bolt_store.capture([new_error(group_id=gid), new_error(group_id=gid)])
    # The first reopens the group; the second finds it open again.
    assert [o.regression for o in outcomes] == [True, False]
    group = await bolt_store.get_group(gid)
    assert group.count == 3 and group.status == GroupStatus.OPEN and group.regression


async def test_schema_set_up_is_idempotent(bolt_server: BoltServer) -> None:
    for _ in range(2):
        store = Neo4jStore(settings_of(bolt_server))
        await store.start()
        assert store.dialect == ARCADEDB
        await store.close()


def test_dialect_detection() -> None:
    assert detect("Neo4j/5.26.0 compatible (ArcadeDB 26.10.2)") == ARCADEDB
    assert detect("Neo4j/5.26.0") == NEO4J
    assert detect("") == NEO4J


# --- start-up and outages ---------------------------------------------------------------------------
async def test_start_fails_fast_naming_the_uri_when_nothing_listens() -> None:
    uri = f"bolt://127.0.0.1:{free_port()}"
    store = Neo4jStore(Neo4jSettings(uri=uri, username="neo4j", password="secret-pw", database="errorreplay"))
    started = time.monotonic()
    with pytest.raises(StoreUnavailable) as info:
        await store.start()
    assert time.monotonic() - started < 10
    assert uri in str(info.value)
    with pytest.raises(StoreUnavailable):
        await store.get_error("err_x")


async def test_start_fails_on_bad_credentials_and_unknown_database(bolt_server: BoltServer) -> None:
    wrong_pw = Neo4jSettings(
        uri=bolt_server.uri, username=bolt_server.username, password="not-the-password", database=bolt_server.database
    )
    with pytest.raises(StoreUnavailable, match="credentials"):
        await Neo4jStore(wrong_pw).start()
    missing = Neo4jSettings(
        uri=bolt_server.uri, username=bolt_server.username, password=bolt_server.password, database="no_such_database"
    )
    with pytest.raises(StoreUnavailable, match="no_such_database"):
        await Neo4jStore(missing).start()


async def test_start_rejects_a_bad_uri() -> None:
    with pytest.raises(StoreUnavailable, match="NEO4J_URI"):
        await Neo4jStore(
            Neo4jSettings(uri="http://localhost:7474", username="neo4j", password="pw", database="")
        ).start()


@pytest.mark.slow
async def test_outage_is_unavailable_and_the_store_recovers(tmp_path: Path) -> None:
    server = await asyncio.to_thread(start_arcadedb, tmp_path / "outage")
    try:
        store = Neo4jStore(settings_of(server))
        await store.start()
        try:
            kept = new_error(request_id=uid("req-"), tags={"run": uid()})
            await store.capture([kept])

            await asyncio.to_thread(server.stop)
            retry_id = uid("req-")
            lost = new_error(request_id=retry_id, occurred_at=T0)
            started = time.monotonic()
            with pytest.raises(StoreUnavailable):
                await store.capture([lost])
            with pytest.raises(StoreUnavailable):
                await store.get_error(kept.snapshot.error_id)
            with pytest.raises(StoreUnavailable):
                await store.search_errors(ErrorFilter(), 10)
            with pytest.raises(StoreUnavailable):
                await store.update_group_status(kept.snapshot.group_id, GroupStatus.ACKNOWLEDGED)
            # Fails in about a second, not after the driver's 30 s of retries.
            assert time.monotonic() - started < 15

            await asyncio.to_thread(server.restart)
            # The same driver reconnects by itself; what was committed before is still there.
            assert (await store.get_error(kept.snapshot.error_id)).error_id == kept.snapshot.error_id
            (outcome,) = await store.capture([lost])
            assert not outcome.duplicate
            (again,) = await store.capture([new_error(request_id=retry_id)])
            assert again.duplicate and again.snapshot.error_id == lost.snapshot.error_id
            window = ErrorFilter(start_time=T0 - MICROS_PER_MINUTE, end_time=T0 + MICROS_PER_MINUTE)
            assert lost.snapshot.error_id in {e.error_id for e in (await store.search_errors(window, 100)).items}
        finally:
            await store.close()
    finally:
        await asyncio.to_thread(server.stop)


async def test_a_received_at_another_replica_took_is_stamped_anew(
    bolt_store: Neo4jStore, bolt_server: BoltServer
) -> None:
    """Two replicas stamp with their own clocks: when one commits a stamp the other already
    committed, the store says StampTaken and the capture layer stamps again (capture/service.py)."""
    from errorreplay_server.domain.model import now_micros

    taken = now_micros() + 3_600_000_000  # the other replica's stamp, ahead of this clock
    try:
        await _stamp_taken_then_stamped_anew(bolt_store, taken)
    finally:
        # The database is shared by the session: leave no error stamped an hour ahead.
        await cypher(bolt_server, "MATCH (e:ErrorSnapshot) WHERE e.received_at >= $t DETACH DELETE e", t=taken)


async def _stamp_taken_then_stamped_anew(bolt_store: Neo4jStore, taken: int) -> None:
    from errorreplay_server.capture.clock import ReceiveClock
    from errorreplay_server.capture.scrubbing import SecretScrubber
    from errorreplay_server.capture.service import CaptureRequest, CaptureService
    from errorreplay_server.domain.errors import StampTaken
    from errorreplay_server.domain.model import ErrorReport, Severity, Source
    from errorreplay_server.settings import Limits

    other = new_error("the other replica's capture")
    other.snapshot.received_at = taken
    await bolt_store.capture([other])

    collides = new_error("this replica's capture")
    collides.snapshot.received_at = taken
    with pytest.raises(StampTaken):
        await bolt_store.capture([collides])

    clock = ReceiveClock()
    clock.advance_past(taken - 1)  # this replica's next stamp is the taken one
    service = CaptureService(bolt_store, SecretScrubber.from_env({}), Limits(), clock=clock)
    report = ErrorReport(message="stamped twice", severity=Severity.HIGH, source=Source.APPLICATION)
    outcome = await service.capture(CaptureRequest(report))
    assert outcome.snapshot.received_at == taken + 1
    stored = await bolt_store.get_error(outcome.snapshot.error_id)
    assert stored.received_at == taken + 1 and stored.report.message == "stamped twice"


async def test_statistics_rollups_are_counted_once_for_a_database_written_before_them(
    bolt_server: BoltServer,
) -> None:
    run = uid()
    hour = MICROS_PER_HOUR
    base = own_days(T0, run, slot=2)
    store = Neo4jStore(settings_of(bolt_server))
    await store.start()
    try:
        await store.capture(
            [
                new_error(severity=Severity.HIGH, resource_id=f"{run}-a", group_id=f"grp_{run}", occurred_at=base),
                new_error(severity=Severity.LOW, resource_id=f"{run}-a", group_id=f"grp_{run}", occurred_at=base + 1),
                new_error(severity=Severity.LOW, resource_id=f"{run}-b", occurred_at=base + hour + 5),
            ]
        )
    finally:
        await store.close()
    rollups = "MATCH (x:StatisticsRollup) WHERE x.hour >= $lo AND x.hour < $hi RETURN x.dimension, x.key, x.count"
    written = sorted(map(tuple, await cypher(bolt_server, rollups, lo=base, hi=base + 2 * hour)))
    assert (2, f"{run}-a", 2) in written and (2, f"{run}-b", 1) in written  # kept at capture
    # Back to before rollups: no marker, and rollups that no longer match the errors.
    await cypher(bolt_server, "MATCH (m:ErrorReplayMeta {name: 'statistics_rollups'}) DELETE m")
    await cypher(bolt_server, "MATCH (x:StatisticsRollup) WHERE x.hour >= $lo SET x.count = 999", lo=base)
    store = Neo4jStore(settings_of(bolt_server))
    await store.start()  # counts them from the errors
    try:
        stats = await store.statistics(ErrorFilter(), base, base + 2 * hour, hour, 5)
    finally:
        await store.close()
    assert sorted(map(tuple, await cypher(bolt_server, rollups, lo=base, hi=base + 2 * hour))) == written
    assert stats.total_count == 3
    assert stats.by_severity == {Severity.HIGH: 1, Severity.LOW: 2}
    assert stats.by_resource == {f"{run}-a": 2, f"{run}-b": 1}
    assert [(t.start_time, t.count) for t in stats.timed_counts] == [(base, 2), (base + hour, 1)]
    # With the marker in place a start counts nothing again, and whole hours are read from the
    # rollups, not the errors: a rollup changed behind the store's back shows through a restart
    # (the partial hours at the edges still come from the errors).
    await cypher(
        bolt_server,
        "MATCH (x:StatisticsRollup {hour: $hour, dimension: 0}) SET x.count = x.count + 100",
        hour=base + hour,
    )
    store = Neo4jStore(settings_of(bolt_server))
    await store.start()
    try:
        whole = await store.statistics(ErrorFilter(), base, base + 2 * hour, hour, 5)
        edges_only = await store.statistics(ErrorFilter(), base + hour + 1, base + 2 * hour, hour, 5)
    finally:
        await store.close()
    assert whole.total_count == 103
    assert edges_only.total_count == 1
