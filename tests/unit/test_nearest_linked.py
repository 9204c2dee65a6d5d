"""DataPlane.related reads a cascade's related errors round by round, reading only what can enter
the nearest (dataplane.NearestLinked). Its answer must equal the plain way: every round, one read
of every resource known so far over the whole widened window. Checked on random cascades over a
real SQLite store, with limits small enough that the farthest-kept bound and the widened window
parts are both exercised."""

from __future__ import annotations

import itertools
import random
from pathlib import Path

import pytest

from errorreplay_server.analysis.correlation import cascade_errors, occurred_at, related_errors
from errorreplay_server.analysis.settings import AnalysisSettings
from errorreplay_server.dataplane import DataPlane
from errorreplay_server.domain.model import MICROS_PER_SECOND, Dependency, ErrorSnapshot, Resource
from errorreplay_server.settings import Limits
from errorreplay_server.store.base import Store
from errorreplay_server.store.sqlite import SqliteStore
from errorreplay_server.streaming.hub import InProcessHub
from tests.factories import new_error

T0 = 1_760_000_000_000_000
WINDOW = 60 * MICROS_PER_SECOND


async def related_the_plain_way(
    store: Store, snapshot: ErrorSnapshot, settings: AnalysisSettings
) -> tuple[list[ErrorSnapshot], list[Dependency]]:
    """DataPlane.related as it was before NearestLinked: each round reads everything again."""
    root, t, window = snapshot.report.resource_id, snapshot.report.occurred_at, settings.related_window_us
    edges: set[Dependency] = set()
    known, explored, found = {root}, set[str](), dict[str, ErrorSnapshot]()
    frontier, linked = [root], list[ErrorSnapshot]()
    lo, hi = t - window, t + window
    for _ in range(settings.max_cascade_depth + 1):
        explored.update(frontier)
        for rid in frontier:
            topology = await store.get_topology(rid, settings.related_hops)
            edges.update(topology.dependencies)
            known.update(r.id for r in topology.resources)
        for e in await store.related_errors(snapshot, lo, hi, sorted(known), settings.related_limit):
            found.setdefault(e.error_id, e)
        linked = cascade_errors(snapshot, found.values(), edges, settings)
        frontier = sorted({e.report.resource_id for e in linked} - explored)
        frontier = frontier[: max(0, settings.cascade_max_resources - len(explored))]
        if not frontier:
            break
        times = [occurred_at(e) for e in linked]
        lo, hi = min(lo, min(times) - window), max(hi, max(times) + window)
    dependencies = sorted(edges, key=lambda d: (d.dependent_id, d.dependency_id))
    return related_errors(snapshot, found.values(), dependencies, settings, cascade=linked), dependencies


@pytest.mark.parametrize("seed", range(6))
async def test_round_by_round_reads_give_what_reading_everything_gives(tmp_path: Path, seed: int) -> None:
    rnd = random.Random(seed)
    store = SqliteStore(tmp_path / "related.db")
    await store.start()
    try:
        # A chain of services, each calling the next, with a few side branches: errors cascade
        # along it, so a replay widens its window and its resources over several rounds.
        chain = [f"svc-{i}" for i in range(12)]
        sides = [(f"side-{i}", rnd.choice(chain)) for i in range(6)]
        deps = [Dependency(a, b) for a, b in itertools.pairwise(chain)]
        deps += [Dependency(side, target) for side, target in sides]
        resources = [*chain, *(side for side, _ in sides)]
        await store.upsert_resources([Resource(r, "service", r, {}) for r in resources], deps)
        errors = []
        for _ in range(400):
            # Clustered in time (several at one instant) so that ties in nearness occur too.
            at = T0 + rnd.randrange(-8, 9) * WINDOW // 2 + rnd.choice((0, 0, rnd.randrange(WINDOW)))
            fields = {"resource_id": rnd.choice(resources), "occurred_at": at}
            if rnd.random() < 0.1:
                fields["correlation_id"] = f"corr-{rnd.randrange(3)}"
            errors.append(new_error(**fields))  # type: ignore[arg-type]
        for start in range(0, len(errors), 100):
            await store.capture(errors[start : start + 100])
        subjects = rnd.sample([e.snapshot for e in errors], 25)
        for limit in (3, 10, 40, 1000):
            settings = AnalysisSettings(related_window_us=WINDOW, related_hops=1, related_limit=limit)
            plane = DataPlane(store, None, InProcessHub(store, analysis=settings), Limits(), settings)  # type: ignore[arg-type]
            for subject in subjects:
                for documents in (True, False):
                    got, got_deps = await plane.related(subject, documents=documents)
                    want, want_deps = await related_the_plain_way(store, subject, settings)
                    assert got_deps == want_deps
                    assert [e.error_id for e in got] == [e.error_id for e in want], (limit, subject.error_id)
    finally:
        await store.close()


async def test_a_cascade_widens_the_reads_over_several_rounds(tmp_path: Path) -> None:
    """The random cases above must include multi-round cascades, or they prove little."""
    store = SqliteStore(tmp_path / "chain.db")
    await store.start()
    try:
        chain = [f"svc-{i}" for i in range(5)]
        await store.upsert_resources(
            [Resource(r, "service", r, {}) for r in chain],
            [Dependency(a, b) for a, b in itertools.pairwise(chain)],
        )
        # svc-0 fails first, then each caller along the chain a little later.
        step = WINDOW * 3 // 4
        outcomes = await store.capture(
            [new_error(resource_id=r, occurred_at=T0 + i * step) for i, r in enumerate(reversed(chain))]
        )
        first = outcomes[0].snapshot
        calls: list[tuple[int, int, list[str]]] = []
        related_errors_of = store.related_errors

        async def recorded(error, start, end, resource_ids, limit, **kw):  # type: ignore[no-untyped-def]
            calls.append((start, end, list(resource_ids)))
            return await related_errors_of(error, start, end, resource_ids, limit, **kw)

        store.related_errors = recorded  # type: ignore[method-assign]
        settings = AnalysisSettings(related_window_us=WINDOW, related_hops=1)
        plane = DataPlane(store, None, InProcessHub(store, analysis=settings), Limits(), settings)  # type: ignore[arg-type]
        related, _ = await plane.related(first)
        assert [e.report.resource_id for e in related] == list(reversed(chain))[1:]
        assert len(calls) >= 3
        # Later rounds read no resource over a range an earlier round already read.
        ranges: dict[str, list[tuple[int, int]]] = {}
        for start, end, resource_ids in calls:
            for rid in resource_ids:
                assert all(end < a or b < start for a, b in ranges.get(rid, [])), (rid, calls)
                ranges.setdefault(rid, []).append((start, end))
    finally:
        await store.close()
