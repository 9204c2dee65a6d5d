"""A load generator process: many unary calls in flight over one grpc.aio channel, or (mode
`sentry`) many Sentry envelopes in flight over HTTP keep-alive connections, as an SDK sends them.

Prints one JSON line: calls, errors/s, latency percentiles. Payloads are realistic error reports
of about 1.5 KB (message, stack trace, tags, attributes), like the bare echo baseline
(docs/ARCHITECTURE.md §6). The `otlp` mode sends the same errors as OTLP trace exports: one span per
error, each with one `exception` event, as an OpenTelemetry SDK exports them; the Sentry events
carry the same content, gzip-compressed like the SDKs' bodies.
"""

from __future__ import annotations

import argparse
import asyncio
import gzip
import json
import time
import uuid
from collections import Counter

import grpc
from opentelemetry.proto.collector.trace.v1 import trace_service_pb2_grpc
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest
from opentelemetry.proto.common.v1.common_pb2 import AnyValue, InstrumentationScope, KeyValue
from opentelemetry.proto.resource.v1.resource_pb2 import Resource
from opentelemetry.proto.trace.v1.trace_pb2 import ResourceSpans, ScopeSpans, Span, Status

from errorreplay.v1 import message_pb2 as m
from errorreplay.v1 import request_response_pb2 as rr
from errorreplay.v1 import service_pb2_grpc

STACK = "".join(
    f'  File "/srv/app/handlers/payment_{i}.py", line {100 + i}, in handle_{i}\n    result = client.call(order)\n'
    for i in range(8)
)


def gateway_timeout(i: int) -> str:
    return f"upstream payment gateway timed out after 3000 ms for order {i} (attempt 3)"


def make_report(i: int, run: str) -> m.ErrorReport:
    r = m.ErrorReport(
        message=gateway_timeout(i),
        severity=m.SEVERITY_HIGH if i % 3 else m.SEVERITY_CRITICAL,
        source=m.SOURCE_APPLICATION,
        resource_id=f"api-{i % 20}",
        resource_type="service",
        service="checkout",
        environment="prod",
        release="2.14.1",
        error_type="GatewayTimeout",
        stack_trace=STACK,
        correlation_id=f"{run}-{i // 4}",
        trace_id=uuid.uuid4().hex,
        tags={"run": run, "region": "eu-west-1", "pod": f"checkout-{i % 7}"},
    )
    r.attributes.update({"order_id": i, "amount": 12.5, "currency": "EUR", "customer": {"tier": "gold"}})
    return r


def _kv(key: str, value: str | int | float) -> KeyValue:
    if isinstance(value, str):
        return KeyValue(key=key, value=AnyValue(string_value=value))
    if isinstance(value, int):
        return KeyValue(key=key, value=AnyValue(int_value=value))
    return KeyValue(key=key, value=AnyValue(double_value=value))


def make_otlp_export(first: int, count: int, run: str) -> ExportTraceServiceRequest:
    """`count` spans of one service, each with one `exception` event: the same content as make_report."""
    resource = Resource(
        attributes=[
            _kv("service.name", "checkout"),
            _kv("service.version", "2.14.1"),
            _kv("deployment.environment.name", "prod"),
            _kv("cloud.region", "eu-west-1"),
            _kv("host.name", f"checkout-{first % 7}"),
        ]
    )
    now = time.time_ns()
    spans = []
    for i in range(first, first + count):
        event = Span.Event(
            name="exception",
            time_unix_nano=now + i,
            attributes=[
                _kv("exception.type", "GatewayTimeout"),
                _kv("exception.message", gateway_timeout(i)),
                _kv("exception.stacktrace", STACK),
                _kv("exception.escaped", "true"),
            ],
        )
        spans.append(
            Span(
                trace_id=uuid.uuid4().bytes,
                span_id=uuid.uuid4().bytes[:8],
                name="POST /v1/payments",
                kind=Span.SPAN_KIND_SERVER,
                start_time_unix_nano=now + i - 3_000_000_000,
                end_time_unix_nano=now + i,
                attributes=[_kv("http.route", "/v1/payments"), _kv("order_id", i), _kv("run", run)],
                events=[event],
                status=Status(code=Status.STATUS_CODE_ERROR),
            )
        )
    scope = InstrumentationScope(name="checkout.payments", version="2.14.1")
    return ExportTraceServiceRequest(
        resource_spans=[ResourceSpans(resource=resource, scope_spans=[ScopeSpans(scope=scope, spans=spans)])]
    )


def fresh_ids(template: ExportTraceServiceRequest, call: int) -> ExportTraceServiceRequest:
    """The template with new trace ids and order numbers, so each call's errors are new (not
    retries, and not messages the scrubber has seen, as in the batch rows) while the load generator
    spends little CPU building them (it shares the cores with the server)."""
    export = ExportTraceServiceRequest()
    export.CopyFrom(template)
    prefix = call.to_bytes(8, "big")
    spans = export.resource_spans[0].scope_spans[0].spans
    for n, span in enumerate(spans):
        span.trace_id = prefix + n.to_bytes(8, "big")
        message = span.events[0].attributes[1]
        assert message.key == "exception.message"
        message.value.string_value = gateway_timeout(call * len(spans) + n)
    return export


def make_envelope(i: int, run: str) -> bytes:
    """A Sentry envelope with one event carrying make_report's content, gzip-compressed."""
    event_id = uuid.uuid4().hex
    frames = [
        {
            "filename": f"/srv/app/handlers/payment_{k}.py",
            "function": f"handle_{k}",
            "lineno": 100 + k,
            "context_line": "    result = client.call(order)",
        }
        for k in range(8)
    ]
    event = {
        "event_id": event_id,
        "timestamp": time.time(),
        "platform": "python",
        "level": "error" if i % 3 else "fatal",
        "release": "2.14.1",
        "environment": "prod",
        "server_name": f"checkout-{i % 7}",
        "tags": {"run": run, "region": "eu-west-1", "service": f"api-{i % 20}"},
        "contexts": {"trace": {"trace_id": uuid.uuid4().hex, "span_id": uuid.uuid4().hex[:16]}},
        "exception": {
            "values": [
                {
                    "type": "GatewayTimeout",
                    "value": f"upstream payment gateway timed out after 3000 ms for order {i} (attempt 3)",
                    "stacktrace": {"frames": frames},
                }
            ]
        },
        "breadcrumbs": {"values": [{"timestamp": time.time(), "category": "http", "message": f"POST /pay {i}"}]},
    }
    payload = json.dumps(event).encode()
    item = json.dumps({"type": "event", "length": len(payload)}).encode()
    return gzip.compress(json.dumps({"event_id": event_id}).encode() + b"\n" + item + b"\n" + payload + b"\n")


async def run_sentry(args: argparse.Namespace) -> dict[str, object]:
    import aiohttp

    run_id = args.run or uuid.uuid4().hex[:8]
    headers = {
        "Content-Type": "application/x-sentry-envelope",
        "Content-Encoding": "gzip",
        "X-Sentry-Auth": f"Sentry sentry_key={args.sentry_key}, sentry_version=7, sentry_client=bench/1",
    }
    url = f"{args.sentry_url}/api/{args.sentry_project}/envelope/"
    latencies: list[float] = []
    failures: Counter[int] = Counter()  # by HTTP status, so that a failure says what it was
    first_failure = ""
    counter = 0
    stop_at = time.perf_counter() + args.duration
    connector = aiohttp.TCPConnector(limit=args.concurrency)
    async with aiohttp.ClientSession(connector=connector, headers=headers) as session:

        async def worker() -> None:
            nonlocal counter, first_failure
            while (args.calls and counter < args.calls) or (not args.calls and time.perf_counter() < stop_at):
                i = counter
                counter += 1
                body = make_envelope(i, run_id)
                started = time.perf_counter()
                async with session.post(url, data=body) as response:
                    reply = await response.read()
                    if response.status != 200:
                        failures[response.status] += 1
                        first_failure = first_failure or f"{response.status} {reply[:300].decode(errors='replace')}"
                        continue
                latencies.append(time.perf_counter() - started)

        began = time.perf_counter()
        await asyncio.gather(*(worker() for _ in range(args.concurrency)))
        elapsed = time.perf_counter() - began
    latencies.sort()
    return {
        "mode": "sentry",
        "calls": len(latencies),
        "failures": sum(failures.values()),
        "failures_by_status": {str(status): n for status, n in sorted(failures.items())},
        "first_failure": first_failure,
        "seconds": round(elapsed, 3),
        "calls_per_s": round(len(latencies) / elapsed, 1),
        "errors_per_s": round(len(latencies) / elapsed, 1),
        "p50_ms": round(percentile(latencies, 0.50) * 1000, 2),
        "p99_ms": round(percentile(latencies, 0.99) * 1000, 2),
        "payload_bytes": len(make_envelope(1, run_id)),
    }


def percentile(sorted_values: list[float], q: float) -> float:
    if not sorted_values:
        return 0.0
    return sorted_values[min(len(sorted_values) - 1, int(q * len(sorted_values)))]


async def run(args: argparse.Namespace) -> dict[str, object]:
    run_id = args.run or uuid.uuid4().hex[:8]
    # Each channel its own connection (a local subchannel pool): a server whose workers share the
    # port (serve --workers) balances connections, not calls.
    options = [("grpc.max_receive_message_length", 64 * 1024 * 1024), ("grpc.use_local_subchannel_pool", 1)]
    channels = [grpc.aio.insecure_channel(args.target, options=options) for _ in range(args.channels)]
    try:
        stubs = [service_pb2_grpc.ErrorReplayServiceStub(c) for c in channels]
        otlps = [trace_service_pb2_grpc.TraceServiceStub(c) for c in channels]
        otlp_template = make_otlp_export(0, args.batch, run_id)
        rejected = 0
        latencies: list[float] = []
        failures = 0
        counter = 0
        stop_at = time.perf_counter() + args.duration
        deadline_total = args.calls

        async def worker(n: int) -> None:
            nonlocal counter, failures, rejected
            stub, otlp = stubs[n % len(stubs)], otlps[n % len(otlps)]
            while True:
                if deadline_total and counter >= deadline_total:
                    return
                if not deadline_total and time.perf_counter() >= stop_at:
                    return
                i = counter
                counter += 1
                if args.mode == "otlp":
                    export = fresh_ids(otlp_template, i)
                    started = time.perf_counter()
                    try:
                        reply = await otlp.Export(export, timeout=30)
                    except grpc.aio.AioRpcError:
                        failures += 1
                        continue
                    latencies.append(time.perf_counter() - started)
                    rejected += reply.partial_success.rejected_spans
                    continue
                if args.mode == "batch":
                    request = rr.BatchCaptureErrorsRequest(
                        requests=[
                            rr.CaptureErrorRequest(error=make_report(i * args.batch + j, run_id))
                            for j in range(args.batch)
                        ]
                    )
                    call = stub.BatchCaptureErrors(request, timeout=30)
                else:
                    call = stub.CaptureError(rr.CaptureErrorRequest(error=make_report(i, run_id)), timeout=30)
                started = time.perf_counter()
                try:
                    await call
                except grpc.aio.AioRpcError:
                    failures += 1
                    continue
                latencies.append(time.perf_counter() - started)

        began = time.perf_counter()
        await asyncio.gather(*(worker(n) for n in range(args.concurrency)))
        elapsed = time.perf_counter() - began
    finally:
        for c in channels:
            await c.close()
    latencies.sort()
    per_call = args.batch if args.mode in ("batch", "otlp") else 1
    return {
        "mode": args.mode,
        "calls": len(latencies),
        "failures": failures,
        "seconds": round(elapsed, 3),
        "calls_per_s": round(len(latencies) / elapsed, 1),
        "errors_per_s": round(len(latencies) * per_call / elapsed, 1),
        "p50_ms": round(percentile(latencies, 0.50) * 1000, 2),
        "p99_ms": round(percentile(latencies, 0.99) * 1000, 2),
        "rejected": rejected,
        "payload_bytes": make_report(1, run_id).ByteSize(),
        "call_bytes": (
            make_otlp_export(0, args.batch, run_id).ByteSize()
            if args.mode == "otlp"
            else make_report(1, run_id).ByteSize() * per_call
        ),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--target", required=True)
    parser.add_argument("--mode", choices=["capture", "batch", "otlp", "sentry"], default="capture")
    parser.add_argument("--concurrency", type=int, default=64)
    parser.add_argument("--channels", type=int, default=1, help="connections the calls are spread over")
    parser.add_argument("--duration", type=float, default=10.0)
    parser.add_argument("--calls", type=int, default=0, help="stop after this many calls instead of a duration")
    parser.add_argument("--batch", type=int, default=100)
    parser.add_argument("--run", default="")
    parser.add_argument("--sentry-url", default="", help="the HTTP listener, for --mode sentry")
    parser.add_argument("--sentry-project", default="1")
    parser.add_argument("--sentry-key", default="")
    args = parser.parse_args()
    result = asyncio.run(run_sentry(args) if args.mode == "sentry" else run(args))
    print(json.dumps(result), flush=True)


if __name__ == "__main__":
    main()
