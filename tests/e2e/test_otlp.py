"""A real OpenTelemetry SDK app, pointed at `errorreplay serve` with only the standard OTEL_*
variables, shows its exceptions in SearchErrors, ReplayError and the `errorreplay` CLI."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import grpc
import pytest

from errorreplay.v1 import message_pb2 as m
from errorreplay.v1 import request_response_pb2 as rr
from errorreplay.v1 import service_pb2_grpc
from tests.e2e.server_process import VENV_BIN, ServerProcess

APP = Path(__file__).with_name("otel_app.py")
ERRORREPLAY = str(VENV_BIN / "errorreplay")


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory, server_workers: int) -> Iterator[ServerProcess]:
    """One server per process model (tests/e2e/conftest.py)."""
    proc = ServerProcess(tmp_path_factory.mktemp("otlp"), workers=server_workers).start()
    yield proc
    proc.stop()


@pytest.fixture(scope="module")
def app_trace_ids(server: ServerProcess) -> dict[str, str]:
    env = {
        "PATH": os.environ.get("PATH", ""),
        "OTEL_EXPORTER_OTLP_ENDPOINT": f"http://{server.address}",
        "OTEL_EXPORTER_OTLP_INSECURE": "true",
        "OTEL_SERVICE_NAME": "shop-checkout",
        "OTEL_RESOURCE_ATTRIBUTES": "service.version=4.2.0,deployment.environment.name=production,host.name=node-7",
    }
    done = subprocess.run([sys.executable, str(APP)], env=env, capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    # The SDK logs a failed export on stderr and carries on; nothing may have failed.
    assert "Failed to export" not in done.stderr, done.stderr
    ids: dict[str, str] = json.loads(done.stdout)
    assert set(ids) == {"charge", "stock", "parse"}
    return ids


def find(server: ServerProcess, trace_id: str) -> list[m.ErrorSnapshot]:
    with grpc.insecure_channel(server.address) as channel:
        found = service_pb2_grpc.ErrorReplayServiceStub(channel).SearchErrors(
            rr.SearchErrorsRequest(filter=m.ErrorFilter(trace_id=trace_id)), timeout=10
        )
    return list(found.errors)


def cli(server: ServerProcess, *args: str) -> str:
    done = subprocess.run([ERRORREPLAY, "--address", server.address, *args], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    return done.stdout


def test_all_three_exceptions_are_found_by_trace_id_with_their_context(
    server: ServerProcess, app_trace_ids: dict[str, str]
) -> None:
    expected = {
        "charge": (
            "ConnectionRefusedError",
            "connection refused to payments-db:5432 while charging order 42",
            "charge",
        ),
        "stock": ("KeyError", "'sku-42'", "main"),
        "parse": ("ValueError", "invalid literal for int() with base 10: 'forty-two'", "main"),
    }
    for name, trace_id in app_trace_ids.items():
        (error,) = find(server, trace_id)
        r = error.report
        error_type, message, frame = expected[name]
        assert (r.error_type, r.message) == (error_type, message)
        assert r.stack_trace.startswith("Traceback (most recent call last):"), r.stack_trace
        assert "otel_app.py" in r.stack_trace and f"in {frame}" in r.stack_trace
        assert (r.service, r.resource_id, r.release, r.environment) == (
            "shop-checkout",
            "shop-checkout",
            "4.2.0",
            "production",
        )
        assert r.trace_id == trace_id and len(r.span_id) == 16
        assert r.tags["host.name"] == "node-7"
        assert r.severity == m.SEVERITY_HIGH
    (logged,) = find(server, app_trace_ids["parse"])
    assert logged.report.attributes["otel.signal"] == "log"
    assert logged.report.attributes["otel.log.body"] == "could not parse the quantity of order 42"
    assert logged.report.attributes["otel.scope.name"] == "shop.orders"
    (charged,) = find(server, app_trace_ids["charge"])
    assert charged.report.attributes["otel.scope.name"] == "shop.checkout"
    assert charged.report.attributes["otel.scope.version"] == "1.4.0"
    assert charged.report.attributes["otel.span.name"] == "POST /charge"


def test_replay_of_an_otlp_error_works(server: ServerProcess, app_trace_ids: dict[str, str]) -> None:
    (error,) = find(server, app_trace_ids["charge"])
    with grpc.insecure_channel(server.address) as channel:
        replay = service_pb2_grpc.ErrorReplayServiceStub(channel).ReplayError(
            rr.ReplayErrorRequest(error_id=error.error_id), timeout=30
        )
    assert replay.error.error_id == error.error_id
    assert any(e.reference_id == error.error_id for e in replay.timeline)
    assert replay.recommendations


def test_the_cli_shows_them(server: ServerProcess, app_trace_ids: dict[str, str]) -> None:
    for trace_id in app_trace_ids.values():
        found = json.loads(cli(server, "search", "--trace-id", trace_id, "--json"))
        assert len(found["errors"]) == 1
    line = cli(server, "search", "--trace-id", app_trace_ids["stock"])
    assert "'sku-42'" in line and "shop-checkout" in line
    error_id = json.loads(cli(server, "search", "--trace-id", app_trace_ids["charge"], "--json"))["errors"][0][
        "error_id"
    ]
    text = cli(server, "replay", error_id)
    assert text.startswith(f"Replay of {error_id}  HIGH  shop-checkout")
    assert "production" in text.splitlines()[0]
    assert "connection refused to payments-db:5432" in text


def test_with_auth_on_the_exporter_sends_a_writer_token_in_the_standard_headers_variable(
    tmp_path_factory: pytest.TempPathFactory,
) -> None:
    writer, reader = "w-" + os.urandom(12).hex(), "r-" + os.urandom(12).hex()
    proc = ServerProcess(
        tmp_path_factory.mktemp("otlp-auth"), extra_env={"ERRORREPLAY_AUTH_TOKENS": f"writer:{writer},reader:{reader}"}
    ).start()
    try:
        base = {
            "PATH": os.environ.get("PATH", ""),
            "OTEL_EXPORTER_OTLP_ENDPOINT": f"http://{proc.address}",
            "OTEL_EXPORTER_OTLP_INSECURE": "true",
            "OTEL_SERVICE_NAME": "shop-auth",
        }
        refused = subprocess.run([sys.executable, str(APP)], env=base, capture_output=True, text=True, timeout=60)
        assert "Failed to export" in refused.stderr and "UNAUTHENTICATED" in refused.stderr, refused.stderr
        env = {**base, "OTEL_EXPORTER_OTLP_HEADERS": f"authorization=Bearer {writer}"}
        done = subprocess.run([sys.executable, str(APP)], env=env, capture_output=True, text=True, timeout=60)
        assert done.returncode == 0 and "Failed to export" not in done.stderr, done.stderr
        with grpc.insecure_channel(proc.address) as channel:
            stub = service_pb2_grpc.ErrorReplayServiceStub(channel)
            for trace_id in json.loads(done.stdout).values():
                found = stub.SearchErrors(
                    rr.SearchErrorsRequest(filter=m.ErrorFilter(trace_id=trace_id)),
                    metadata=(("authorization", f"Bearer {reader}"),),
                    timeout=10,
                )
                assert [e.report.service for e in found.errors] == ["shop-auth"]
            refused_ids = json.loads(refused.stdout).values()
            for trace_id in refused_ids:
                found = stub.SearchErrors(
                    rr.SearchErrorsRequest(filter=m.ErrorFilter(trace_id=trace_id)),
                    metadata=(("authorization", f"Bearer {reader}"),),
                    timeout=10,
                )
                assert list(found.errors) == []
    finally:
        proc.stop()
