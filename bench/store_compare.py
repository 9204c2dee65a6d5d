"""The same workload against each store through the Store interface (issue 3's comparison).

Seeds N errors with the bulk path, then measures single captures with 64 in flight and
filtered SearchErrors p50/p99, for SQLite and for a Bolt server (ArcadeDB, started here, or
the Neo4j at ERRORREPLAY_NEO4J_URI).

    python -m bench.store_compare --count 50000
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import random
import tempfile
import time
from pathlib import Path

from bench.seed import RESOURCES, make_batch, topology
from errorreplay_server.capture.clock import ReceiveClock
from errorreplay_server.domain.model import ErrorFilter, Severity, now_micros
from errorreplay_server.settings import Neo4jSettings, Settings
from errorreplay_server.store.base import Store
from errorreplay_server.store.sqlite import SqliteStore

FILTERS = [
    ErrorFilter(min_severity=Severity.HIGH, resource_ids=["svc-3"]),
    ErrorFilter(error_type="GatewayTimeout", environment="prod"),
    ErrorFilter(text="connection refused"),
    ErrorFilter(tags={"region": "eu-west-1"}, severities=[Severity.CRITICAL]),
    ErrorFilter(correlation_id="corr-100"),
]


def pct(samples: list[float], q: float) -> float:
    samples = sorted(samples)
    return round(samples[min(len(samples) - 1, int(q * len(samples)))] * 1000, 2)


async def measure(store: Store, count: int, searches: int) -> dict[str, object]:
    await store.start()
    try:
        clock = ReceiveClock()
        clock.advance_past(await store.latest_received_at())
        resources, deps = topology()
        await store.upsert_resources(resources, deps)
        rnd = random.Random(11)
        now = now_micros()
        began = time.perf_counter()
        for start in range(0, count, 500):
            await store.capture(make_batch(start, min(500, count - start), clock, rnd, now))
        seed_seconds = time.perf_counter() - began
        singles = make_batch(count, 2000, clock, rnd, now)
        latencies: list[float] = []

        async def one(i: int) -> None:
            t = time.perf_counter()
            await store.capture([singles[i]])
            latencies.append(time.perf_counter() - t)

        began = time.perf_counter()
        for chunk in range(0, len(singles), 64):
            await asyncio.gather(*(one(i) for i in range(chunk, min(chunk + 64, len(singles)))))
        capture_rate = len(singles) / (time.perf_counter() - began)
        search: list[float] = []
        for i in range(searches):
            t = time.perf_counter()
            await store.search_errors(FILTERS[i % len(FILTERS)], 50)
            search.append(time.perf_counter() - t)
        return {
            "seeded": count,
            "seed_per_s": round(count / seed_seconds),
            "capture_per_s_64_in_flight": round(capture_rate),
            "capture_p50_ms": pct(latencies, 0.5),
            "capture_p99_ms": pct(latencies, 0.99),
            "search_p50_ms": pct(search, 0.5),
            "search_p99_ms": pct(search, 0.99),
            "resources": len(RESOURCES),
        }
    finally:
        await store.close()


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--count", type=int, default=50_000)
    parser.add_argument("--searches", type=int, default=500)
    args = parser.parse_args()
    results: dict[str, object] = {}
    with tempfile.TemporaryDirectory(prefix="store-compare-") as tmp:
        results["sqlite"] = await measure(SqliteStore(Path(tmp) / "x.db"), args.count, args.searches)
        from errorreplay_server.store.neo4j import Neo4jStore

        neo4j = Settings.from_env(os.environ).neo4j
        if neo4j.uri:
            results["neo4j"] = await measure(Neo4jStore(neo4j), args.count, args.searches)
        else:
            from tests.bolt_server import start_arcadedb

            server = start_arcadedb(Path(tmp) / "arcadedb")
            try:
                settings = Neo4jSettings(
                    uri=server.uri, username=server.username, password=server.password, database=server.database
                )
                results["bolt"] = await measure(Neo4jStore(settings), args.count, args.searches)
            finally:
                server.stop()
    print(json.dumps(results))


if __name__ == "__main__":
    asyncio.run(main())
