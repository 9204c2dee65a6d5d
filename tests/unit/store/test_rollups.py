"""Rollup planning (store/core.py): which windows rollups answer, and the edges read from rows."""

from __future__ import annotations

from errorreplay_server.domain.model import MICROS_PER_HOUR, MICROS_PER_MINUTE, ErrorFilter, Severity
from errorreplay_server.store.core import (
    ROLLUP_GROUP,
    ROLLUP_RESOURCE,
    ROLLUP_SEVERITY,
    StatisticsBuilder,
    add_rollup_rows,
    rollup_counts,
    rollup_row,
    rollup_split,
    statistics_filter,
)
from tests.factories import new_error

H = MICROS_PER_HOUR
BASE = 488_888 * H  # on the hour


def test_whole_hours_from_rollups_and_partial_edges_from_rows() -> None:
    start, end = BASE + 20 * MICROS_PER_MINUTE, BASE + 3 * H + 15 * MICROS_PER_MINUTE
    split = rollup_split(statistics_filter(ErrorFilter(), start, end), H)
    assert split is not None
    assert (split.first_hour, split.end_hour) == (BASE + H, BASE + 3 * H)
    assert split.edges == [(start, BASE + H - 1), (BASE + 3 * H, end - 1)]


def test_aligned_window_has_no_edges() -> None:
    split = rollup_split(statistics_filter(ErrorFilter(), BASE, BASE + 24 * H), 2 * H)
    assert split is not None and split.edges == []


def test_rollups_cannot_answer_other_conditions_odd_buckets_or_no_whole_hour() -> None:
    window = (BASE, BASE + 24 * H)
    for flt in (
        ErrorFilter(text="boom"),
        ErrorFilter(tags={"k": "v"}),
        ErrorFilter(severities=[Severity.HIGH]),
        ErrorFilter(exclude_group_ids=["grp_x"]),
    ):
        assert rollup_split(statistics_filter(flt, *window), H) is None, flt
    assert rollup_split(statistics_filter(ErrorFilter(), *window), 30 * MICROS_PER_MINUTE) is None
    assert rollup_split(statistics_filter(ErrorFilter(), BASE + 1, BASE + H + 5), H) is None


def test_filter_time_bounds_narrow_the_window() -> None:
    flt = ErrorFilter(start_time=BASE + 2 * H + 5)
    split = rollup_split(statistics_filter(flt, BASE, BASE + 5 * H), H)
    assert split is not None
    assert (split.first_hour, split.end_hour) == (BASE + 3 * H, BASE + 5 * H)
    assert split.edges == [(BASE + 2 * H + 5, BASE + 3 * H - 1)]


def test_rollup_counts_feed_the_builder_like_rows() -> None:
    items = [
        new_error(occurred_at=BASE + 5, severity=Severity.LOW, resource_id="r1", group_id="grp_a"),
        new_error(occurred_at=BASE + H - 1, severity=Severity.LOW, group_id="grp_a"),
        new_error(occurred_at=BASE + H, severity=Severity.HIGH, resource_id="r1", group_id="grp_b"),
    ]
    counts = rollup_counts(rollup_row(i.snapshot) for i in items)
    assert counts[BASE, ROLLUP_SEVERITY, str(int(Severity.LOW))] == 2
    assert counts[BASE, ROLLUP_RESOURCE, "r1"] == 1 and counts[BASE + H, ROLLUP_RESOURCE, "r1"] == 1
    assert counts[BASE, ROLLUP_GROUP, "grp_a"] == 2
    assert not any(key == "" for _, _, key in counts)  # no resource: not counted under ""
    builder = StatisticsBuilder(BASE, BASE + 2 * H, H)
    add_rollup_rows(builder, [(*key, n) for key, n in counts.items()])
    stats = builder.build()
    assert stats.total_count == 3
    assert [t.count for t in stats.timed_counts] == [2, 1]
    assert stats.by_severity == {Severity.LOW: 2, Severity.HIGH: 1}
    assert stats.by_resource == {"r1": 2}
    assert builder.top_groups(1) == [("grp_a", 2)]
