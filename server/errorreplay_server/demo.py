"""`errorreplay demo`: seed a realistic cascade into a running server through its API, then replay it.

The story: a deployment of db-orders v2.1.0 shrinks its connection pool. Twenty minutes later the pool
runs dry under load (db-orders), the orders API starts answering 503 (api-orders), and the web front
end times out waiting for it (web-frontend), a minute apart, all with one correlation id. Replaying
the web error should lead back through the cascade to the database and the deployment.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import TextIO

import grpc

from errorreplay.client import timestamp
from errorreplay.sync_client import SyncErrorReplayClient
from errorreplay.v1 import message_pb2 as m
from errorreplay_server import cli_render

ERROR_SPACING = timedelta(minutes=1)
"""Time between one failure and the next one up the dependency chain."""
DEPLOYMENT_LEAD = timedelta(minutes=20)
"""How long before the first failure the faulty deployment went out."""
LAST_ERROR_AGE = timedelta(minutes=1)
"""How long ago the last (replayed) error happened."""

DEPLOYMENT_ID = "chg_demo_db_orders_v2_1_0"
"""Fixed, so that running the demo again moves the one deployment instead of adding another."""

RESOURCES = (
    m.Resource(id="lb-edge", type="load_balancer", name="Edge load balancer", labels={"tier": "edge"}),
    m.Resource(id="web-frontend", type="service", name="Web front end", labels={"team": "storefront"}),
    m.Resource(id="api-orders", type="service", name="Orders API", labels={"team": "orders"}),
    m.Resource(id="db-orders", type="database", name="Orders database", labels={"engine": "postgres"}),
)
DEPENDENCIES = (
    m.Dependency(dependent_id="lb-edge", dependency_id="web-frontend"),
    m.Dependency(dependent_id="web-frontend", dependency_id="api-orders"),
    m.Dependency(dependent_id="api-orders", dependency_id="db-orders"),
)


@dataclass(frozen=True, slots=True)
class DemoError:
    resource_id: str
    resource_type: str
    service: str
    severity: m.Severity.ValueType
    error_type: str
    message: str
    stack_trace: str


# Oldest first: the database fails, then the API that depends on it, then the web front end.
CASCADE = (
    DemoError(
        resource_id="db-orders",
        resource_type="database",
        service="orders-db",
        severity=m.SEVERITY_CRITICAL,
        error_type="psycopg_pool.PoolTimeout",
        message="connection pool exhausted: 20 of 20 connections in use, 48 requests waiting after 5.0s",
        stack_trace=(
            "Traceback (most recent call last):\n"
            '  File "/app/orders/db.py", line 88, in connection\n'
            "    conn = await self._pool.getconn(timeout=5.0)\n"
            '  File "/usr/lib/python3.11/site-packages/psycopg_pool/pool_async.py", line 203, in getconn\n'
            "    raise PoolTimeout(f'couldn't get a connection after {timeout:.1f} sec')\n"
            "psycopg_pool.PoolTimeout: couldn't get a connection after 5.0 sec\n"
        ),
    ),
    DemoError(
        resource_id="api-orders",
        resource_type="service",
        service="orders-api",
        severity=m.SEVERITY_HIGH,
        error_type="orders.errors.UpstreamUnavailable",
        message="POST /v1/orders failed: upstream db-orders answered 503 Service Unavailable",
        stack_trace=(
            "Traceback (most recent call last):\n"
            '  File "/app/orders/api/handlers.py", line 142, in create_order\n'
            "    order = await self.repository.insert(order_request)\n"
            '  File "/app/orders/repository.py", line 57, in insert\n'
            "    async with self.db.connection() as conn:\n"
            "orders.errors.UpstreamUnavailable: db-orders: 503 Service Unavailable\n"
        ),
    ),
    DemoError(
        resource_id="web-frontend",
        resource_type="service",
        service="storefront-web",
        severity=m.SEVERITY_HIGH,
        error_type="GatewayTimeout",
        message="504 Gateway Timeout: api-orders did not answer POST /checkout within 30s",
        stack_trace=(
            "GatewayTimeout: upstream api-orders timed out after 30000 ms\n"
            "    at proxyRequest (/srv/web/src/proxy.ts:77:13)\n"
            "    at checkout (/srv/web/src/routes/checkout.ts:41:22)\n"
            "    at Layer.handle (/srv/web/node_modules/express/lib/router/layer.js:95:5)\n"
        ),
    ),
)


@dataclass(frozen=True, slots=True)
class SeededCascade:
    correlation_id: str
    change: m.Change
    error_ids: tuple[str, ...]


def seed(client: SyncErrorReplayClient, now: datetime | None = None) -> SeededCascade:
    """Resources and their dependencies, the deployment, then the correlated errors, oldest first."""
    now = now or datetime.now(UTC)
    run = uuid.uuid4().hex[:12]
    correlation_id = f"demo-checkout-{run}"
    trace_id = uuid.uuid4().hex
    first_error_at = now - LAST_ERROR_AGE - ERROR_SPACING * (len(CASCADE) - 1)

    client.upsert_resources(RESOURCES, DEPENDENCIES)
    change = client.record_change(
        m.Change(
            change_id=DEPLOYMENT_ID,
            kind=m.CHANGE_KIND_DEPLOYMENT,
            resource_id="db-orders",
            version="v2.1.0",
            description="Lower the connection pool max_size from 100 to 20 and add a 5 s acquire timeout",
            author="deploy-pipeline",
            occurred_at=timestamp(first_error_at - DEPLOYMENT_LEAD),
            metadata={"demo": run, "pipeline": "orders-db#1487"},
        )
    )
    error_ids = []
    for i, error in enumerate(CASCADE):
        report = m.ErrorReport(
            message=error.message,
            severity=error.severity,
            source=m.SOURCE_APPLICATION,
            resource_id=error.resource_id,
            resource_type=error.resource_type,
            service=error.service,
            environment="production",
            release="2024.06.3" if error.resource_id != "db-orders" else "v2.1.0",
            error_type=error.error_type,
            stack_trace=error.stack_trace,
            correlation_id=correlation_id,
            trace_id=trace_id,
            span_id=uuid.uuid4().hex[:16],
            occurred_at=timestamp(first_error_at + ERROR_SPACING * i),
            tags={"demo": run, "region": "eu-west-1"},
        )
        error_ids.append(_capture_with_context(client, report))
    return SeededCascade(correlation_id, change, tuple(error_ids))


def _capture_with_context(client: SyncErrorReplayClient, report: m.ErrorReport) -> str:
    """Capture and wait for the frozen context, so that the replay sees the topology and the change.
    If the wait outlasts the deadline the error is stored anyway: the same request_id fetches its id."""
    request_id = uuid.uuid4().hex
    try:
        return client.capture(report, request_id=request_id, wait_for_context=True).error_id
    except grpc.RpcError as exc:
        if not isinstance(exc, grpc.Call) or exc.code() != grpc.StatusCode.DEADLINE_EXCEEDED:
            raise
    return client.capture(report, request_id=request_id).error_id


def run_demo(
    client: SyncErrorReplayClient,
    out: TextIO,
    *,
    color: bool = False,
    console: Callable[[str], str] = lambda error_id: "",
) -> int:
    seeded = seed(client)
    paint_bold = (lambda s: f"\x1b[1m{s}\x1b[0m") if color else (lambda s: s)
    chain = " -> ".join(r.id for r in RESOURCES)
    print(paint_bold(f"Seeded a cascade (correlation id {seeded.correlation_id})"), file=out)
    print(f"  resources  {chain}  (each DEPENDS_ON the next)", file=out)
    change = seeded.change
    print(f"  change     DEPLOYMENT {change.resource_id} {change.version}: {change.description}", file=out)
    for error, error_id in zip(CASCADE, seeded.error_ids, strict=True):
        severity = cli_render.severity_name(error.severity)
        print(f"  error      {error_id}  {error.resource_id:<13} {severity:<8} {error.message}", file=out)
    replayed = seeded.error_ids[-1]
    print(file=out)
    try:
        replay = client.replay(replayed)
    except grpc.RpcError as exc:
        if not isinstance(exc, grpc.Call) or exc.code() != grpc.StatusCode.UNIMPLEMENTED:
            raise
        print("ReplayError is not available on this server yet (UNIMPLEMENTED). The errors above are stored:", file=out)
        print(f"  errorreplay get {replayed}", file=out)
        print(f"  errorreplay search --correlation-id {seeded.correlation_id}", file=out)
        return 0
    print(paint_bold(f"$ errorreplay replay {replayed}"), file=out)
    print(file=out)
    out.write(cli_render.render_replay(replay, color=color))
    out.write(console(replayed))
    return 0
