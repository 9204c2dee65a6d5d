"""Web console page latencies at 100,000 stored errors (issue 21: pages render in <= 100 ms).

Seeds the store with bench.seed (24 h of realistic errors), starts the server with the console on
port 0, and fetches each page one at a time from this process. A figure is one request's latency
as the client sees it, so it bounds the server-side render from above. The statistics page and
the sparklines are cached for ERRORREPLAY_CONSOLE_CACHE_SECONDS (30 s): their rows count the
first, uncomputed view separately (`*_cold`, one sample per window or group).

    .venv/bin/python -m bench.console --data-dir /tmp/console-bench --count 100000 --calls 50
"""

from __future__ import annotations

import argparse
import asyncio
import json
import random
import time
from pathlib import Path

import aiohttp

from bench.seed import seed
from errorreplay_server.domain.model import ErrorFilter, GroupOrder
from errorreplay_server.http.settings import HttpSettings
from errorreplay_server.server import start_server
from errorreplay_server.settings import Settings


def percentiles(samples: list[float]) -> dict[str, float]:
    samples.sort()
    n = len(samples)
    return {
        "n": n,
        "p50_ms": round(samples[n // 2] * 1000, 2),
        "p99_ms": round(samples[min(n - 1, int(n * 0.99))] * 1000, 2),
    }


async def run(data_dir: Path, count: int, calls: int) -> dict[str, object]:
    seeded = await seed(data_dir, count)
    settings = Settings(
        listen_address="127.0.0.1:0",
        data_dir=data_dir,
        metrics_address="",
        enrichment_enabled=False,
        http=HttpSettings(address="127.0.0.1:0"),
    )
    running = await start_server(settings)
    assert running.http is not None
    base = f"http://127.0.0.1:{running.http.port}"
    try:
        sample = await running.store.search_errors(ErrorFilter(), 200, "", with_total=False)
        ids = [e.error_id for e in sample.items]
        rnd = random.Random(5)
        pages = {
            "groups": lambda: "/",
            "groups_filtered": lambda: "/?severity=high&text=connection+refused",
            "replay": lambda: f"/errors/{rnd.choice(ids)}",
            "live": lambda: "/live",
            "statistics_24h": lambda: "/statistics?window=24h",
        }
        results: dict[str, object] = {"seed": seeded}
        async with aiohttp.ClientSession() as session:

            async def once(path: str) -> float:
                began = time.perf_counter()
                async with session.get(base + path) as response:
                    await response.read()
                    assert response.status == 200, (path, response.status)
                return time.perf_counter() - began

            groups = await running.store.list_groups([], GroupOrder.LAST_SEEN, 25, "")
            results["sparkline_cold"] = percentiles(
                [await once(f"/groups/{g.group_id}/sparkline.svg") for g in groups.items]
            )
            results["statistics_cold"] = percentiles(
                [await once(f"/statistics?window={w}") for w in ("1h", "6h", "24h", "7d")]
            )
            for name, path in pages.items():
                samples = []
                for _ in range(calls):
                    began = time.perf_counter()
                    async with session.get(base + path()) as response:
                        await response.read()
                        assert response.status == 200, (name, response.status)
                    samples.append(time.perf_counter() - began)
                results[name] = percentiles(samples)
        return results
    finally:
        await running.stop(grace=None)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--data-dir", type=Path, required=True)
    parser.add_argument("--count", type=int, default=100_000)
    parser.add_argument("--calls", type=int, default=50)
    args = parser.parse_args()
    args.data_dir.mkdir(parents=True, exist_ok=True)
    # One line: bench/run.py reads the last line of a bench's output as its result.
    print(json.dumps(asyncio.run(run(args.data_dir, args.count, args.calls))))


if __name__ == "__main__":
    main()
