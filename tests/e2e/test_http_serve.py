"""`errorreplay serve` opens the HTTP listener from its environment, and closes it on SIGTERM."""

from __future__ import annotations

import json
import urllib.error
import urllib.request
from pathlib import Path

import grpc
import pytest

from errorreplay.v1 import request_response_pb2 as rr
from errorreplay.v1 import service_pb2_grpc
from tests.e2e.server_process import ServerProcess, free_port

KEY = "servekey0123456789"
EVENT_ID = "5d3e0f4f0ae34e4c9a3b3c2fbbd0e6a1"


def post(url: str, body: bytes) -> tuple[int, dict[str, object]]:
    request = urllib.request.Request(url, data=body, method="POST")
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as exc:
        return exc.code, json.loads(exc.read())


def test_serve_takes_the_http_address_and_sentry_keys_from_the_environment(tmp_path: Path) -> None:
    http = f"127.0.0.1:{free_port()}"
    keys = tmp_path / "sentry-keys"
    keys.write_text(f"# project key\n3 {KEY}\n")
    server = ServerProcess(
        tmp_path / "data",
        extra_env={"ERRORREPLAY_HTTP_ADDRESS": http, "ERRORREPLAY_SENTRY_KEYS_FILE": str(keys)},
    ).start()
    try:
        # Serving comes before the start-up lines are all logged (with workers, in another process).
        server.wait_for_output(f"HTTP (Sentry, Alertmanager, /healthz) on {http}")
        server.wait_for_output(f"web console at http://{http}/")
        with urllib.request.urlopen(f"http://{http}/", timeout=10) as response:
            page = response.read().decode()
            assert "Error groups" in page and "unsafe-inline" not in response.headers["Content-Security-Policy"]
        with urllib.request.urlopen(f"http://{http}/healthz", timeout=10) as response:
            assert json.loads(response.read()) == {"status": "serving"}
        event = json.dumps({"event_id": EVENT_ID, "message": "from serve"}).encode()
        envelope = b"{}\n" + json.dumps({"type": "event", "length": len(event)}).encode() + b"\n" + event
        assert post(f"http://{http}/api/3/envelope/?sentry_key={KEY}", envelope) == (200, {"id": EVENT_ID})
        status, body = post(f"http://{http}/api/3/envelope/?sentry_key=wrong", envelope)
        assert status == 401 and body["error"] == "UNAUTHENTICATED"
        with grpc.insecure_channel(server.address) as channel:
            found = service_pb2_grpc.ErrorReplayServiceStub(channel).SearchErrors(
                rr.SearchErrorsRequest(filter={"text": "serve"}), timeout=10
            )
        assert [e.report.message for e in found.errors] == ["from serve"]
        assert server.terminate() == 0
        with pytest.raises(urllib.error.URLError):
            urllib.request.urlopen(f"http://{http}/healthz", timeout=5)
    finally:
        server.stop()
