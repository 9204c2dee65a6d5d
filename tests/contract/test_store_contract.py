"""The store contract: every Store implementation must pass every test here (see conftest.py)."""

from __future__ import annotations

import asyncio
import base64
import json

import pytest

from errorreplay_server.domain.errors import InvalidArgument, NotFound, StoreUnavailable
from errorreplay_server.domain.model import (
    MICROS_PER_HOUR,
    MICROS_PER_MINUTE,
    MICROS_PER_SECOND,
    Change,
    ChangeKind,
    CollectionState,
    CollectorStatus,
    Dependency,
    ErrorContext,
    ErrorFilter,
    GroupOrder,
    GroupStatus,
    LogLine,
    MetricAnomaly,
    MetricPoint,
    MetricSeries,
    Resource,
    Severity,
    Source,
    Span,
    SpanStatus,
    Topology,
    now_micros,
)
from errorreplay_server.store.base import Store
from tests.factories import new_error, own_days, uid

T0 = 1_760_000_000_000_000  # a fixed instant, in microseconds


async def capture_one(store: Store, **kw: object):  # type: ignore[no-untyped-def]
    (outcome,) = await store.capture([new_error(**kw)])  # type: ignore[arg-type]
    return outcome


async def test_capture_then_get_round_trips_every_field(store: Store) -> None:
    new = new_error(
        "disk full on /var/lib — ünïcødé ✓",
        severity=Severity.CRITICAL,
        source=Source.LOKI,
        resource_id=uid("res-"),
        resource_type="postgres",
        service="billing",
        environment="prod",
        release="1.2.3",
        error_type="OSError",
        stack_trace='File "a.py", line 3, in f\n  raise OSError',
        correlation_id=uid("corr-"),
        trace_id=uid("trace"),
        span_id="span1",
        tags={"team": "core", "k=v": 'quote"d\nnewline'},
        attributes={"nested": {"list": [1, "two", None, True]}, "n": 1.5},
        fingerprint=["a", "b"],
        request_id=uid("req-"),
    )
    (outcome,) = await store.capture([new])
    assert not outcome.duplicate and not outcome.regression
    got = await store.get_error(new.snapshot.error_id)
    assert got.report == new.snapshot.report
    assert got.error_id == new.snapshot.error_id
    assert got.group_id == new.snapshot.group_id
    assert got.received_at == new.snapshot.received_at
    assert got.fingerprint == new.snapshot.fingerprint
    assert got.request_id == new.snapshot.request_id
    assert got.context == ErrorContext()


async def test_unknown_error_is_not_found_naming_the_id(store: Store) -> None:
    missing = uid("err_missing")
    with pytest.raises(NotFound) as info:
        await store.get_error(missing)
    assert info.value.identifier == missing


async def test_get_errors_keeps_order_and_skips_unknown(store: Store) -> None:
    a = await capture_one(store)
    b = await capture_one(store)
    got = await store.get_errors([b.snapshot.error_id, uid("nope"), a.snapshot.error_id])
    assert [g.error_id for g in got] == [b.snapshot.error_id, a.snapshot.error_id]
    assert await store.get_errors([]) == []


async def test_request_id_retry_returns_first_and_stores_nothing_new(store: Store) -> None:
    rid = uid("req-")
    tag = {"run": uid()}
    first = await capture_one(store, request_id=rid, tags=tag)
    retry = await capture_one(store, request_id=rid, tags=tag, message="a different body")
    assert retry.duplicate and not first.duplicate
    assert retry.snapshot.error_id == first.snapshot.error_id
    assert retry.snapshot.report.message == first.snapshot.report.message
    page = await store.search_errors(ErrorFilter(tags=tag), 10)
    assert page.total_size == 1
    group = await store.get_group(first.snapshot.group_id)
    assert group.count == 1


async def test_a_failing_write_does_not_sink_the_others_in_its_commit(
    store: Store, caplog: pytest.LogCaptureFixture
) -> None:
    first = new_error()
    await store.capture([first])
    gid = uid("grp_")
    clash = new_error(group_id=gid)
    clash.snapshot.error_id = first.snapshot.error_id  # violates the unique error_id
    good = [new_error(group_id=gid) for _ in range(6)]
    # Queued together, so the writer (store/core.py BatchWriter) folds them into one transaction
    # that fails as a whole, then runs them one by one.
    results = await asyncio.gather(*(store.capture([n]) for n in [*good[:3], clash, *good[3:]]), return_exceptions=True)
    assert isinstance(results[3], Exception) and not isinstance(results[3], StoreUnavailable)
    assert all(isinstance(r, list) and not r[0].duplicate for i, r in enumerate(results) if i != 3)
    stored = await store.get_errors([n.snapshot.error_id for n in good])
    assert [e.error_id for e in stored] == [n.snapshot.error_id for n in good]
    # The failed attempt was rolled back whole: every good error counted once.
    assert (await store.get_group(gid)).count == 6
    assert "retrying them one by one" in caplog.text


async def test_request_id_repeated_within_one_commit(store: Store) -> None:
    rid = uid("req-")
    outcomes = await store.capture([new_error(request_id=rid), new_error(request_id=rid)])
    assert [o.duplicate for o in outcomes] == [False, True]
    assert outcomes[0].snapshot.error_id == outcomes[1].snapshot.error_id


async def test_group_counts_and_regression_on_resolved(store: Store) -> None:
    gid = uid("grp_")
    res = uid("res-")
    await capture_one(store, group_id=gid, occurred_at=T0, severity=Severity.LOW, resource_id=res)
    await capture_one(store, group_id=gid, occurred_at=T0 - 5, severity=Severity.HIGH, resource_id=res + "b")
    group = await store.get_group(gid)
    assert (group.count, group.first_seen, group.last_seen) == (2, T0 - 5, T0)
    assert group.status == GroupStatus.OPEN and not group.regression
    assert group.max_severity == Severity.HIGH
    assert sorted(group.affected_resource_ids) == sorted([res, res + "b"])
    resolved = await store.update_group_status(gid, GroupStatus.RESOLVED)
    assert resolved.status == GroupStatus.RESOLVED
    again = await capture_one(store, group_id=gid, occurred_at=T0 + 10)
    assert again.regression
    group = await store.get_group(gid)
    assert group.status == GroupStatus.OPEN and group.regression and group.count == 3
    ack = await store.update_group_status(gid, GroupStatus.ACKNOWLEDGED)
    assert ack.status == GroupStatus.ACKNOWLEDGED and not ack.regression


async def test_new_group_flag_marks_only_a_groups_first_error(store: Store) -> None:
    """Notifications' new-group trigger: the first error of a group, also inside one batch."""
    gid, other = uid("grp_"), uid("grp_")
    first = await capture_one(store, group_id=gid, occurred_at=T0)
    second = await capture_one(store, group_id=gid, occurred_at=T0 + 1)
    assert (first.new_group, second.new_group) == (True, False)
    batch = await store.capture(
        [new_error(group_id=other, occurred_at=T0), new_error(group_id=other, occurred_at=T0 + 1)]
    )
    assert [o.new_group for o in batch] == [True, False]
    await store.update_group_status(gid, GroupStatus.RESOLVED)
    regression = await capture_one(store, group_id=gid, occurred_at=T0 + 2)
    assert regression.regression and not regression.new_group


async def test_unknown_group_is_not_found(store: Store) -> None:
    with pytest.raises(NotFound):
        await store.get_group(uid("grp_"))
    with pytest.raises(NotFound):
        await store.update_group_status(uid("grp_"), GroupStatus.MUTED)


async def test_muted_groups_are_listed(store: Store) -> None:
    gid = uid("grp_")
    await capture_one(store, group_id=gid)
    await store.update_group_status(gid, GroupStatus.MUTED)
    assert gid in await store.muted_group_ids()


@pytest.fixture
async def mixed(store: Store) -> tuple[dict[str, str], list[object]]:
    """Twelve errors that differ in every filterable field, under one unique tag."""
    run = uid()
    corr = uid("corr-")
    outcomes = []
    for i in range(12):
        outcome = await capture_one(
            store,
            message=f"payment {'timeout' if i % 2 else 'declined'} for order {i}",
            severity=Severity(1 + i % 5),
            source=Source.APPLICATION if i % 3 else Source.PROMETHEUS,
            resource_id=f"{run}-res{i % 3}",
            resource_type="db" if i % 4 == 0 else "api",
            error_type="Timeout" if i % 2 else "Declined",
            correlation_id=corr if i < 4 else "",
            trace_id=f"{run}-trace" if i == 5 else "",
            service="checkout" if i % 2 else "payments",
            environment="prod" if i < 6 else "staging",
            group_id=f"grp_{run}_{i % 2}",
            occurred_at=T0 + i * MICROS_PER_MINUTE,
            tags={"run": run, "shard": str(i % 2)},
        )
        outcomes.append(outcome)
    return {"run": run, "corr": corr}, outcomes


async def _ids(store: Store, flt: ErrorFilter) -> list[int]:
    page = await store.search_errors(flt, 100)
    assert page.total_size == len(page.items)
    # The message ends in the index: map results back to it.
    return [int(e.report.message.rsplit(" ", 1)[1]) for e in page.items]


@pytest.mark.parametrize(
    ("extra", "expected"),
    [
        ({}, list(range(11, -1, -1))),
        ({"severities": [Severity.CRITICAL]}, [9, 4]),
        ({"min_severity": Severity.HIGH}, [9, 8, 4, 3]),
        ({"sources": [Source.PROMETHEUS]}, [9, 6, 3, 0]),
        ({"resource_type": "db"}, [8, 4, 0]),
        ({"error_type": "Timeout"}, [11, 9, 7, 5, 3, 1]),
        ({"service": "payments", "environment": "prod"}, [4, 2, 0]),
        ({"text": "timeout"}, [11, 9, 7, 5, 3, 1]),
        ({"text": "payment declined"}, [10, 8, 6, 4, 2, 0]),
        ({"text": "TIMEOUT order"}, [11, 9, 7, 5, 3, 1]),
        ({"text": "nothing-like-this"}, []),
        ({"start_time": T0 + 3 * MICROS_PER_MINUTE, "end_time": T0 + 5 * MICROS_PER_MINUTE}, [5, 4, 3]),
    ],
)
async def test_search_filters(
    store: Store, mixed: tuple[dict[str, str], list[object]], extra: dict[str, object], expected: list[int]
) -> None:
    keys, _ = mixed
    assert await _ids(store, ErrorFilter(tags={"run": keys["run"]}, **extra)) == expected  # type: ignore[arg-type]


async def test_search_by_ids_and_tags(store: Store, mixed: tuple[dict[str, str], list[object]]) -> None:
    keys, _ = mixed
    run = keys["run"]
    assert await _ids(store, ErrorFilter(correlation_id=keys["corr"])) == [3, 2, 1, 0]
    assert await _ids(store, ErrorFilter(trace_id=f"{run}-trace")) == [5]
    assert await _ids(store, ErrorFilter(resource_ids=[f"{run}-res1", f"{run}-res2"])) == [
        11,
        10,
        8,
        7,
        5,
        4,
        2,
        1,
    ]
    assert await _ids(store, ErrorFilter(group_id=f"grp_{run}_1")) == [11, 9, 7, 5, 3, 1]
    assert await _ids(store, ErrorFilter(tags={"run": run, "shard": "0"})) == [10, 8, 6, 4, 2, 0]
    assert await _ids(store, ErrorFilter(tags={"run": run, "shard": "2"})) == []


async def test_search_text_with_query_syntax_is_literal(store: Store) -> None:
    run = uid()
    await capture_one(store, message='weird "quoted" AND OR NOT * NEAR( col:umn ) -minus', tags={"run": run})
    # Every word of these is a word of the message; "*", '"' and "'" have no words: no condition.
    for text in ['"quoted"', "AND", "NEAR(", "col:umn", "-minus", "*", '"', "'", "OR NOT"]:
        page = await store.search_errors(ErrorFilter(tags={"run": run}, text=text), 10)
        assert page.total_size == 1, text
    assert (await store.search_errors(ErrorFilter(tags={"run": run}, text="quote"), 10)).total_size == 0
    page = await store.search_errors(ErrorFilter(tags={"run": run}, text="weird quoted"), 10)
    assert page.total_size == 1


async def test_search_inclusive_time_bounds(store: Store) -> None:
    run = uid()
    await capture_one(store, occurred_at=T0, tags={"run": run})
    exact = ErrorFilter(tags={"run": run}, start_time=T0, end_time=T0)
    assert (await store.search_errors(exact, 10)).total_size == 1
    after = ErrorFilter(tags={"run": run}, start_time=T0 + 1)
    assert (await store.search_errors(after, 10)).total_size == 0


async def test_pagination_walks_every_match_once_newest_first(store: Store) -> None:
    run = uid()
    created = []
    for i in range(23):
        # Pairs share occurred_at: received_at breaks the tie.
        outcome = await capture_one(store, occurred_at=T0 + (i // 2), tags={"run": run})
        created.append(outcome.snapshot)
    seen = []
    token = ""
    pages = 0
    while True:
        page = await store.search_errors(ErrorFilter(tags={"run": run}), 5, token)
        pages += 1
        assert page.total_size == 23
        seen.extend(page.items)
        token = page.next_page_token
        if not token:
            break
    assert pages == 5
    expected = sorted(created, key=lambda s: (s.report.occurred_at, s.received_at), reverse=True)
    assert [s.error_id for s in seen] == [s.error_id for s in expected]


async def test_total_size_is_exact_up_to_the_count_limit_then_capped(store: Store) -> None:
    """A count stops at count_limit: more matches give (count_limit, capped), on every way the
    stores count (one tag, one word, several words, several columns, a column and a tag)."""
    run, word, kind = uid(), uid("w"), uid("Kind")
    errors = [
        new_error(f"{word} broke again", tags={"run": run}, error_type=kind, environment="prod", occurred_at=T0 + i)
        for i in range(23)
    ]
    await store.capture(errors)
    filters = {
        "tag": ErrorFilter(tags={"run": run}),
        "word": ErrorFilter(text=word),
        "words": ErrorFilter(text=f"{word} again"),
        "columns": ErrorFilter(error_type=kind, environment="prod"),
        "column and tag": ErrorFilter(error_type=kind, tags={"run": run}, min_severity=Severity.HIGH),
    }
    for name, flt in filters.items():
        got = {}
        for limit in (10, 22, 23, 24, 1000):
            page = await store.search_errors(flt, 5, count_limit=limit)
            got[limit] = (page.total_size, page.total_capped, len(page.items))
        assert got == {
            10: (10, True, 5),
            22: (22, True, 5),
            23: (23, False, 5),
            24: (23, False, 5),
            1000: (23, False, 5),
        }, name
        # A first page that holds every match counts them all, whatever the limit.
        whole = await store.search_errors(flt, 50, count_limit=10)
        assert (whole.total_size, whole.total_capped, len(whole.items)) == (23, False, 23), name
        # The next pages count up to the limit too.
        second = await store.search_errors(flt, 5, page.next_page_token, count_limit=10)
        assert (second.total_size, second.total_capped) == (10, True), name
        uncounted = await store.search_errors(flt, 5, with_total=False)
        assert (uncounted.total_size, uncounted.total_capped) == (-1, False), name


async def test_a_column_value_no_error_has_matches_nothing(store: Store) -> None:
    run, kind = uid(), uid("Kind")
    await store.capture([new_error(tags={"run": run}, error_type=kind, environment="prod") for _ in range(3)])
    for flt in (
        ErrorFilter(error_type=kind, environment="nowhere"),
        ErrorFilter(error_type=uid("Kind"), environment="prod"),
        ErrorFilter(text=f"{uid('w')} refused", tags={"run": run}),
    ):
        page = await store.search_errors(flt, 5)
        assert (page.items, page.total_size, page.next_page_token) == ([], 0, ""), flt
    page = await store.search_errors(ErrorFilter(error_type=kind, environment="prod"), 2)
    assert (len(page.items), page.total_size) == (2, 3)


async def test_oldest_first_pagination(store: Store) -> None:
    corr = uid("corr-")
    created = [(await capture_one(store, correlation_id=corr, occurred_at=T0 + i)).snapshot for i in range(7)]
    first = await store.search_errors(ErrorFilter(correlation_id=corr), 4, oldest_first=True)
    second = await store.search_errors(ErrorFilter(correlation_id=corr), 4, first.next_page_token, oldest_first=True)
    assert [s.error_id for s in first.items + second.items] == [s.error_id for s in created]
    assert second.next_page_token == ""


async def test_exact_last_page_has_no_token(store: Store) -> None:
    run = uid()
    for _ in range(4):
        await capture_one(store, tags={"run": run})
    page = await store.search_errors(ErrorFilter(tags={"run": run}), 4)
    assert len(page.items) == 4 and page.next_page_token == ""
    empty = await store.search_errors(ErrorFilter(tags={"run": uid()}), 4)
    assert empty.items == [] and empty.total_size == 0 and empty.next_page_token == ""


async def test_bad_and_foreign_page_tokens_are_invalid(store: Store) -> None:
    run = uid()
    for _ in range(3):
        await capture_one(store, tags={"run": run})
    page = await store.search_errors(ErrorFilter(tags={"run": run}), 1)
    assert page.next_page_token
    token = page.next_page_token
    middle = len(token) // 2
    # One character changed inside the token (changing the last ones may only touch the base64
    # padding bits, which decode to the same bytes).
    tampered = token[:middle] + ("A" if token[middle] != "A" else "B") + token[middle + 1 :]
    for bad in ["garbage", "e30", tampered]:
        with pytest.raises(InvalidArgument) as info:
            await store.search_errors(ErrorFilter(tags={"run": run}), 1, bad)
        assert info.value.violations[0].field == "page_token"
    with pytest.raises(InvalidArgument):
        await store.search_errors(ErrorFilter(tags={"run": run}, text="other"), 1, page.next_page_token)


async def test_errors_after_cursor_in_commit_order(store: Store) -> None:
    first = await capture_one(store)
    later = [(await capture_one(store)).snapshot for _ in range(5)]
    after = await store.errors_after(first.snapshot.received_at, 1000)
    ids = [s.error_id for s in after]
    assert ids[:5] == [s.error_id for s in later]
    assert first.snapshot.error_id not in ids
    assert await store.latest_received_at() >= later[-1].received_at


async def test_related_errors_by_correlation_trace_and_resource(store: Store) -> None:
    corr, trace, res, near = uid("corr-"), uid("trace"), uid("res-"), uid("res-")
    subject = (await capture_one(store, correlation_id=corr, trace_id=trace, resource_id=res, occurred_at=T0)).snapshot
    by_corr = await capture_one(store, correlation_id=corr, occurred_at=T0 - MICROS_PER_MINUTE)
    by_trace = await capture_one(store, trace_id=trace, occurred_at=T0 + MICROS_PER_MINUTE)
    by_resource = await capture_one(store, resource_id=res, occurred_at=T0 + 2 * MICROS_PER_MINUTE)
    by_neighbour = await capture_one(store, resource_id=near, occurred_at=T0 + 3 * MICROS_PER_MINUTE)
    too_late = await capture_one(store, correlation_id=corr, occurred_at=T0 + 11 * MICROS_PER_MINUTE)
    await capture_one(store, resource_id=uid("res-"), occurred_at=T0)  # unrelated
    related = await store.related_errors(subject, T0 - 10 * MICROS_PER_MINUTE, T0 + 10 * MICROS_PER_MINUTE, [near], 100)
    assert [r.error_id for r in related] == [
        by_corr.snapshot.error_id,
        by_trace.snapshot.error_id,
        by_resource.snapshot.error_id,
        by_neighbour.snapshot.error_id,
    ]
    assert too_late.snapshot.error_id not in {r.error_id for r in related}
    lone = (await capture_one(store)).snapshot
    assert await store.related_errors(lone, T0, T0 + 1, [], 10) == []


async def test_related_errors_keep_the_nearest_in_time_when_more_match(store: Store) -> None:
    # A read follows its limit, not the window's crowd: the nearest errors to the subject are kept
    # (at equal distance the earlier one), then returned oldest first.
    corr, res = uid("corr-"), uid("res-")
    subject = (await capture_one(store, correlation_id=corr, resource_id=res, occurred_at=T0)).snapshot
    at: dict[int, str] = {}
    for seconds in (-540, -300, -60, 0, 60, 120, 480):
        at[seconds] = (
            await capture_one(store, resource_id=res, occurred_at=T0 + seconds * MICROS_PER_SECOND)
        ).snapshot.error_id
    at[-30] = (await capture_one(store, correlation_id=corr, occurred_at=T0 - 30 * MICROS_PER_SECOND)).snapshot.error_id
    window = (subject, T0 - 10 * MICROS_PER_MINUTE, T0 + 10 * MICROS_PER_MINUTE, [])
    for limit, kept in ((4, (-60, -30, 0, 60)), (3, (-60, -30, 0)), (1, (0,)), (100, sorted(at))):
        for documents in (True, False):
            related = await store.related_errors(*window, limit, documents=documents)
            assert [e.error_id for e in related] == [at[s] for s in kept], (limit, documents)
    # A window that does not hold the subject's time: still the nearest to the subject. Of two
    # errors at the window's first instant, both after the subject, the one received first.
    second_120 = (await capture_one(store, resource_id=res, occurred_at=T0 + 120 * MICROS_PER_SECOND)).snapshot
    late = (subject, T0 + 120 * MICROS_PER_SECOND, T0 + 10 * MICROS_PER_MINUTE, [])
    assert [e.error_id for e in await store.related_errors(*late, 1)] == [at[120]]
    assert [e.error_id for e in await store.related_errors(*late, 2)] == [at[120], second_120.error_id]
    assert [e.error_id for e in await store.related_errors(*late, 3)] == [at[120], second_120.error_id, at[480]]
    early = (subject, T0 - 10 * MICROS_PER_MINUTE, T0 - 60 * MICROS_PER_SECOND, [])
    assert [e.error_id for e in await store.related_errors(*early, 2)] == [at[-300], at[-60]]


async def test_related_errors_as_link_rows_are_the_same_errors_without_documents(store: Store) -> None:
    # GetError reads related errors with documents=False: the same errors, in the same order and
    # under the same limit, carrying what the relation rule reads, and no message or context.
    corr, res, near = uid("corr-"), uid("res-"), uid("res-")
    subject = (await capture_one(store, correlation_id=corr, resource_id=res, occurred_at=T0)).snapshot
    for i in range(6):
        await capture_one(store, correlation_id=corr, resource_id=near, trace_id=uid("t"), occurred_at=T0 + i)
    await capture_one(store, resource_id=res, occurred_at=T0 - MICROS_PER_MINUTE)
    window = (subject, T0 - 10 * MICROS_PER_MINUTE, T0 + 10 * MICROS_PER_MINUTE, [near])
    for limit in (100, 4):
        full = await store.related_errors(*window, limit)
        links = await store.related_errors(*window, limit, documents=False)
        assert [e.error_id for e in links] == [e.error_id for e in full] and len(full) == min(limit, 7)
        for link, doc in zip(links, full, strict=True):
            assert (link.group_id, link.received_at, link.report.occurred_at) == (
                doc.group_id,
                doc.received_at,
                doc.report.occurred_at,
            )
            assert (link.report.resource_id, link.report.correlation_id, link.report.trace_id) == (
                doc.report.resource_id,
                doc.report.correlation_id,
                doc.report.trace_id,
            )
            assert (link.report.severity, link.report.source) == (doc.report.severity, doc.report.source)
            assert doc.report.message and link.report.message == "" and not link.context.logs


async def test_update_context_round_trips(store: Store) -> None:
    snap = (await capture_one(store)).snapshot
    ctx = ErrorContext(
        logs=[LogLine(T0, "ERROR", "db down ✗", "loki", {"pod": "a"})],
        metrics=[
            MetricSeries(
                "cpu",
                'rate(x{a="b"}[1m])',
                {"instance": "i"},
                [MetricPoint(T0, 0.5), MetricPoint(T0 + 1, 0.97)],
                [MetricAnomaly(T0 + 1, 0.97, 0.4, 0.6, "above median + 3×MAD")],
                "ratio",
                "res",
            )
        ],
        spans=[Span("t", "s", "p", "api", "GET /", T0, 1500, SpanStatus.ERROR, "boom", True, {"http.status": "500"})],
        topology=Topology("api", [Resource("api", "svc", "API", {"tier": "1"})], [Dependency("api", "db")]),
        changes=[Change("c1", ChangeKind.DEPLOYMENT, "api", T0 - 5, "v2", "deploy", "ci", {"sha": "abc"})],
        statuses=[CollectorStatus("loki", CollectionState.OK, "1 line", 12.5, T0)],
    )
    await store.update_context(snap.error_id, ctx)
    assert (await store.get_error(snap.error_id)).context == ctx
    with pytest.raises(NotFound):
        await store.update_context(uid("err_"), ctx)


def _with_context(new: object, state: CollectionState) -> object:
    new.snapshot.context = ErrorContext(statuses=[CollectorStatus("loki", state, "", 0.0, 0)])  # type: ignore[attr-defined]
    return new


async def test_pending_context_errors_lists_the_backlog_oldest_first(store: Store) -> None:
    pending = [_with_context(new_error(), CollectionState.PENDING) for _ in range(3)]
    done = _with_context(new_error(), CollectionState.OK)
    bare = new_error()
    await store.capture([pending[0], done, pending[1], bare, pending[2]])  # type: ignore[list-item]
    ids = [n.snapshot.error_id for n in pending]  # type: ignore[attr-defined]
    first = pending[0].snapshot.received_at - 1  # type: ignore[attr-defined]

    async def listed(after: int = first, limit: int = 1000) -> list[str]:
        mine = {*ids, done.snapshot.error_id, bare.snapshot.error_id}  # type: ignore[attr-defined]
        return [s.error_id for s in await store.pending_context_errors(after, limit) if s.error_id in mine]

    assert await listed() == ids
    page = await store.pending_context_errors(first, 1)
    assert [s.error_id for s in page] == ids[:1]
    assert await listed(after=page[0].received_at) == ids[1:]
    # Collected: off the list; PENDING again (a refresh cut short): back on it.
    await store.update_context(ids[1], ErrorContext(statuses=[CollectorStatus("loki", CollectionState.OK, "", 1, T0)]))
    assert await listed() == [ids[0], ids[2]]
    await store.update_context(
        ids[1], ErrorContext(statuses=[CollectorStatus("loki", CollectionState.PENDING, "", 0, 0)])
    )
    assert await listed() == ids
    await store.update_context(done.snapshot.error_id, ErrorContext())  # type: ignore[attr-defined]
    assert await listed() == ids


async def test_statistics_counts_sum_to_total(store: Store, mixed: tuple[dict[str, str], list[object]]) -> None:
    keys, _ = mixed
    flt = ErrorFilter(tags={"run": keys["run"]})
    start, end = T0, T0 + 12 * MICROS_PER_MINUTE - 1
    stats = await store.statistics(flt, start, end, 5 * MICROS_PER_MINUTE, 10)
    assert stats.total_count == 12
    for counts in (stats.by_severity, stats.by_source, stats.by_resource, stats.by_resource_type, stats.by_error_type):
        assert sum(counts.values()) == 12
    assert stats.by_severity[Severity.INFO] == 3
    assert stats.by_source == {Source.PROMETHEUS: 4, Source.APPLICATION: 8}
    # Buckets start on multiples of 5 min since the epoch; T0 is 200 s past one. The window ends
    # at T0 + 12 min, inside the fourth bucket, which is partial and holds nothing.
    first = T0 - 200 * MICROS_PER_SECOND
    assert [t.count for t in stats.timed_counts] == [2, 5, 5, 0]
    assert [t.start_time for t in stats.timed_counts] == [first + i * 5 * MICROS_PER_MINUTE for i in range(4)]
    assert sum(g.count for g in stats.top_groups) == 12
    assert {g.group_id for g in stats.top_groups} == {f"grp_{keys['run']}_0", f"grp_{keys['run']}_1"}
    narrowed = await store.statistics(flt, T0, T0 + 3 * MICROS_PER_MINUTE, MICROS_PER_HOUR, 1)
    assert narrowed.total_count == 3 and len(narrowed.timed_counts) == 1 and len(narrowed.top_groups) == 1
    muted = ErrorFilter(tags={"run": keys["run"]}, exclude_group_ids=[f"grp_{keys['run']}_0"])
    assert (await store.statistics(muted, start, end, MICROS_PER_HOUR, 10)).total_count == 6


async def test_statistics_includes_empty_buckets(store: Store) -> None:
    stats = await store.statistics(ErrorFilter(tags={"run": uid()}), T0, T0 + 3 * MICROS_PER_HOUR, MICROS_PER_HOUR, 5)
    assert stats.total_count == 0
    assert [t.count for t in stats.timed_counts] == [0, 0, 0, 0]
    assert stats.top_groups == []


async def test_statistics_buckets_align_to_the_hour_and_stop_at_the_end(store: Store) -> None:
    # Issue 20: 24 h in 1 h buckets gave 25 buckets from the request's own microsecond, the last
    # one empty. A day from midnight to midnight is 24 buckets on the hour; the end is excluded.
    run = uid()
    hour = MICROS_PER_HOUR
    day = T0 - T0 % (24 * hour)
    for i, at in enumerate((day, day + 90 * MICROS_PER_MINUTE, day + 24 * hour - 1, day + 24 * hour)):
        await capture_one(store, message=f"at {i}", resource_id=f"{run}-r", tags={"run": run}, occurred_at=at)
    flt = ErrorFilter(tags={"run": run})
    stats = await store.statistics(flt, day, day + 24 * hour, hour, 5)
    assert [t.start_time for t in stats.timed_counts] == [day + i * hour for i in range(24)]
    counts = [t.count for t in stats.timed_counts]
    assert counts[0] == 1 and counts[1] == 1 and counts[23] == 1 and sum(counts) == stats.total_count == 3


async def test_statistics_partial_first_and_last_buckets_count_only_the_window(store: Store) -> None:
    run = uid()
    hour = MICROS_PER_HOUR
    h = T0 - T0 % hour
    start = h + 30 * MICROS_PER_MINUTE + 7  # an odd instant, like a request's own "now - 24 h"
    end = start + 24 * hour
    times = {
        "before the window": h + 10 * MICROS_PER_MINUTE,
        "first bucket": h + 45 * MICROS_PER_MINUTE,
        "last bucket": h + 24 * hour + 10 * MICROS_PER_MINUTE,
        "after the window": h + 24 * hour + 40 * MICROS_PER_MINUTE,
    }
    for label, at in times.items():
        await capture_one(store, message=label, resource_id=f"{run}-r", tags={"run": run}, occurred_at=at)
    stats = await store.statistics(ErrorFilter(tags={"run": run}), start, end, hour, 5)
    starts = [t.start_time for t in stats.timed_counts]
    assert starts == [h + i * hour for i in range(25)]
    assert all(s % hour == 0 for s in starts) and starts[-1] < end
    assert stats.timed_counts[0].count == 1 and stats.timed_counts[-1].count == 1
    assert stats.total_count == sum(t.count for t in stats.timed_counts) == 2


async def test_statistics_of_whole_hours_and_partial_edges_count_every_error_once(store: Store) -> None:
    # No filter but time: SQLite answers whole hours from its hourly rollups and the partial
    # edges from rows. Each run gets an hour range of its own, so a shared Bolt server's other
    # errors stay out of the window.
    run = uid()
    hour = MICROS_PER_HOUR
    base = own_days(T0, run, slot=0)
    start, end = base + 20 * MICROS_PER_MINUTE, base + 3 * hour + 15 * MICROS_PER_MINUTE
    placed = [
        (base + 10 * MICROS_PER_MINUTE, Severity.LOW, "a"),  # before the window
        (base + 20 * MICROS_PER_MINUTE, Severity.LOW, "a"),  # first partial hour, on the start
        (base + 59 * MICROS_PER_MINUTE, Severity.HIGH, "b"),  # first partial hour
        (base + hour, Severity.HIGH, "a"),  # whole hour 1
        (base + hour + 5, Severity.CRITICAL, "b"),  # whole hour 1
        (base + 2 * hour + 30 * MICROS_PER_MINUTE, Severity.HIGH, "a"),  # whole hour 2
        (base + 3 * hour + 14 * MICROS_PER_MINUTE, Severity.LOW, "b"),  # last partial hour
        (base + 3 * hour + 15 * MICROS_PER_MINUTE, Severity.LOW, "b"),  # on the end: outside
    ]
    for i, (at, severity, which) in enumerate(placed):
        await capture_one(
            store,
            message=f"edge {i}",
            severity=severity,
            resource_id=f"{run}-{which}",
            resource_type=f"type-{which}",
            error_type=f"Err{which}",
            group_id=f"grp_{run}_{which}",
            tags={"run": run},
            occurred_at=at,
        )
    for flt in (ErrorFilter(), ErrorFilter(tags={"run": run})):  # rollups (SQLite), rows
        stats = await store.statistics(flt, start, end, hour, 5)
        assert stats.total_count == 6
        assert [(t.start_time, t.count) for t in stats.timed_counts] == [
            (base, 2),
            (base + hour, 2),
            (base + 2 * hour, 1),
            (base + 3 * hour, 1),
        ]
        assert stats.by_severity == {Severity.LOW: 2, Severity.HIGH: 3, Severity.CRITICAL: 1}
        assert stats.by_source == {Source.APPLICATION: 6}
        assert stats.by_resource == {f"{run}-a": 3, f"{run}-b": 3}
        assert stats.by_resource_type == {"type-a": 3, "type-b": 3}
        assert stats.by_error_type == {"Erra": 3, "Errb": 3}
        assert [(g.group_id, g.count) for g in stats.top_groups] == [(f"grp_{run}_a", 3), (f"grp_{run}_b", 3)]
        two_hours = await store.statistics(flt, base + hour, base + 3 * hour, 2 * hour, 1)
        assert [(t.start_time, t.count) for t in two_hours.timed_counts] == [(base, 2), (base + 2 * hour, 1)]
        assert [(g.group_id, g.count) for g in two_hours.top_groups] == [(f"grp_{run}_a", 2)]


async def test_timed_counts_by_severity_and_group_equal_per_severity_statistics(store: Store) -> None:
    # Whole hours (SQLite: rollups), partial edge hours and sub-hour buckets (rows), an excluded
    # (muted) group taken away: each series equals what statistics() gives for that severity.
    run = uid()
    hour = MICROS_PER_HOUR
    base = own_days(T0, run, slot=1)
    start, end = base + 20 * MICROS_PER_MINUTE, base + 3 * hour + 15 * MICROS_PER_MINUTE
    a, b, muted = (f"grp_{run}_{x}" for x in ("a", "b", "muted"))
    placed = [
        (base + 10 * MICROS_PER_MINUTE, Severity.LOW, a),  # before the window
        (base + 20 * MICROS_PER_MINUTE, Severity.LOW, a),  # first partial hour, on the start
        (base + 59 * MICROS_PER_MINUTE, Severity.HIGH, b),  # first partial hour
        (base + hour, Severity.HIGH, a),  # whole hour 1
        (base + hour + 5, Severity.CRITICAL, b),  # whole hour 1
        (base + hour + 6, Severity.CRITICAL, muted),  # whole hour 1, excluded
        (base + 2 * hour + 30 * MICROS_PER_MINUTE, Severity.HIGH, a),  # whole hour 2
        (base + 2 * hour + 31 * MICROS_PER_MINUTE, Severity.HIGH, muted),  # whole hour 2, excluded
        (base + 3 * hour + 1, Severity.LOW, muted),  # last partial hour, excluded
        (base + 3 * hour + 14 * MICROS_PER_MINUTE, Severity.LOW, b),  # last partial hour
        (base + 3 * hour + 15 * MICROS_PER_MINUTE, Severity.LOW, b),  # on the end: outside
    ]
    for i, (at, severity, gid) in enumerate(placed):
        await capture_one(store, message=f"timed {i}", severity=severity, group_id=gid, occurred_at=at)

    def series(counts: list[object]) -> list[tuple[int, int]]:
        return [(t.start_time, t.count) for t in counts]  # type: ignore[attr-defined]

    by_severity = await store.severity_timed_counts(start, end, hour, [muted])
    assert {s: series(c) for s, c in by_severity.items()} == {
        Severity.LOW: [(base, 1), (base + hour, 0), (base + 2 * hour, 0), (base + 3 * hour, 1)],
        Severity.HIGH: [(base, 1), (base + hour, 1), (base + 2 * hour, 1), (base + 3 * hour, 0)],
        Severity.CRITICAL: [(base, 0), (base + hour, 1), (base + 2 * hour, 0), (base + 3 * hour, 0)],
    }
    with_muted = await store.severity_timed_counts(start, end, hour)
    assert series(with_muted[Severity.HIGH])[2] == (base + 2 * hour, 2)
    assert series(with_muted[Severity.LOW])[3] == (base + 3 * hour, 2)
    for bucket in (hour, 2 * hour, 15 * MICROS_PER_MINUTE):
        for excluded in ([], [muted], [muted, a, f"grp_{run}_unknown"]):
            counts = await store.severity_timed_counts(start, end, bucket, excluded)
            for severity in Severity:
                flt = ErrorFilter(severities=[severity], exclude_group_ids=excluded)
                expected = (await store.statistics(flt, start, end, bucket, 1)).timed_counts
                if any(t.count for t in expected):
                    assert series(counts[severity]) == series(expected), (bucket, excluded, severity)
                else:
                    assert severity not in counts
        for gid in (a, b, muted, f"grp_{run}_unknown"):
            expected = (await store.statistics(ErrorFilter(group_id=gid), start, end, bucket, 1)).timed_counts
            assert series(await store.group_timed_counts(gid, start, end, bucket)) == series(expected)
    assert series(await store.group_timed_counts(a, start, end, hour)) == [
        (base, 1),
        (base + hour, 1),
        (base + 2 * hour, 1),
        (base + 3 * hour, 0),
    ]
    with pytest.raises(InvalidArgument):
        await store.group_timed_counts(a, start, end, 0)


async def test_list_groups_ordered_and_paginated(store: Store) -> None:
    run = uid()
    gids = [f"grp_{run}_{i}" for i in range(4)]
    for i, gid in enumerate(gids):
        for _ in range(i + 1):
            await capture_one(store, group_id=gid, occurred_at=now_micros() + (10 - i) * MICROS_PER_MINUTE)
    mine = set(gids)

    async def walk(order: GroupOrder) -> list[str]:
        out, token = [], ""
        while True:
            page = await store.list_groups([], order, 3, token)
            out.extend(g.group_id for g in page.items if g.group_id in mine)
            token = page.next_page_token
            if not token:
                return out

    assert await walk(GroupOrder.COUNT) == list(reversed(gids))
    assert await walk(GroupOrder.LAST_SEEN) == gids
    await store.update_group_status(gids[2], GroupStatus.ACKNOWLEDGED)
    acked = await store.list_groups([GroupStatus.ACKNOWLEDGED], GroupOrder.LAST_SEEN, 500)
    assert gids[2] in {g.group_id for g in acked.items}
    assert all(g.status == GroupStatus.ACKNOWLEDGED for g in acked.items)


async def test_topology_neighbours_in_both_directions(store: Store) -> None:
    p = uid("t")
    lb, web, api, db, cache = (f"{p}-{n}" for n in ("lb", "web", "api", "db", "cache"))
    written = await store.upsert_resources(
        [Resource(web, "service", "Web", {"tier": "edge"}), Resource(db, "postgres", "DB")],
        [Dependency(lb, web), Dependency(web, api), Dependency(api, db), Dependency(web, cache)],
    )
    assert written == (2, 4)
    t = await store.get_topology(api, 1)
    assert t.root_resource_id == api
    assert {r.id for r in t.resources} == {api, web, db}
    assert set(t.dependencies) == {Dependency(web, api), Dependency(api, db)}
    t2 = await store.get_topology(api, 2)
    # Two hops up reaches lb; cache is a sibling (a dependency of a dependent), not a neighbour.
    assert {r.id for r in t2.resources} == {api, web, db, lb}
    web_res = next(r for r in (await store.get_topology(web, 0)).resources if r.id == web)
    assert (web_res.type, web_res.name, web_res.labels) == ("service", "Web", {"tier": "edge"})
    await store.upsert_resources([Resource(web, "service", "Web v2")], [])
    assert next(r for r in (await store.get_topology(web, 0)).resources).name == "Web v2"
    with pytest.raises(NotFound):
        await store.get_topology(uid("missing"), 2)


async def test_topology_cycles_terminate(store: Store) -> None:
    p = uid("c")
    a, b, c = f"{p}-a", f"{p}-b", f"{p}-c"
    await store.upsert_resources([], [Dependency(a, b), Dependency(b, c), Dependency(c, a)])
    t = await store.get_topology(a, 5)
    assert {r.id for r in t.resources} == {a, b, c}
    assert len(t.dependencies) == 3


async def test_changes_in_window_newest_first(store: Store) -> None:
    res, other = uid("res-"), uid("res-")
    changes = [
        Change(uid("chg-"), ChangeKind.DEPLOYMENT, res, T0 - 30 * MICROS_PER_MINUTE, "v2.1.0", "deploy", "ci"),
        Change(uid("chg-"), ChangeKind.CONFIG, res, T0 - 2 * MICROS_PER_HOUR, "", "pool size 10→50", "ops"),
        Change(uid("chg-"), ChangeKind.DEPLOYMENT, res, T0 - 30 * MICROS_PER_HOUR, "v2.0.0", "old", "ci"),
        Change(uid("chg-"), ChangeKind.DEPLOYMENT, other, T0 - MICROS_PER_MINUTE, "v9", "elsewhere", "ci"),
    ]
    for c in changes:
        assert await store.record_change(c) == c
    window = await store.list_changes([res], T0 - 24 * MICROS_PER_HOUR, T0, [], 100)
    assert [c.change_id for c in window] == [changes[0].change_id, changes[1].change_id]
    assert window[0] == changes[0]
    deploys = await store.list_changes([res, other], T0 - 24 * MICROS_PER_HOUR, T0, [ChangeKind.DEPLOYMENT], 100)
    assert [c.change_id for c in deploys] == [changes[3].change_id, changes[0].change_id]
    edge = await store.list_changes([res], changes[1].occurred_at, changes[0].occurred_at, [], 100)
    assert len(edge) == 2  # both bounds inclusive
    assert len(await store.list_changes([res], T0 - 24 * MICROS_PER_HOUR, T0, [], 1)) == 1


async def test_long_messages_unicode_and_special_tags(store: Store) -> None:
    run = uid()
    long_message = "x" * 16_000 + " tail"
    tags = {"run": run, "quote'\"": "va=l;ue}", "emoji🚀": "✓ ünïcødé", "new\nline": "\\back"}
    snap = (await capture_one(store, message=long_message, tags=tags)).snapshot
    got = await store.get_error(snap.error_id)
    assert got.report.message == long_message and got.report.tags == tags
    for key, value in tags.items():
        page = await store.search_errors(ErrorFilter(tags={key: value}), 10)
        assert snap.error_id in {e.error_id for e in page.items}
    assert (await store.search_errors(ErrorFilter(tags={"run": run}, text="tail"), 10)).total_size == 1


async def test_concurrent_writers_lose_and_duplicate_nothing(store: Store) -> None:
    run = uid()
    before = await store.count_errors()

    async def writer(w: int) -> list[str]:
        ids = []
        for i in range(500):
            outcome = await capture_one(store, tags={"run": run}, request_id=f"{run}-{w}-{i}")
            ids.append(outcome.snapshot.error_id)
        return ids

    results = await asyncio.gather(*(writer(w) for w in range(8)))
    ids = [i for r in results for i in r]
    assert len(ids) == len(set(ids)) == 4000
    assert (await store.search_errors(ErrorFilter(tags={"run": run}), 1, count_limit=4000)).total_size == 4000
    assert await store.count_errors() >= before + 4000


async def test_topology_around_a_hub_is_capped_and_marked_truncated(store: Store) -> None:
    # 300 dependents of one hub: the neighbourhood lists at most the cap per hop (100 by default).
    p = uid("hub")
    hub, lone = f"{p}-db", f"{p}-lone"
    dependents = [f"{p}-svc-{i:03d}" for i in range(300)]
    await store.upsert_resources([Resource(hub, "postgres", "DB"), Resource(lone)], [])
    await store.upsert_resources([], [Dependency(d, hub) for d in dependents])
    around_hub = await store.get_topology(hub, 2)
    assert around_hub.truncated
    listed = {r.id for r in around_hub.resources}
    assert hub in listed and len(listed) == 1 + 100
    assert listed - {hub} <= set(dependents)
    assert set(around_hub.dependencies) == {Dependency(d, hub) for d in listed - {hub}}
    # One dependent sees the hub and nothing else: its siblings are not neighbours.
    one = await store.get_topology(dependents[7], 2)
    assert not one.truncated
    assert {r.id for r in one.resources} == {dependents[7], hub}
    assert one.dependencies == [Dependency(dependents[7], hub)]
    assert not (await store.get_topology(lone, 2)).truncated


async def test_crafted_page_tokens_are_invalid_never_internal(store: Store) -> None:
    from errorreplay_server.store.pagination import PageTokens, filter_digest, new_key, query_digest

    run = uid()
    for _ in range(3):
        await capture_one(store, tags={"run": run})
    flt = ErrorFilter(tags={"run": run})
    page = await store.search_errors(flt, 1)
    assert (await store.search_errors(flt, 1, page.next_page_token)).items
    digest = filter_digest(flt, False)
    own = PageTokens(store.token_key())
    crafted = [
        # What a client could build before tokens were signed: the digest is public.
        base64.urlsafe_b64encode(json.dumps({"q": digest, "k": [9223372036854775808, 0]}).encode()).decode(),
        PageTokens(new_key()).encode(digest, [T0, T0]),  # signed by another database
        own.encode(digest, [2**63, 0]),  # signed, out of range
        own.encode(digest, [T0, "x"]),  # signed, wrong type
    ]
    for token in crafted:
        with pytest.raises(InvalidArgument) as info:
            await store.search_errors(flt, 1, token)
        assert [v.field for v in info.value.violations] == ["page_token"]
    groups_digest = query_digest("groups", [], "last_seen")
    with pytest.raises(InvalidArgument):
        await store.list_groups([], GroupOrder.LAST_SEEN, 1, own.encode(groups_digest, [0, "\ud800"]))
    assert len(store.token_key()) == 32


async def test_request_id_is_unique_per_idempotency_scope(store: Store) -> None:
    rid = uid("req-")

    def scoped(scope: str, message: str):  # type: ignore[no-untyped-def]
        new = new_error(message, request_id=rid)
        new.snapshot.idempotency_scope = scope
        return new

    (a,) = await store.capture([scoped("token:aaaa", "from a")])
    (b,) = await store.capture([scoped("token:bbbb", "from b")])
    (bare,) = await store.capture([scoped("", "no scope")])
    assert not a.duplicate and not b.duplicate and not bare.duplicate
    assert len({a.snapshot.error_id, b.snapshot.error_id, bare.snapshot.error_id}) == 3
    retry_a, retry_bare = await store.capture([scoped("token:aaaa", "again"), scoped("", "again")])
    assert retry_a.duplicate and retry_a.snapshot.error_id == a.snapshot.error_id
    assert retry_a.snapshot.report.message == "from a"
    assert retry_bare.duplicate and retry_bare.snapshot.error_id == bare.snapshot.error_id
    # Read back with the plain request_id and its scope.
    got = await store.get_error(b.snapshot.error_id)
    assert (got.request_id, got.idempotency_scope) == (rid, "token:bbbb")
    got = await store.get_error(bare.snapshot.error_id)
    assert (got.request_id, got.idempotency_scope) == (rid, "")


async def test_related_errors_over_a_large_neighbourhood(store: Store) -> None:
    # A capped neighbourhood can still name hundreds of resources (2 hops x 2 ways x 100 + more).
    subject = (await capture_one(store, resource_id=uid("res-"), occurred_at=T0)).snapshot
    neighbours = [uid("nb-") for _ in range(800)]
    far = await capture_one(store, resource_id=neighbours[-1], occurred_at=T0 + MICROS_PER_MINUTE)
    related = await store.related_errors(subject, T0 - MICROS_PER_HOUR, T0 + MICROS_PER_HOUR, neighbours, 100)
    assert [r.error_id for r in related] == [far.snapshot.error_id]
