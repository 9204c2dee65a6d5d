"""Bulk seeding through the store (not the API): realistic errors, spread over 24 h.

Seeding goes through `Store.capture` in batches of 1,000, with fingerprints computed by the
same grouping code the server uses for a few dozen message templates; scrubbing is skipped
(the seed holds no secrets). That makes 1,000,000 errors a matter of minutes, where the API
path would spend most of its time on per-request work the benchmarks measure separately.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import random
import time
import uuid
from pathlib import Path

from errorreplay_server.analysis.grouping import fingerprint, group_id_for
from errorreplay_server.capture.clock import ReceiveClock
from errorreplay_server.domain.model import (
    MICROS_PER_HOUR,
    Dependency,
    ErrorReport,
    ErrorSnapshot,
    NewError,
    Resource,
    Severity,
    Source,
    now_micros,
)
from errorreplay_server.store.sqlite import SqliteStore

TEMPLATES = [
    ("GatewayTimeout", "upstream payment gateway timed out after {n} ms for order {n}"),
    ("ConnectionRefused", "connection refused to db-{r}:5432 (attempt {n})"),
    ("PoolExhausted", "connection pool exhausted: {n} waiting, max {n}"),
    ("NullPointerException", "Cannot invoke method on null object in handler {r}"),
    ("KeyError", "missing key 'user_{n}' in session cache"),
    ("HTTP503", "service unavailable from upstream api-{r}: retry after {n}s"),
    ("OOMKilled", "container checkout-{r} killed: memory limit {n}Mi exceeded"),
    ("DeadlineExceeded", "rpc to inventory-{r} exceeded deadline of {n} ms"),
]
STACK = "".join(
    f'  File "/srv/app/handlers/mod_{i}.py", line {100 + i}, in handle_{i}\n    result = client.call(order)\n'
    for i in range(6)
)
RESOURCES = [f"svc-{i}" for i in range(50)]
RESOURCE_TYPES = ["service", "postgres", "redis", "gateway"]


def topology() -> tuple[list[Resource], list[Dependency]]:
    resources = [Resource(r, RESOURCE_TYPES[i % 4], r.upper()) for i, r in enumerate(RESOURCES)]
    deps = [Dependency(RESOURCES[i], RESOURCES[i + 1]) for i in range(0, len(RESOURCES) - 1, 2)]
    deps += [Dependency(RESOURCES[i], RESOURCES[i + 3]) for i in range(0, len(RESOURCES) - 3, 5)]
    return resources, deps


def make_batch(start: int, count: int, clock: ReceiveClock, rnd: random.Random, now: int) -> list[NewError]:
    out = []
    for i in range(start, start + count):
        error_type, template = TEMPLATES[i % len(TEMPLATES)]
        resource = RESOURCES[rnd.randrange(len(RESOURCES))]
        report = ErrorReport(
            message=template.format(n=rnd.randrange(10_000), r=rnd.randrange(20)),
            severity=Severity(1 + rnd.randrange(5)),
            source=Source.APPLICATION if i % 5 else Source.PROMETHEUS,
            resource_id=resource,
            resource_type=RESOURCE_TYPES[RESOURCES.index(resource) % 4],
            service=f"service-{i % 12}",
            environment="prod" if i % 4 else "staging",
            release="2.14.1",
            error_type=error_type,
            stack_trace=STACK if i % 2 else "",
            correlation_id=f"corr-{i // 5}",
            trace_id=uuid.UUID(int=rnd.getrandbits(128)).hex,
            occurred_at=now - rnd.randrange(24 * MICROS_PER_HOUR),
            tags={"region": ["eu-west-1", "us-east-1"][i % 2], "pod": f"pod-{i % 40}"},
            attributes={"order_id": i, "amount": 12.5},
        )
        digest, title = fingerprint(report)
        received_at = clock.next()
        snapshot = ErrorSnapshot(
            error_id=f"err_{received_at:014x}{rnd.getrandbits(40):010x}",
            group_id=group_id_for(digest),
            received_at=received_at,
            report=report,
            fingerprint=digest,
        )
        out.append(NewError(snapshot, title))
    return out


async def seed(data_dir: Path, count: int, batch: int = 1000) -> dict[str, float]:
    store = SqliteStore(data_dir / "errorreplay.db")
    await store.start()
    try:
        clock = ReceiveClock()
        clock.advance_past(await store.latest_received_at())
        already = await store.count_errors()
        resources, deps = topology()
        await store.upsert_resources(resources, deps)
        rnd = random.Random(7)
        now = now_micros()
        began = time.perf_counter()
        pending: list[asyncio.Future[object]] = []
        for start in range(already, count, batch):
            items = make_batch(start, min(batch, count - start), clock, rnd, now)
            pending.append(asyncio.ensure_future(store.capture(items)))
            if len(pending) >= 4:
                await pending.pop(0)
        for p in pending:
            await p
        elapsed = time.perf_counter() - began
        return {"seeded": count - already, "seconds": round(elapsed, 1), "total": await store.count_errors()}
    finally:
        await store.close()


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--data-dir", type=Path, required=True)
    parser.add_argument("--count", type=int, required=True)
    args = parser.parse_args()
    print(json.dumps(asyncio.run(seed(args.data_dir, args.count))))


if __name__ == "__main__":
    main()
