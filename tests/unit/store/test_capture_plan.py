"""CapturePlan (store/core.py): the capture decisions both stores execute, without a store."""

from __future__ import annotations

from dataclasses import replace

from errorreplay_server.domain.model import SCOPE_SEPARATOR, GroupStatus, Severity
from errorreplay_server.store.core import CapturePlan, StoredState
from tests.factories import new_error

T0 = 1_760_000_000_000_000


def test_request_id_repeated_in_the_batch_is_a_duplicate_of_the_first() -> None:
    first = new_error(request_id="r1", group_id="grp_a")
    again = new_error(request_id="r1", group_id="grp_a")
    plan = CapturePlan.build([[first], [again]], StoredState())
    assert [o.duplicate for job in plan.outcomes for o in job] == [False, True]
    assert plan.outcomes[1][0].snapshot is first.snapshot
    assert plan.fresh == [first]
    assert plan.groups["grp_a"].count == 1


def test_request_id_already_stored_returns_the_stored_error_and_counts_nothing() -> None:
    stored = new_error(request_id="r1", group_id="grp_a").snapshot
    retry = new_error(request_id="r1", group_id="grp_a")
    plan = CapturePlan.build([[retry]], StoredState(by_request={"r1": stored}))
    (outcome,) = plan.outcomes[0]
    assert outcome.duplicate and outcome.snapshot is stored
    assert plan.fresh == [] and plan.groups == {}


def test_the_same_request_id_in_two_scopes_is_two_errors() -> None:
    a = new_error(request_id="r1", group_id="grp_a")
    b = new_error(request_id="r1", group_id="grp_a")
    a.snapshot.idempotency_scope, b.snapshot.idempotency_scope = "tenant-a", "tenant-b"
    plan = CapturePlan.build([[a, b]], StoredState(by_request={"r1": new_error(request_id="r1").snapshot}))
    assert [o.duplicate for o in plan.outcomes[0]] == [False, False]
    assert plan.groups["grp_a"].count == 2


def test_error_stored_by_a_lost_commit_is_answered_once_not_counted_again() -> None:
    item = new_error(group_id="grp_a")
    plan = CapturePlan.build([[item]], StoredState(by_id={item.snapshot.error_id: item.snapshot}))
    (outcome,) = plan.outcomes[0]
    assert not outcome.duplicate and outcome.snapshot is item.snapshot
    assert plan.fresh == [] and plan.groups == {}
    lookups = CapturePlan.lookups([[item]], retry=True)
    assert lookups.error_ids == [item.snapshot.error_id]
    assert CapturePlan.lookups([[item]]).error_ids == []


def test_first_error_on_a_resolved_group_reopens_it_once() -> None:
    items = [new_error(group_id="grp_r"), new_error(group_id="grp_r"), new_error(group_id="grp_o")]
    stored = StoredState(statuses={"grp_r": int(GroupStatus.RESOLVED), "grp_o": int(GroupStatus.MUTED)})
    plan = CapturePlan.build([items], stored)
    assert [o.regression for o in plan.outcomes[0]] == [True, False, False]
    assert plan.groups["grp_r"].reopen and plan.groups["grp_r"].status == GroupStatus.OPEN
    assert not plan.groups["grp_o"].reopen and plan.groups["grp_o"].status == GroupStatus.MUTED


def test_group_delta_folds_count_times_severity_representative_and_resources() -> None:
    items = [
        new_error(group_id="grp_a", occurred_at=T0 + 5, severity=Severity.LOW, resource_id="db-1"),
        new_error(group_id="grp_a", occurred_at=T0 - 3, severity=Severity.CRITICAL, resource_id="db-2"),
        new_error(group_id="grp_a", occurred_at=T0 + 9, severity=Severity.MEDIUM, resource_id="db-1"),
        new_error(group_id="grp_a", occurred_at=T0, severity=Severity.LOW),
    ]
    plan = CapturePlan.build([items[:2], items[2:]], StoredState())
    delta = plan.groups["grp_a"]
    assert (delta.count, delta.first_seen, delta.last_seen) == (4, T0 - 3, T0 + 9)
    assert delta.max_severity == int(Severity.CRITICAL)
    assert delta.representative_error_id == items[0].snapshot.error_id
    assert delta.title == items[0].group_title
    assert delta.resources == {"db-1", "db-2"}
    assert [len(job) for job in plan.outcomes] == [2, 2]


def test_lookups_name_each_key_and_group_once() -> None:
    a = new_error(request_id="r1", group_id="grp_b")
    b = new_error(request_id="r1", group_id="grp_a")
    c = new_error(group_id="grp_a")
    c2 = replace(c.snapshot, idempotency_scope="s", request_id="r2")
    lookups = CapturePlan.lookups([[a], [b, replace(c, snapshot=c2)]])
    assert lookups.request_ids == sorted({"r1", f"s{SCOPE_SEPARATOR}r2"})
    assert lookups.group_ids == ["grp_a", "grp_b"]


def test_only_the_first_error_of_a_group_no_commit_has_seen_is_new() -> None:
    items = [new_error(group_id="grp_new"), new_error(group_id="grp_new"), new_error(group_id="grp_old")]
    plan = CapturePlan.build([items[:1], items[1:]], StoredState(statuses={"grp_old": int(GroupStatus.OPEN)}))
    assert [o.new_group for job in plan.outcomes for o in job] == [True, False, False]
