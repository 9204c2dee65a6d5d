"""Capture a failure from an async service with ErrorReplayClient, then read it back.

    python clients/python/examples/capture_example.py --address localhost:50051

Type-checked in CI with `mypy --strict` against the generated .pyi stubs.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import sys
import uuid

from errorreplay import ErrorReplayClient, RetryPolicy, report_from_exception
from errorreplay.v1 import message_pb2 as m


class PaymentDeclinedError(Exception):
    """The payment provider refused a charge."""


async def charge(order_id: str, amount_cents: int) -> None:
    try:
        raise ConnectionResetError("payment gateway reset the connection")
    except ConnectionResetError as exc:
        # Chained: report_from_exception keeps both tracebacks in stack_trace.
        raise PaymentDeclinedError(f"charge of {amount_cents} cents for order {order_id} failed") from exc


async def checkout(client: ErrorReplayClient, order_id: str, correlation_id: str) -> str | None:
    """Charge an order; on failure report it and return the stored error id."""
    try:
        await charge(order_id, 4999)
    except PaymentDeclinedError as exc:
        report = report_from_exception(
            exc,
            severity=m.SEVERITY_HIGH,
            resource_id="api-payments",
            resource_type="service",
            service="payments",
            environment="staging",
            correlation_id=correlation_id,
            tags={"order_id": order_id},
        )
        # A request_id is generated per capture, so the client's retries on UNAVAILABLE never duplicate it.
        captured = await client.capture(report)
        return captured.error_id
    return None


async def main(address: str, token: str | None) -> int:
    correlation_id = f"checkout-{uuid.uuid4().hex[:12]}"
    retry = RetryPolicy(max_attempts=5, initial_backoff=0.2)
    async with ErrorReplayClient(address, token=token, timeout=5.0, retry=retry) as client:
        error_id = await checkout(client, "ord-1042", correlation_id)
        if error_id is None:
            print("checkout succeeded; nothing to report")
            return 0
        snapshot = await client.get(error_id)
        print(f"captured {error_id} in group {snapshot.group_id}: {snapshot.report.error_type}")
        same_request = [s.error_id async for s in client.search_all(m.ErrorFilter(correlation_id=correlation_id))]
        print(f"{len(same_request)} error(s) share correlation id {correlation_id}")
    return 0


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--address", default=os.environ.get("ERRORREPLAY_ADDRESS", "localhost:50051"))
    parser.add_argument("--token", default=os.environ.get("ERRORREPLAY_TOKEN"))
    args = parser.parse_args()
    sys.exit(asyncio.run(main(args.address, args.token)))
