"""Time from CaptureError to the notification arriving at a webhook, enrichment off and on.

A local receiver (aiohttp) stands in for Slack; a rule sends a Block Kit message for every new
group. Each capture starts a new group and waits for its message before the next one, so the
figure is the pipeline's latency, not a queue's: decision, outbox write, context wait (enrichment
on: 100 ms backends from bench/slow_backend.py), replay, compose, POST.

    python -m bench.notify_latency --count 100
"""

from __future__ import annotations

import argparse
import asyncio
import json
import random
import statistics
import string
import tempfile
import time
from pathlib import Path
from typing import Any

import grpc
from aiohttp import web

from bench.run import errorreplay_server, slow_backend
from errorreplay.v1 import message_pb2 as m
from errorreplay.v1 import request_response_pb2 as rr
from errorreplay.v1 import service_pb2_grpc


class Receiver:
    def __init__(self) -> None:
        self.arrived: dict[str, float] = {}
        self.event = asyncio.Event()

    async def handle(self, request: web.Request) -> web.Response:
        body = json.loads(await request.read())
        # The error id is in the context block: "rule `x` (new_group) · error `err_…` · time".
        error_id = body["blocks"][-1]["elements"][0]["text"].split("`")[3]
        self.arrived.setdefault(error_id, time.perf_counter())
        self.event.set()
        return web.Response(text="ok")


async def measure(address: str, receiver: Receiver, count: int) -> dict[str, Any]:
    latencies = []
    # Letters only: a long run of digits in an identifier is refused as a possible card number.
    run_tag = "".join(random.choices(string.ascii_lowercase, k=8))
    async with grpc.aio.insecure_channel(address) as channel:
        stub = service_pb2_grpc.ErrorReplayServiceStub(channel)
        for i in range(count):
            report = m.ErrorReport(
                message=f"bench notification {i}",
                error_type=f"BenchNotify{run_tag}{i}",
                severity=m.SEVERITY_HIGH,
                source=m.SOURCE_APPLICATION,
                resource_id="api-orders",
                service="orders-api",
                environment="production",
            )
            started = time.perf_counter()
            reply = await stub.CaptureError(rr.CaptureErrorRequest(error=report), timeout=30)
            async with asyncio.timeout(60):
                while reply.error_id not in receiver.arrived:
                    receiver.event.clear()
                    await receiver.event.wait()
            latencies.append((receiver.arrived[reply.error_id] - started) * 1000)
    latencies.sort()
    return {
        "count": count,
        "p50_ms": round(statistics.median(latencies), 1),
        "p99_ms": round(latencies[min(len(latencies) - 1, int(len(latencies) * 0.99))], 1),
        "max_ms": round(latencies[-1], 1),
    }


async def run(count: int) -> dict[str, Any]:
    receiver = Receiver()
    app = web.Application()
    app.router.add_post("/slack", receiver.handle)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = runner.addresses[0][1]
    results: dict[str, Any] = {}
    try:
        with tempfile.TemporaryDirectory(prefix="errorreplay-bench-notify-") as tmp:
            config = Path(tmp) / "errorreplay.toml"
            config.write_text(
                f"""
[notifications.targets.slack]
kind = "slack"
url = "http://127.0.0.1:{port}/slack"

[[notifications.rules]]
name = "new-groups"
trigger = "new_group"
target = "slack"
"""
            )
            env = {"ERRORREPLAY_CONFIG": str(config)}
            with errorreplay_server(Path(tmp) / "off", ERRORREPLAY_ENRICHMENT="off", **env) as address:
                results["enrichment_off"] = await measure(address, receiver, count)
            with (
                slow_backend() as backend,
                errorreplay_server(
                    Path(tmp) / "on",
                    ERRORREPLAY_PROMETHEUS_URL=backend,
                    ERRORREPLAY_LOKI_URL=backend,
                    ERRORREPLAY_TEMPO_URL=backend,
                    **env,
                ) as address,
            ):
                results["enrichment_on"] = await measure(address, receiver, count)
    finally:
        await runner.cleanup()
    return results


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--count", type=int, default=200)
    args = parser.parse_args()
    print(json.dumps(asyncio.run(run(args.count))))


if __name__ == "__main__":
    main()
