"""The HTTP plumbing every backend collector shares: one client per backend, one error mapping."""

from __future__ import annotations

import asyncio
from collections.abc import Mapping
from typing import Any

import httpx

from errorreplay_server.collectors.base import CollectorFailure

_BODY_SNIPPET = 200
MAX_CONNECTIONS = 32


def timeout_detail(seconds: float) -> str:
    """The FAILED detail of a collector that ran out of time, worded the same everywhere."""
    return f"timeout after {float(seconds)}s"


class BackendClient(httpx.AsyncClient):
    """An httpx client that lets at most `max_in_flight` requests out at once; the rest wait here.

    httpcore's pool re-examines every queued request against every connection (a poll per idle
    connection) on each request and response, so 16 enrichment workers × 6 metric queries queued
    on 32 connections cost milliseconds of CPU per request. Waiting on a semaphore costs nothing."""

    def __init__(self, *, max_in_flight: int, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self._in_flight = asyncio.Semaphore(max_in_flight)

    async def request(self, *args: Any, **kwargs: Any) -> httpx.Response:
        async with self._in_flight:
            return await super().request(*args, **kwargs)


def make_client(
    base_url: str,
    *,
    timeout_seconds: float,
    transport: httpx.AsyncBaseTransport | None = None,
    headers: Mapping[str, str] | None = None,
    auth: httpx.Auth | tuple[str, str] | None = None,
) -> httpx.AsyncClient:
    """One pooled client per backend, shared by every enrichment job.

    The enrichment queue bounds each collector's total time; the client's own timeout bounds
    each phase, so a dead backend also frees its socket."""
    return BackendClient(
        max_in_flight=MAX_CONNECTIONS,
        base_url=base_url,
        timeout=httpx.Timeout(timeout_seconds),
        transport=transport,
        headers=dict(headers or {}),
        auth=auth,
        # Enough for the enrichment workers' concurrent queries; more would only queue remotely
        # (Prometheus runs 20 queries at once by default). Every connection stays open: with fewer
        # kept alive, each burst of queries closed and reopened connections.
        limits=httpx.Limits(max_connections=MAX_CONNECTIONS, max_keepalive_connections=MAX_CONNECTIONS),
    )


async def request_json(
    client: httpx.AsyncClient,
    method: str,
    url: str,
    *,
    none_on_404: bool = False,
    **kwargs: Any,
) -> Any:
    """Send one request and decode its JSON body; every failure becomes CollectorFailure."""
    try:
        response = await client.request(method, url, **kwargs)
    except httpx.TimeoutException:
        timeout = client.timeout.read or client.timeout.connect or 0.0
        raise CollectorFailure(timeout_detail(timeout)) from None
    except httpx.HTTPError as exc:
        raise CollectorFailure(f"{type(exc).__name__}: {exc}"[:_BODY_SNIPPET]) from None
    if response.status_code == 404 and none_on_404:
        return None
    if response.status_code >= 400:
        snippet = " ".join(response.text[:_BODY_SNIPPET].split())
        raise CollectorFailure(f"HTTP {response.status_code}: {snippet}".rstrip(": "))
    try:
        return response.json()
    except ValueError:
        raise CollectorFailure("malformed JSON in response") from None


def shape_error(exc: Exception) -> CollectorFailure:
    """A response that parsed as JSON but not in the vendor's documented shape."""
    return CollectorFailure(f"unexpected response shape: {type(exc).__name__}: {exc}"[:_BODY_SNIPPET])
