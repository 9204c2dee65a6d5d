"""The HTTP listener itself: health, limits, auth, rate limits, JSON errors, TLS, start and stop."""

from __future__ import annotations

import gzip
import json
import ssl
import zlib
from pathlib import Path

import aiohttp
import brotli
import pytest

from errorreplay.v1 import request_response_pb2 as rr
from errorreplay_server.grants import Role, TokenGrant
from errorreplay_server.http.sentry_keys import SentryKey
from errorreplay_server.http.settings import HttpSettings
from errorreplay_server.security_settings import SecuritySettings
from errorreplay_server.settings import Settings
from tests.grpc.test_tls import Pki, tls_settings
from tests.grpc.test_tls import pki as pki
from tests.http.conftest import KEY, OTHER_KEY, OTHER_PROJECT, PROJECT, Http, http_server, http_settings

EVENT_ID = "9ec79c33ec9942ab8353589fcb2e04dc"


def envelope(event: dict[str, object] | None = None) -> bytes:
    event = event or {"event_id": EVENT_ID, "message": "checkout failed", "level": "error"}
    payload = json.dumps(event).encode()
    return b"\n".join(
        [
            json.dumps({"event_id": event.get("event_id", EVENT_ID)}).encode(),
            json.dumps({"type": "event", "length": len(payload)}).encode(),
            payload,
            b"",
        ]
    )


async def problem(response: aiohttp.ClientResponse, status: int, error: str) -> dict[str, object]:
    body = await response.json(content_type=None)
    assert response.status == status, body
    assert response.headers["Content-Type"].startswith("application/json")
    assert body["error"] == error, body
    assert isinstance(body["detail"], str) and body["detail"]
    return body


async def still_serving(h: Http) -> None:
    async with h.session.get(h.url("/healthz")) as r:
        assert r.status == 200
        assert await r.json() == {"status": "serving"}
    event_id = "ab" * 16
    async with h.session.post(h.envelope_url(), data=envelope({"event_id": event_id, "message": "alive"})) as r:
        assert r.status == 200, await r.text()
        assert await r.json() == {"id": event_id}


async def test_healthz(http: Http) -> None:
    await still_serving(http)


async def test_unknown_route_and_method_are_json_4xx(http: Http) -> None:
    async with http.session.get(http.url("/nope")) as r:
        await problem(r, 404, "NOT_FOUND")
    async with http.session.get(http.url(f"/api/{PROJECT}/envelope/")) as r:
        await problem(r, 405, "METHOD_NOT_ALLOWED")
    await still_serving(http)


async def test_body_over_the_limit_is_413_by_content_length_and_while_streaming(tmp_path: Path) -> None:
    async with http_server(http_settings(tmp_path, max_body_bytes=1024, max_decompressed_bytes=4096)) as h:
        async with h.session.post(h.envelope_url(), data=b"x" * 2048) as r:
            body = await problem(r, 413, "PAYLOAD_TOO_LARGE")
            assert "1024 bytes" in str(body["detail"])

        async def chunks():  # no Content-Length: the cap applies while streaming
            for _ in range(8):
                yield b"y" * 512

        async with h.session.post(h.envelope_url(), data=chunks()) as r:
            await problem(r, 413, "PAYLOAD_TOO_LARGE")
        await still_serving(h)


@pytest.mark.parametrize(
    ("encoding", "compress"),
    [
        ("gzip", gzip.compress),
        ("deflate", zlib.compress),
        ("br", brotli.compress),
    ],
)
async def test_compression_bombs_are_413_without_inflating_them(tmp_path: Path, encoding: str, compress) -> None:
    bomb = compress(b"\0" * (64 * 1024 * 1024))  # 64 MiB of zeros, a few KiB on the wire
    assert len(bomb) < 256 * 1024
    async with http_server(http_settings(tmp_path, max_decompressed_bytes=1024 * 1024)) as h:
        headers = {"Content-Encoding": encoding}
        async with h.session.post(h.envelope_url(), data=bomb, headers=headers) as r:
            body = await problem(r, 413, "PAYLOAD_TOO_LARGE")
            assert "once decompressed" in str(body["detail"])
        await still_serving(h)


@pytest.mark.parametrize("encoding", ["gzip", "deflate", "br"])
async def test_each_supported_encoding_is_accepted(http: Http, encoding: str) -> None:
    raw = envelope({"event_id": EVENT_ID, "message": f"sent as {encoding}"})
    compress = {"gzip": gzip.compress, "deflate": zlib.compress, "br": brotli.compress}[encoding]
    async with http.session.post(http.envelope_url(), data=compress(raw), headers={"Content-Encoding": encoding}) as r:
        assert r.status == 200, await r.text()
    found = await http.errors.SearchErrors(rr.SearchErrorsRequest(filter={"text": encoding}), timeout=10)
    assert [e.report.message for e in found.errors] == [f"sent as {encoding}"]


async def test_raw_deflate_is_accepted_too(http: Http) -> None:
    squeezer = zlib.compressobj(wbits=-zlib.MAX_WBITS)
    raw = squeezer.compress(envelope({"event_id": EVENT_ID, "message": "raw deflate"})) + squeezer.flush()
    async with http.session.post(http.envelope_url(), data=raw, headers={"Content-Encoding": "deflate"}) as r:
        assert r.status == 200, await r.text()


async def test_unknown_encoding_is_415_and_corrupt_bodies_are_400(http: Http) -> None:
    async with http.session.post(http.envelope_url(), data=b"abc", headers={"Content-Encoding": "zstd-9000"}) as r:
        await problem(r, 415, "UNSUPPORTED_MEDIA_TYPE")
    async with http.session.post(http.envelope_url(), data=b"not gzip", headers={"Content-Encoding": "gzip"}) as r:
        await problem(r, 400, "INVALID_ARGUMENT")
    cut = gzip.compress(envelope())[:-12]
    async with http.session.post(http.envelope_url(), data=cut, headers={"Content-Encoding": "gzip"}) as r:
        await problem(r, 400, "INVALID_ARGUMENT")
    async with http.session.post(http.envelope_url(), data=b"") as r:
        await problem(r, 400, "INVALID_ARGUMENT")
    await still_serving(http)


async def test_sentry_keys(http: Http) -> None:
    async with http.session.post(http.envelope_url(key=None), data=envelope()) as r:
        await problem(r, 401, "UNAUTHENTICATED")
    async with http.session.post(http.envelope_url(key="ffff" * 8), data=envelope()) as r:
        body = await problem(r, 401, "UNAUTHENTICATED")
        assert "ffff" not in json.dumps(body)
    async with http.session.post(http.envelope_url(project="999"), data=envelope()) as r:
        await problem(r, 404, "NOT_FOUND")
    async with http.session.post(http.envelope_url(project="not-a-number"), data=envelope()) as r:
        await problem(r, 404, "NOT_FOUND")
    async with http.session.post(http.envelope_url(project=OTHER_PROJECT, key=KEY), data=envelope()) as r:
        await problem(r, 403, "PERMISSION_DENIED")
    # The X-Sentry-Auth header, as the Python SDK sends it.
    auth = {"X-Sentry-Auth": f"Sentry sentry_key={OTHER_KEY}, sentry_version=7, sentry_client=test/1"}
    async with http.session.post(http.url(f"/api/{OTHER_PROJECT}/envelope/"), data=envelope(), headers=auth) as r:
        assert r.status == 200, await r.text()
    await still_serving(http)


async def test_no_sentry_key_configured_with_grpc_auth_on_refuses_sentry(tmp_path: Path) -> None:
    security = SecuritySettings(tokens=(TokenGrant(Role.WRITER, "writer-token"),))
    async with (
        http_server(http_settings(tmp_path, security, sentry_keys=())) as h,
        h.session.post(h.envelope_url(), data=envelope()) as r,
    ):
        await problem(r, 401, "UNAUTHENTICATED")


async def test_no_sentry_key_and_no_auth_is_an_open_development_server(tmp_path: Path) -> None:
    async with (
        http_server(http_settings(tmp_path, sentry_keys=())) as h,
        h.session.post(h.envelope_url(key="anykey"), data=envelope()) as r,
    ):
        assert r.status == 200, await r.text()


async def test_rate_limited_sentry_gets_429_with_retry_after_and_sentry_header(tmp_path: Path) -> None:
    security = SecuritySettings(rate_limit_per_second=0.01, rate_limit_burst=1)
    async with http_server(http_settings(tmp_path, security)) as h:
        async with h.session.post(h.envelope_url(), data=envelope()) as r:
            assert r.status == 200
        async with h.session.post(h.envelope_url(), data=envelope()) as r:
            await problem(r, 429, "RESOURCE_EXHAUSTED")
            assert int(r.headers["Retry-After"]) >= 1
            seconds, categories, scope = r.headers["X-Sentry-Rate-Limits"].split(":")
            assert int(seconds) >= 1 and categories == "" and scope == "key"
        # Another key is another caller.
        auth = {"X-Sentry-Auth": f"Sentry sentry_key={OTHER_KEY}"}
        async with h.session.post(h.url(f"/api/{OTHER_PROJECT}/envelope/"), data=envelope(), headers=auth) as r:
            assert r.status == 200


async def test_the_http_listener_counts_requests_in_the_servers_registry(http: Http) -> None:
    await still_serving(http)
    async with http.session.get(http.url("/nope")) as r:
        assert r.status == 404
    registry = http.running.metrics
    route = "/api/{project_id}/envelope/"
    assert registry.get_sample_value("errorreplay_http_requests_total", {"route": route, "status": "200"}) == 1
    assert registry.get_sample_value("errorreplay_http_requests_total", {"route": "unmatched", "status": "404"}) == 1
    assert registry.get_sample_value("errorreplay_sentry_items_total", {"type": "event", "outcome": "captured"}) == 1


async def test_tls_from_the_grpc_settings(tmp_path: Path, pki: Pki) -> None:
    client_tls = ssl.create_default_context(cafile=str(pki.ca.cert))
    async with http_server(http_settings(tmp_path, tls_settings(pki))) as h:
        assert h.running.http is not None and h.running.http.tls
        h.scheme = "https"
        async with h.session.get(h.url("/healthz"), ssl=client_tls) as r:
            assert r.status == 200
        with pytest.raises(aiohttp.ClientError):
            async with h.session.get(f"http://127.0.0.1:{h.port}/healthz") as r:
                await r.read()


async def test_a_taken_address_fails_start_up_and_leaves_nothing_open(tmp_path: Path) -> None:
    async with http_server(http_settings(tmp_path)) as h:
        taken = f"127.0.0.1:{h.port}"
        from errorreplay_server.server import start_server

        with pytest.raises(RuntimeError, match="cannot listen for HTTP"):
            await start_server(http_settings(tmp_path / "second", address=taken))
        await still_serving(h)


def test_http_settings_from_env(tmp_path: Path) -> None:
    default = Settings.from_env({}).http
    assert default.address == "localhost:8080" and default.enabled
    assert not Settings.from_env({"ERRORREPLAY_HTTP_ADDRESS": "off"}).http.enabled
    assert not HttpSettings().enabled  # in code: off unless asked for
    keys_file = tmp_path / "keys"
    keys_file.write_text("# project key\n42 abc123\n\n7 def456\n")
    s = Settings.from_env(
        {
            "ERRORREPLAY_SENTRY_KEYS_FILE": str(keys_file),
            "ERRORREPLAY_SENTRY_KEYS": "9:aaa111",
            "ERRORREPLAY_ALERTMANAGER_RESOURCE_LABELS": "app, instance",
            "ERRORREPLAY_HTTP_MAX_BODY_BYTES": "100",
        }
    ).http
    assert s.all_sentry_keys == (SentryKey("42", "abc123"), SentryKey("7", "def456"), SentryKey("9", "aaa111"))
    assert s.alertmanager_resource_labels == ("app", "instance")
    assert s.max_body_bytes == 100
    for bad in (
        {"ERRORREPLAY_SENTRY_KEYS": "x:abc"},
        {"ERRORREPLAY_SENTRY_KEYS": "42:a-b"},
        {"ERRORREPLAY_HTTP_ADDRESS": "nohost"},
    ):
        with pytest.raises(ValueError) as info:
            Settings.from_env(bad)
        assert "a-b" not in str(info.value)


async def test_healthz_answers_503_once_the_server_is_draining(http: Http) -> None:
    assert http.running.http is not None
    http.running.http.draining()  # what RunningServer.stop does first
    async with http.session.get(http.url("/healthz")) as r:
        assert r.status == 503
        assert await r.json() == {"status": "shutting_down"}
