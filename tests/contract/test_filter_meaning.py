"""One filter meaning: the same cases, exact answers, on every store and on the stream matcher."""

from __future__ import annotations

import pytest

from errorreplay_server.domain.model import ErrorSnapshot
from errorreplay_server.store.base import Store
from errorreplay_server.streaming.matcher import ErrorMatcher
from tests.contract.filter_cases import CASES, Case, case_filter, dataset
from tests.factories import uid

CASE_IDS = [case[0] for case in CASES]


@pytest.fixture
async def stored(store: Store) -> tuple[str, list[ErrorSnapshot]]:
    run = uid()
    outcomes = await store.capture(dataset(run))
    return run, [o.snapshot for o in outcomes]


async def test_every_case_on_the_store(store: Store, stored: tuple[str, list[ErrorSnapshot]]) -> None:
    # One store start for all cases (the Bolt server is slow to set up); each case is asserted.
    run, snapshots = stored
    index = {s.error_id: i for i, s in enumerate(snapshots)}
    wrong = []
    for name, fields, expected in CASES:
        page = await store.search_errors(case_filter(run, fields), 100)
        got = [index[e.error_id] for e in page.items]
        # Newest first: the dataset's occurred_at grows with the index.
        if got != sorted(expected, reverse=True) or page.total_size != len(expected):
            wrong.append((name, got, page.total_size, sorted(expected, reverse=True)))
    assert wrong == []


@pytest.mark.parametrize("case", CASES, ids=CASE_IDS)
def test_case_on_the_stream_matcher(case: Case) -> None:
    name, fields, expected = case
    run = uid()
    snapshots = [item.snapshot for item in dataset(run)]
    matcher = ErrorMatcher(case_filter(run, fields))
    assert {i for i, s in enumerate(snapshots) if matcher.matches(s)} == expected, name
