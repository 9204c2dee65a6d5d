"""grpcurl through server reflection, against `errorreplay serve`. README examples come from here."""

from __future__ import annotations

import base64
import json
import re
import shlex
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.e2e.server_process import VENV_BIN, ServerProcess

GRPCURL = str(VENV_BIN / "grpcurl")


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory, server_workers: int) -> Iterator[ServerProcess]:
    """One server per process model (tests/e2e/conftest.py)."""
    proc = ServerProcess(tmp_path_factory.mktemp("grpcurl"), workers=server_workers).start()
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
        "opentelemetry.proto.collector.logs.v1.LogsService",
        "opentelemetry.proto.collector.trace.v1.TraceService",
    ):
        assert name in out


def test_otlp_services_through_reflection(server: ServerProcess) -> None:
    for service in (
        "opentelemetry.proto.collector.trace.v1.TraceService",
        "opentelemetry.proto.collector.logs.v1.LogsService",
    ):
        assert "rpc Export" in grpcurl(server, "describe", service)
    # An export through grpcurl (protobuf JSON: bytes are base64), then found by its trace id.
    trace_id = base64.b64encode(bytes.fromhex("0af7651916cd43dd8448eb211c80319c")).decode()
    span_id = base64.b64encode(bytes.fromhex("b7ad6b7169203331")).decode()
    event = {
        "name": "exception",
        "timeUnixNano": "1760000000000000000",
        "attributes": [
            {"key": "exception.type", "value": {"stringValue": "TimeoutError"}},
            {"key": "exception.message", "value": {"stringValue": "grpcurl export timed out"}},
        ],
    }
    export = {
        "resourceSpans": [
            {
                "resource": {"attributes": [{"key": "service.name", "value": {"stringValue": "grpcurl-svc"}}]},
                "scopeSpans": [
                    {"spans": [{"traceId": trace_id, "spanId": span_id, "name": "GET /", "events": [event]}]}
                ],
            }
        ]
    }
    assert json.loads(grpcurl(server, "opentelemetry.proto.collector.trace.v1.TraceService/Export", data=export)) == {}
    found = json.loads(
        grpcurl(
            server,
            "errorreplay.v1.ErrorReplayService/SearchErrors",
            data={"filter": {"trace_id": "0af7651916cd43dd8448eb211c80319c"}},
        )
    )
    (error,) = found["errors"]
    assert error["report"]["message"] == "grpcurl export timed out"
    assert error["report"]["service"] == "grpcurl-svc"


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


README = Path(__file__).resolve().parents[2] / "README.md"


def readme_commands(section: str) -> list[list[str]]:
    """The grpcurl commands of the first ```sh block under the README heading `section`, as argv
    lists (continuation lines joined, comment lines dropped)."""
    text = README.read_text(encoding="utf-8")
    body = text[text.index(f"\n## {section}\n") :]
    block = body[body.index("```sh\n") + len("```sh\n") :]
    block = block[: block.index("```")]
    lines = [line for line in block.splitlines() if not line.lstrip().startswith("#")]
    joined = "\n".join(lines).replace("\\\n", " ")
    commands = []
    for command in re.split(r"\n(?=grpcurl )", joined.strip()):
        argv = shlex.split(command)
        assert argv[0] == "grpcurl", command
        commands.append(argv)
    return commands


def test_the_readme_replay_example(server: ServerProcess) -> None:
    """Runs the README's replay commands as written: captures, dependency, replay."""
    commands = readme_commands("Replay")
    assert [argv[-1].rsplit("/", 1)[-1] for argv in commands] == [
        "CaptureError",
        "CaptureError",
        "UpsertResources",
        "ReplayError",
    ]
    outputs = []
    for argv in commands:
        argv = [GRPCURL, *argv[1:]]
        argv[argv.index("localhost:50051")] = server.address
        if argv[-1].endswith("/ReplayError"):  # the README's id is from its own run: use ours
            data = json.loads(argv[argv.index("-d") + 1])
            assert data["error_id"] == "err_06615a9d44d737778dee0286"
            argv[argv.index("-d") + 1] = json.dumps({"error_id": outputs[1]["error_id"]})
        done = subprocess.run(argv, capture_output=True, text=True, timeout=30)
        assert done.returncode == 0, done.stderr
        outputs.append(json.loads(done.stdout))
    db_error, api_error = outputs[0]["error_id"], outputs[1]["error_id"]
    replay = outputs[3]
    assert replay["error"]["error_id"] == api_error
    assert replay["error"]["report"]["occurred_at"] == "2026-01-05T10:01:00Z"  # back-dated as written
    assert replay["propagation"]["origin_error_id"] == db_error
    assert [step["resource_id"] for step in replay["propagation"]["path"]] == ["db-9", "api-9"]
    assert replay["root_cause"]["category"] == "ROOT_CAUSE_CATEGORY_DEPENDENCY_FAILURE"
    assert [e["kind"] for e in replay["timeline"]] == ["TIMELINE_EVENT_KIND_RELATED_ERROR", "TIMELINE_EVENT_KIND_ERROR"]
    assert [e["summary"] for e in replay["timeline"]] == [
        "Error on db-9: failure on db-9",
        "Error on api-9: failure on api-9",
    ]
    assert [r["kind"] for r in replay["recommendations"]] == [
        "RECOMMENDATION_KIND_ESCALATE",
        "RECOMMENDATION_KIND_INVESTIGATE_ORIGIN",
        "RECOMMENDATION_KIND_ADD_CIRCUIT_BREAKER",
        # The e2e server has no metrics, log or trace backend: the replay says it had little to go on.
        "RECOMMENDATION_KIND_GATHER_CONTEXT",
    ]
    assert replay["context_coverage"]["limited"] is True
    # The request ids make the example safe to run twice: the same errors come back.
    again = subprocess.run(
        [GRPCURL, *commands[1][1:-2], server.address, commands[1][-1]], capture_output=True, text=True, timeout=30
    )
    assert json.loads(again.stdout)["error_id"] == api_error


def test_streaming_subscribe(server: ServerProcess) -> None:
    watcher = subprocess.Popen(
        [
            GRPCURL,
            "-plaintext",
            "-max-time",
            "6",
            "-d",
            json.dumps({"filter": {"tags": {"stream": "grpcurl"}}, "heartbeat_interval": "1s"}),
            server.address,
            "errorreplay.v1.ErrorReplayService/SubscribeErrors",
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert watcher.stdout is not None
        first = watcher.stdout.readline()  # the first heartbeat proves the stream is registered
        assert first.strip() == "{"
        sent = [
            json.loads(
                grpcurl(
                    server,
                    "errorreplay.v1.ErrorReplayService/CaptureError",
                    data={
                        "error": {
                            "message": f"streamed {i}",
                            "severity": "SEVERITY_HIGH",
                            "source": "SOURCE_APPLICATION",
                            "tags": {"stream": "grpcurl"},
                        }
                    },
                )
            )["error_id"]
            for i in range(2)
        ]
        out, _ = watcher.communicate(timeout=20)
    finally:
        watcher.kill()
    for error_id in sent:
        assert error_id in out
    assert '"cursor"' in out
