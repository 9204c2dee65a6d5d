"""SubscribeErrors fan-out: subscribers spread over several processes, one publisher at a fixed rate.

Delivery latency runs from the server's received_at stamp (the same machine's clock) to the
moment a subscriber reads the message. Subscribers live in separate processes so that the
client side is not the bottleneck being measured.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import subprocess
import sys
import time
import uuid

import grpc

from errorreplay.v1 import message_pb2 as m
from errorreplay.v1 import request_response_pb2 as rr
from errorreplay.v1 import service_pb2_grpc


async def subscribe(target: str, count: int, tag: str, expected: int, timeout: float) -> None:
    """Child process: `count` subscribers; prints READY, then one JSON line of the latencies and
    of how many subscribers the server dropped as too slow."""
    flt = m.ErrorFilter(tags={"fanout": tag})
    channel = grpc.aio.insecure_channel(target)
    stub = service_pb2_grpc.ErrorReplayServiceStub(channel)
    latencies: list[float] = []
    dropped = 0
    calls = [stub.SubscribeErrors(rr.SubscribeErrorsRequest(filter=flt)) for _ in range(count)]

    async def consume(call: grpc.aio.UnaryStreamCall) -> None:
        nonlocal dropped
        seen = 0
        try:
            async for msg in call:
                if msg.heartbeat:
                    continue
                latencies.append(time.time() - msg.error.received_at.ToNanoseconds() / 1e9)
                seen += 1
                if seen >= expected:
                    return
        except grpc.aio.AioRpcError as exc:
            # The server ends a subscriber whose queue overflowed: at a rate beyond what it can
            # deliver, that is the outcome to report, not a failure of the bench.
            if exc.code() != grpc.StatusCode.RESOURCE_EXHAUSTED:
                raise
            dropped += 1

    tasks = [asyncio.create_task(consume(c)) for c in calls]
    await asyncio.sleep(0.5)
    print("READY", flush=True)
    with contextlib.suppress(TimeoutError):
        await asyncio.wait_for(asyncio.gather(*tasks), timeout)
    for c in calls:
        c.cancel()
    await channel.close()
    print(json.dumps({"latencies": [round(x, 6) for x in latencies], "dropped": dropped}), flush=True)


async def publish(targets: list[str], tag: str, rate: float, count: int) -> float:
    """Captures at `rate`, alternating between the targets (replicas)."""
    channels = [grpc.aio.insecure_channel(t) for t in targets]
    stubs = [service_pb2_grpc.ErrorReplayServiceStub(c) for c in channels]
    try:
        began = time.perf_counter()
        pending = []
        for i in range(count):
            delay = began + i / rate - time.perf_counter()
            if delay > 0:
                await asyncio.sleep(delay)
            report = m.ErrorReport(
                message=f"fan-out {i}", severity=m.SEVERITY_HIGH, source=m.SOURCE_APPLICATION, tags={"fanout": tag}
            )
            stub = stubs[i % len(stubs)]
            pending.append(asyncio.ensure_future(stub.CaptureError(rr.CaptureErrorRequest(error=report))))
        outcomes = await asyncio.gather(*pending, return_exceptions=True)
        failed = sum(isinstance(o, BaseException) for o in outcomes)
        if failed:
            print(
                f"{failed} captures failed: {next(o for o in outcomes if isinstance(o, BaseException))}",
                file=sys.stderr,
            )
        return time.perf_counter() - began
    finally:
        for channel in channels:
            await channel.close()


def run(targets: list[str], subscribers: int, rate: float, seconds: float, processes: int = 4) -> dict[str, float]:
    """Subscriber processes are spread round-robin over the targets (replicas)."""
    tag = uuid.uuid4().hex[:8]
    expected = int(rate * seconds)
    per = [subscribers // processes + (1 if i < subscribers % processes else 0) for i in range(processes)]
    children = [
        subprocess.Popen(
            [
                sys.executable,
                "-m",
                "bench.fanout",
                "--role",
                "subscribe",
                "--target",
                targets[i % len(targets)],
                "--count",
                str(n),
                "--tag",
                tag,
                "--expected",
                str(expected),
                "--timeout",
                str(seconds + 30),
            ],
            stdout=subprocess.PIPE,
            text=True,
        )
        for i, n in enumerate(per)
        if n
    ]
    for child in children:
        assert child.stdout is not None and child.stdout.readline().strip() == "READY"
    began = time.perf_counter()
    publish_seconds = asyncio.run(publish(targets, tag, rate, expected))
    latencies: list[float] = []
    dropped = 0
    for child in children:
        out, _ = child.communicate(timeout=seconds + 60)
        received = json.loads(out.strip().splitlines()[-1])
        latencies.extend(received["latencies"])
        dropped += received["dropped"]
    total_seconds = time.perf_counter() - began
    latencies.sort()
    n = len(latencies)
    return {
        "subscribers": subscribers,
        "rate_per_s": rate,
        "published": expected,
        "publish_seconds": round(publish_seconds, 2),
        "delivered": n,
        "expected_deliveries": expected * subscribers,
        "dropped_subscribers": dropped,
        "delivered_per_s": round(n / total_seconds, 1),
        "p50_ms": round(latencies[n // 2] * 1000, 2) if n else 0.0,
        "p99_ms": round(latencies[min(n - 1, int(n * 0.99))] * 1000, 2) if n else 0.0,
    }


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--target", required=True, help="host:port; several separated by commas (replicas)")
    parser.add_argument("--role", choices=["run", "subscribe"], default="run")
    parser.add_argument("--subscribers", type=int, default=100)
    parser.add_argument("--rate", type=float, default=100)
    parser.add_argument("--seconds", type=float, default=10)
    parser.add_argument("--processes", type=int, default=4)
    parser.add_argument("--count", type=int, default=25)
    parser.add_argument("--tag", default="")
    parser.add_argument("--expected", type=int, default=0)
    parser.add_argument("--timeout", type=float, default=60)
    args = parser.parse_args()
    if args.role == "subscribe":
        asyncio.run(subscribe(args.target, args.count, args.tag, args.expected, args.timeout))
    else:
        targets = args.target.split(",")
        print(json.dumps(run(targets, args.subscribers, args.rate, args.seconds, args.processes)))


if __name__ == "__main__":
    main()
