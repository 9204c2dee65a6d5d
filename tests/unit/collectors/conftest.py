"""Vendor backends as httpx.MockTransport handlers that answer in each vendor's documented
format and record every request, so tests can assert the exact query sent."""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import httpx

from errorreplay_server.domain.model import MICROS_PER_SECOND, ErrorSnapshot
from tests.factories import new_error

# 2023-11-14T22:13:20Z: a round moment, so expected query strings stay readable.
AT = 1_700_000_000 * MICROS_PER_SECOND
# Every character that could break out of a string literal or a URL path.
HOSTILE = 'api"}|\'\\\n{x="1"} or vector(1)'

Reply = Callable[[httpx.Request], httpx.Response]


def snapshot(**fields: Any) -> ErrorSnapshot:
    fields.setdefault("occurred_at", AT)
    return new_error(**fields).snapshot


@dataclass
class Backend:
    """A fake backend: `reply` answers each request; `requests` keeps them in order."""

    reply: Reply
    requests: list[httpx.Request] = field(default_factory=list)

    def transport(self) -> httpx.MockTransport:
        def handle(request: httpx.Request) -> httpx.Response:
            self.requests.append(request)
            return self.reply(request)

        return httpx.MockTransport(handle)

    def json_bodies(self) -> list[Any]:
        return [json.loads(r.content) for r in self.requests]


def json_reply(body: Any, status: int = 200) -> Reply:
    return lambda request: httpx.Response(status, json=body)


def text_reply(text: str, status: int = 200) -> Reply:
    return lambda request: httpx.Response(status, text=text, headers={"Content-Type": "application/json"})


def timeout_reply(request: httpx.Request) -> httpx.Response:
    raise httpx.ReadTimeout("timed out", request=request)
