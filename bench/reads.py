"""Read latencies against a seeded server: GetError, ReplayError, filtered SearchErrors, GetStatistics.

Calls run one at a time from this process, so each figure is one call's latency, not a queue.
"""

from __future__ import annotations

import argparse
import json
import random
import time
from collections.abc import Callable

import grpc

from errorreplay.v1 import message_pb2 as m
from errorreplay.v1 import request_response_pb2 as rr
from errorreplay.v1 import service_pb2_grpc


def timed(fn: Callable[[], object], n: int) -> dict[str, float]:
    samples = []
    for _ in range(n):
        began = time.perf_counter()
        fn()
        samples.append(time.perf_counter() - began)
    samples.sort()
    return {
        "n": n,
        "p50_ms": round(samples[len(samples) // 2] * 1000, 2),
        "p99_ms": round(samples[min(n - 1, int(n * 0.99))] * 1000, 2),
    }


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--target", required=True)
    parser.add_argument("--calls", type=int, default=300)
    args = parser.parse_args()
    rnd = random.Random(3)
    with grpc.insecure_channel(args.target, options=[("grpc.max_receive_message_length", 64 << 20)]) as channel:
        stub = service_pb2_grpc.ErrorReplayServiceStub(channel)
        sample = stub.SearchErrors(rr.SearchErrorsRequest(page_size=1000)).errors
        ids = [e.error_id for e in sample]
        filters = [
            m.ErrorFilter(min_severity=m.SEVERITY_HIGH, resource_ids=["svc-3"]),
            m.ErrorFilter(error_type="GatewayTimeout", environment="prod"),
            m.ErrorFilter(text="connection refused"),
            m.ErrorFilter(tags={"region": "eu-west-1"}, severities=[m.SEVERITY_CRITICAL]),
            m.ErrorFilter(correlation_id="corr-100"),
        ]
        results = {
            "get_error": timed(lambda: stub.GetError(rr.GetErrorRequest(error_id=rnd.choice(ids))), args.calls),
            "replay_error": timed(
                lambda: stub.ReplayError(rr.ReplayErrorRequest(error_id=rnd.choice(ids))), args.calls
            ),
            "search_errors": timed(
                lambda: stub.SearchErrors(rr.SearchErrorsRequest(filter=rnd.choice(filters), page_size=50)),
                args.calls,
            ),
            "statistics_24h": timed(lambda: stub.GetStatistics(rr.GetStatisticsRequest()), max(10, args.calls // 10)),
        }
    print(json.dumps(results))


if __name__ == "__main__":
    main()
