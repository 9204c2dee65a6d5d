"""GetError's latency in process, against a seeded data dir (`bench.seed`), without gRPC.

Times `DataPlane.get_error` on the ids `bench.reads` picks (the newest 1,000), one call at a
time, and prints p50/p99 plus a cProfile of the calls with `--profile`. It isolates the read
path (store reads, the cascade walk, decoding) from transport and serialisation. The mean time
per call spent awaiting each kind of store read is printed too (`store_ms`); the rest of
`mean_ms` is the analysis in Python.

    .venv/bin/python -m bench.get_error --data-dir D [--calls 300] [--profile]
"""

from __future__ import annotations

import argparse
import asyncio
import cProfile
import json
import pstats
import random
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

from errorreplay_server.dataplane import DataPlane
from errorreplay_server.domain.model import ErrorFilter
from errorreplay_server.server import settle_heap
from errorreplay_server.settings import Limits
from errorreplay_server.store.sqlite import SqliteStore
from errorreplay_server.streaming.hub import InProcessHub


async def run(data_dir: Path, calls: int, profile: bool) -> dict[str, object]:
    store = SqliteStore(data_dir / "errorreplay.db")
    await store.start()
    try:
        # get_error reads only the store and the analysis settings: no capture service or hub.
        plane = DataPlane(store, None, InProcessHub(store), Limits())  # type: ignore[arg-type]
        ids = [e.error_id for e in (await store.search_errors(ErrorFilter(), 1000, with_total=False)).items]
        waited = {name: 0.0 for name in ("related_errors", "get_topology", "get_error")}
        for name in waited:
            setattr(store, name, _timed(getattr(store, name), name, waited))
        rnd = random.Random(3)
        for error_id in ids[:20]:  # warm the page cache and the reader threads
            await plane.get_error(error_id)
        settle_heap()  # as a serving process does once started
        waited.update(dict.fromkeys(waited, 0.0))
        profiler = cProfile.Profile() if profile else None
        samples, related = [], []
        for _ in range(calls):
            error_id = rnd.choice(ids)
            if profiler:
                profiler.enable()
            began = time.perf_counter()
            snapshot = await plane.get_error(error_id)
            samples.append(time.perf_counter() - began)
            if profiler:
                profiler.disable()
            related.append(len(snapshot.related_error_ids))
        samples.sort()
        if profiler:
            pstats.Stats(profiler).sort_stats("cumulative").print_stats(30)
        return {
            "errors": await store.count_errors(),
            "n": calls,
            "p50_ms": round(samples[len(samples) // 2] * 1000, 2),
            "p99_ms": round(samples[min(calls - 1, int(calls * 0.99))] * 1000, 2),
            "mean_ms": round(sum(samples) / calls * 1000, 2),
            "store_ms": {name: round(seconds / calls * 1000, 2) for name, seconds in waited.items()},
            "mean_related": round(sum(related) / len(related), 1),
        }
    finally:
        await store.close()


def _timed(read: Callable[..., Awaitable[Any]], name: str, waited: dict[str, float]) -> Callable[..., Awaitable[Any]]:
    async def timed(*args: Any, **kwargs: Any) -> Any:
        began = time.perf_counter()
        try:
            return await read(*args, **kwargs)
        finally:
            waited[name] += time.perf_counter() - began

    return timed


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--data-dir", type=Path, required=True)
    parser.add_argument("--calls", type=int, default=300)
    parser.add_argument("--profile", action="store_true")
    args = parser.parse_args()
    print(json.dumps(asyncio.run(run(args.data_dir, args.calls, args.profile))))


if __name__ == "__main__":
    main()
