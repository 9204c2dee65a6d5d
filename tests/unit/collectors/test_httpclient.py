"""The shared backend client: a bounded number of requests in flight, the rest wait their turn."""

from __future__ import annotations

import asyncio

import httpx

from errorreplay_server.collectors.httpclient import MAX_CONNECTIONS, make_client, request_json


async def test_at_most_max_connections_requests_are_in_flight() -> None:
    in_flight = 0
    most = 0

    async def handler(request: httpx.Request) -> httpx.Response:
        nonlocal in_flight, most
        in_flight += 1
        most = max(most, in_flight)
        await asyncio.sleep(0.01)
        in_flight -= 1
        return httpx.Response(200, json={"n": request.url.params["n"]})

    client = make_client("http://backend", timeout_seconds=5, transport=httpx.MockTransport(handler))
    async with client:
        answers = await asyncio.gather(
            *(request_json(client, "GET", "/q", params={"n": str(i)}) for i in range(3 * MAX_CONNECTIONS))
        )
    assert answers == [{"n": str(i)} for i in range(3 * MAX_CONNECTIONS)]
    assert most == MAX_CONNECTIONS
