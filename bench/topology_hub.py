"""ListRecentErrors latency while a hub resource with 20,000 dependents keeps receiving errors.

The scenario of issue 19 (item 1): one resource, `db-main`, with 20,000 `svc-i DEPENDS_ON db-main`
(sent in calls of ERRORREPLAY_MAX_DEPENDENCIES_PER_CALL), then captures on db-main without pause
(each one walks db-main's neighbourhood for correlation and enrichment) while this process times
ListRecentErrors one call at a time. Starts its own `errorreplay serve` on a fresh data directory:

    .venv/bin/python -m bench.topology_hub [--dependents 20000] [--calls 300] [--writers 4]

Prints one JSON line: ListRecentErrors p50/p99, captures made meanwhile, and GetTopology's answer.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import tempfile
import time
from pathlib import Path

import grpc

from bench.run import errorreplay_server
from errorreplay.v1 import message_pb2 as m
from errorreplay.v1 import request_response_pb2 as rr
from errorreplay.v1 import service_pb2_grpc

HUB = "db-main"
PER_CALL = 5000


async def scenario(address: str, dependents: int, calls: int, writers: int) -> dict[str, object]:
    async with grpc.aio.insecure_channel(address) as channel:
        errors = service_pb2_grpc.ErrorReplayServiceStub(channel)
        topology = service_pb2_grpc.TopologyServiceStub(channel)
        for start in range(0, dependents, PER_CALL):
            deps = [
                m.Dependency(dependent_id=f"svc-{i}", dependency_id=HUB)
                for i in range(start, min(dependents, start + PER_CALL))
            ]
            await topology.UpsertResources(rr.UpsertResourcesRequest(dependencies=deps), timeout=120)
        stop = asyncio.Event()
        captured = 0

        async def write() -> None:
            nonlocal captured
            report = m.ErrorReport(
                message="connection pool exhausted", severity=m.SEVERITY_CRITICAL, source=m.SOURCE_APPLICATION
            )
            report.resource_id = HUB
            while not stop.is_set():
                await errors.CaptureError(rr.CaptureErrorRequest(error=report), timeout=30)
                captured += 1

        tasks = [asyncio.create_task(write()) for _ in range(writers)]
        samples: list[float] = []
        failures = 0
        try:
            for _ in range(calls):
                began = time.perf_counter()
                try:
                    await errors.ListRecentErrors(rr.ListRecentErrorsRequest(page_size=20), timeout=5)
                except grpc.aio.AioRpcError:
                    failures += 1
                samples.append(time.perf_counter() - began)
        finally:
            stop.set()
            await asyncio.gather(*tasks, return_exceptions=True)
        began = time.perf_counter()
        topo = (await topology.GetTopology(rr.GetTopologyRequest(resource_id=HUB), timeout=30)).topology
        topology_ms = (time.perf_counter() - began) * 1000
    samples.sort()
    return {
        "dependents": dependents,
        "list_recent_errors": {
            "n": calls,
            "failed": failures,
            "p50_ms": round(samples[len(samples) // 2] * 1000, 2),
            "p99_ms": round(samples[min(calls - 1, int(calls * 0.99))] * 1000, 2),
        },
        "captures_on_hub_meanwhile": captured,
        "get_topology": {
            "ms": round(topology_ms, 2),
            "resources": len(topo.resources),
            "dependencies": len(topo.dependencies),
            "truncated": topo.truncated,
        },
    }


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--dependents", type=int, default=20_000)
    parser.add_argument("--calls", type=int, default=300)
    parser.add_argument("--writers", type=int, default=4)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as data, errorreplay_server(Path(data)) as address:
        result = asyncio.run(scenario(address, args.dependents, args.calls, args.writers))
    print(json.dumps(result))


if __name__ == "__main__":
    main()
