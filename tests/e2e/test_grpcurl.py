"""grpcurl through server reflection, against `errorreplay serve`. README examples come from here."""

from __future__ import annotations

import json
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.e2e.server_process import VENV_BIN, ServerProcess

GRPCURL = str(VENV_BIN / "grpcurl")


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    proc = ServerProcess(tmp_path_factory.mktemp("grpcurl")).start()
    yield proc
    proc.stop()


def grpcurl(server: ServerProcess, *args: str, data: dict[str, object] | None = None) -> str:
    cmd = [GRPCURL, "-plaintext"]
    if data is not None:
        cmd += ["-d", json.dumps(data)]
    cmd += [server.address, *args]
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=30)
    assert done.returncode == 0, done.stderr
    return done.stdout


def test_list_shows_services(server: ServerProcess) -> None:
    out = grpcurl(server, "list").split()
    for name in (
        "errorreplay.v1.ErrorReplayService",
        "errorreplay.v1.TopologyService",
        "grpc.health.v1.Health",
        "grpc.reflection.v1alpha.ServerReflection",
    ):
        assert name in out


def test_describe_shows_rpcs(server: ServerProcess) -> None:
    out = grpcurl(server, "describe", "errorreplay.v1.ErrorReplayService")
    for rpc in ("CaptureError", "BatchCaptureErrors", "ReplayError", "SearchErrors", "SubscribeErrors"):
        assert f"rpc {rpc}" in out
    message = grpcurl(server, "describe", "errorreplay.v1.ErrorReport")
    assert "string message = 1;" in message


def test_capture_get_search_statistics_by_correlation(server: ServerProcess) -> None:
    captured = json.loads(
        grpcurl(
            server,
            "errorreplay.v1.ErrorReplayService/CaptureError",
            data={
                "error": {
                    "message": "connection refused to db-1:5432",
                    "severity": "SEVERITY_HIGH",
                    "source": "SOURCE_APPLICATION",
                    "resource_id": "api-1",
                    "correlation_id": "req-42",
                    "tags": {"team": "payments"},
                },
                "request_id": "retry-safe-1",
            },
        )
    )
    error_id = captured["error_id"]
    assert error_id.startswith("err_")
    got = json.loads(grpcurl(server, "errorreplay.v1.ErrorReplayService/GetError", data={"error_id": error_id}))
    assert got["error"]["report"]["message"] == "connection refused to db-1:5432"
    found = json.loads(
        grpcurl(
            server,
            "errorreplay.v1.ErrorReplayService/SearchErrors",
            data={"filter": {"min_severity": "SEVERITY_HIGH", "text": "refused"}, "page_size": 10},
        )
    )
    assert error_id in [e["error_id"] for e in found["errors"]]
    stats = json.loads(grpcurl(server, "errorreplay.v1.ErrorReplayService/GetStatistics", data={}))
    assert int(stats["total_count"]) >= 1
    chain = json.loads(
        grpcurl(server, "errorreplay.v1.ErrorReplayService/ListErrorsByCorrelation", data={"correlation_id": "req-42"})
    )
    assert chain["errors"][0]["error_id"] == error_id


def test_invalid_request_shows_the_field(server: ServerProcess) -> None:
    cmd = [GRPCURL, "-plaintext", "-d", json.dumps({"error": {"message": ""}}), server.address]
    done = subprocess.run(
        [*cmd, "errorreplay.v1.ErrorReplayService/CaptureError"], capture_output=True, text=True, timeout=30
    )
    assert done.returncode != 0
    assert "InvalidArgument" in done.stderr and "error.message" in done.stderr


def test_health_check(server: ServerProcess, tmp_path: Path) -> None:
    out = json.loads(grpcurl(server, "grpc.health.v1.Health/Check"))
    assert out["status"] == "SERVING"
