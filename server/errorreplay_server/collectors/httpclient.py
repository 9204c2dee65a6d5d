"""The HTTP plumbing every backend collector shares: one client per backend, one error mapping."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import httpx

from errorreplay_server.collectors.base import CollectorFailure

_BODY_SNIPPET = 200


def timeout_detail(seconds: float) -> str:
    """The FAILED detail of a collector that ran out of time, worded the same everywhere."""
    return f"timeout after {float(seconds)}s"


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
    return httpx.AsyncClient(
        base_url=base_url,
        timeout=httpx.Timeout(timeout_seconds),
        transport=transport,
        headers=dict(headers or {}),
        auth=auth,
        # Enough for the enrichment workers' concurrent queries; more would only queue remotely.
        limits=httpx.Limits(max_connections=32, max_keepalive_connections=16),
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
