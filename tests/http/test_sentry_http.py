"""Sentry endpoints over real HTTP: idempotent retries, dropped item types, hostile envelopes,
the store endpoint, and breadcrumbs that survive background enrichment."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

from errorreplay.v1 import message_pb2 as m
from errorreplay.v1 import request_response_pb2 as rr
from errorreplay_server.collectors.settings import CollectorSettings
from errorreplay_server.http.sentry_keys import SentryKey
from tests.http.conftest import KEY, PROJECT, Http, http_server, http_settings
from tests.http.test_listener import EVENT_ID, envelope, problem, still_serving


def item(kind: str, payload: bytes) -> bytes:
    return json.dumps({"type": kind, "length": len(payload)}).encode() + b"\n" + payload + b"\n"


async def count(h: Http, text: str) -> int:
    found = await h.errors.SearchErrors(rr.SearchErrorsRequest(filter={"text": text}), timeout=10)
    return len(found.errors)


async def test_an_sdk_retry_is_stored_once(http: Http) -> None:
    body = envelope({"event_id": EVENT_ID, "message": "retried checkout"})
    for _ in range(3):
        async with http.session.post(http.envelope_url(), data=body) as r:
            assert r.status == 200 and await r.json() == {"id": EVENT_ID}
    assert await count(http, "retried") == 1
    samples = {"type": "event", "outcome": "duplicate"}
    assert http.running.metrics.get_sample_value("errorreplay_sentry_items_total", samples) == 2


async def test_event_ids_are_scoped_to_the_sentry_key(tmp_path: Path) -> None:
    """Like a request_id on the gRPC port, an event id only deduplicates the same key's retries:
    a second key of the same project sending that event id stores its own error."""
    second = "00112233445566778899aabbccddeeff"
    keys = (SentryKey(PROJECT, KEY), SentryKey(PROJECT, second))
    async with http_server(http_settings(tmp_path, sentry_keys=keys)) as h:
        body = envelope({"event_id": EVENT_ID, "message": "scoped checkout"})
        for key in (KEY, second, KEY, second):
            async with h.session.post(h.envelope_url(key=key), data=body) as r:
                assert r.status == 200
        assert await count(h, "scoped") == 2


async def test_the_store_endpoint(http: Http) -> None:
    event = {"event_id": EVENT_ID, "message": "stored the old way", "level": "fatal"}
    async with http.session.post(
        http.url(f"/api/{PROJECT}/store/?sentry_key=0123456789abcdef0123456789abcdef"), json=event
    ) as r:
        assert r.status == 200 and await r.json() == {"id": EVENT_ID}
    found = await http.errors.SearchErrors(rr.SearchErrorsRequest(filter={"text": "old"}), timeout=10)
    assert [e.report.severity for e in found.errors] == [m.SEVERITY_CRITICAL]
    async with http.session.post(
        http.url(f"/api/{PROJECT}/store/?sentry_key=0123456789abcdef0123456789abcdef"), data=b"{nope"
    ) as r:
        await problem(r, 400, "INVALID_ARGUMENT")


async def test_other_item_types_are_accepted_counted_and_dropped(http: Http) -> None:
    header = json.dumps({"event_id": EVENT_ID}).encode() + b"\n"
    kinds = ["transaction", "session", "sessions", "client_report", "attachment", "profile", "check_in", "brand_new"]
    body = header + b"".join(item(kind, b'{"x": 1}') for kind in kinds)
    async with http.session.post(http.envelope_url(), data=body) as r:
        assert r.status == 200 and await r.json() == {"id": EVENT_ID}
    page = await http.errors.SearchErrors(rr.SearchErrorsRequest(), timeout=10)
    assert list(page.errors) == []
    registry = http.running.metrics
    for kind in kinds[:-1]:
        assert registry.get_sample_value("errorreplay_sentry_items_total", {"type": kind, "outcome": "dropped"}) == 1
    assert registry.get_sample_value("errorreplay_sentry_items_total", {"type": "other", "outcome": "dropped"}) == 1


async def test_hostile_envelopes_get_400_naming_the_problem(http: Http) -> None:
    header = b'{"event_id":"%s"}\n' % EVENT_ID.encode()
    cases = {
        header + b'{"type":"event","length":9999}\n{"message":"short"}\n': "envelope.items[0].header.length",
        header + b'{"type":"event","length":3}\n{"message":"longer than 3"}\n': "envelope.items[0].header.length",
        header + item("event", b'{"message": "unterminated'): "envelope.items[0]",
        header + item("event", b"[1, 2]"): "envelope.items[0]",
        b"garbage\n": "envelope.header",
        header + item("event", b'{"event_id": "not-hex", "message": "x"}'): "event.event_id",
    }
    for body, field in cases.items():
        async with http.session.post(http.envelope_url(), data=body) as r:
            reply = await problem(r, 400, "INVALID_ARGUMENT")
            assert reply["violations"][0]["field"] == field, reply
    deep = b"[" * 100_000 + b"]" * 100_000
    async with http.session.post(http.envelope_url(), data=header + item("event", deep)) as r:
        await problem(r, 400, "INVALID_ARGUMENT")
    await still_serving(http)


async def test_a_report_the_capture_path_refuses_is_400_with_the_field(http: Http) -> None:
    event = {"event_id": EVENT_ID, "message": "m", "tags": {"k": "v"}, "timestamp": 4_000_000_000}
    async with http.session.post(http.envelope_url(), data=envelope(event)) as r:
        reply = await problem(r, 400, "INVALID_ARGUMENT")
        assert reply["violations"][0]["field"] == "error.occurred_at"


async def test_breadcrumbs_survive_background_enrichment(tmp_path: Path) -> None:
    settings = http_settings(tmp_path).model_copy(update={"enrichment_enabled": True})
    crumbs = [{"timestamp": 1_700_000_000 + i, "message": f"step {i}", "category": "app"} for i in range(3)]
    async with http_server(settings) as h:
        body = envelope({"event_id": EVENT_ID, "message": "enriched failure", "breadcrumbs": {"values": crumbs}})
        async with h.session.post(h.envelope_url(), data=body) as r:
            assert r.status == 200
        (found,) = (await h.errors.SearchErrors(rr.SearchErrorsRequest(filter={"text": "enriched"}), timeout=10)).errors
        for _ in range(200):  # until every collector has reported (the enrichment stored its context)
            snapshot = await h.errors.GetError(rr.GetErrorRequest(error_id=found.error_id), timeout=10)
            statuses = snapshot.error.context.statuses
            if statuses and all(s.state != m.COLLECTION_STATE_PENDING for s in statuses):
                break
            await asyncio.sleep(0.05)
        else:
            raise AssertionError("enrichment never finished")
        logs = [(line.collector, line.message) for line in snapshot.error.context.logs]
        assert logs == [("client", "step 0"), ("client", "step 1"), ("client", "step 2")]


async def test_breadcrumbs_survive_an_overloaded_enrichment_queue(tmp_path: Path) -> None:
    async def never_answer(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.read()  # holds the connection until the client gives up

    hanging = await asyncio.start_server(never_answer, "127.0.0.1", 0)
    url = f"http://127.0.0.1:{hanging.sockets[0].getsockname()[1]}"
    collectors = CollectorSettings(loki_url=url, timeout_seconds=0.2, enrichment_workers=1, enrichment_queue_size=1)
    settings = http_settings(tmp_path).model_copy(update={"enrichment_enabled": True, "collectors": collectors})
    try:
        async with http_server(settings) as h:
            for i in range(6):
                crumbs = [{"timestamp": 1_700_000_000, "message": f"crumb of {i}"}]
                body = envelope({"event_id": f"{i:032x}", "message": f"overload {i}", "breadcrumbs": crumbs})
                async with h.session.post(h.envelope_url(), data=body) as r:
                    assert r.status == 200
            overloaded = h.running.enrichment.queue.counters.overloaded if h.running.enrichment else 0
            assert overloaded >= 1
            page = await h.errors.SearchErrors(rr.SearchErrorsRequest(filter={"text": "overload"}), timeout=10)
            assert len(page.errors) == 6
            for error in page.errors:
                for _ in range(400):
                    got = (await h.errors.GetError(rr.GetErrorRequest(error_id=error.error_id), timeout=10)).error
                    if all(s.state != m.COLLECTION_STATE_PENDING for s in got.context.statuses):
                        break
                    await asyncio.sleep(0.05)
                else:
                    raise AssertionError("enrichment never finished")
                number = got.report.message.split()[-1]
                assert [(x.collector, x.message) for x in got.context.logs] == [("client", f"crumb of {number}")]
    finally:
        hanging.close()
