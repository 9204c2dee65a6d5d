"""`errorreplay serve` with ERRORREPLAY_STORE=neo4j against the ArcadeDB Bolt server."""

from __future__ import annotations

import uuid
from pathlib import Path

import grpc

from errorreplay.v1 import message_pb2 as m
from errorreplay.v1 import request_response_pb2 as rr
from errorreplay.v1 import service_pb2_grpc
from tests.bolt_server import BoltServer, bolt_server  # noqa: F401  (session fixture)
from tests.e2e.server_process import ServerProcess


def test_server_runs_on_the_graph_store(bolt_server: BoltServer, tmp_path: Path) -> None:  # noqa: F811
    env = {
        "ERRORREPLAY_STORE": "neo4j",
        "ERRORREPLAY_NEO4J_URI": bolt_server.uri,
        "ERRORREPLAY_NEO4J_USERNAME": bolt_server.username,
        "ERRORREPLAY_NEO4J_PASSWORD": bolt_server.password,
        "ERRORREPLAY_NEO4J_DATABASE": bolt_server.database,
    }
    server = ServerProcess(tmp_path, extra_env=env).start()
    try:
        run = uuid.uuid4().hex
        with grpc.insecure_channel(server.address) as channel:
            errors = service_pb2_grpc.ErrorReplayServiceStub(channel)
            topology = service_pb2_grpc.TopologyServiceStub(channel)
            topology.UpsertResources(
                rr.UpsertResourcesRequest(
                    dependencies=[m.Dependency(dependent_id=f"{run}-api", dependency_id=f"{run}-db")]
                )
            )
            ids = []
            for resource in ("db", "api"):
                reply = errors.CaptureError(
                    rr.CaptureErrorRequest(
                        error=m.ErrorReport(
                            message=f"{resource} failed",
                            severity=m.SEVERITY_HIGH,
                            source=m.SOURCE_APPLICATION,
                            resource_id=f"{run}-{resource}",
                            correlation_id=run,
                            tags={"run": run},
                        ),
                        request_id=f"{run}-{resource}",
                    ),
                    timeout=10,
                )
                ids.append(reply.error_id)
            found = errors.SearchErrors(rr.SearchErrorsRequest(filter=m.ErrorFilter(tags={"run": run})))
            assert sorted(e.error_id for e in found.errors) == sorted(ids)
            replay = errors.ReplayError(rr.ReplayErrorRequest(error_id=ids[1]))
            assert replay.propagation.origin_error_id == ids[0]
    finally:
        server.stop()


def test_unreachable_neo4j_fails_fast_with_a_clear_message(tmp_path: Path) -> None:
    env = {"ERRORREPLAY_STORE": "neo4j", "ERRORREPLAY_NEO4J_URI": "bolt://127.0.0.1:1"}
    env["ERRORREPLAY_NEO4J_PASSWORD"] = "x"
    server = ServerProcess(tmp_path, extra_env=env)
    try:
        server.start(timeout=30)
        raise AssertionError("the server started without its store")
    except RuntimeError as exc:
        assert "bolt://127.0.0.1:1" in str(exc)
        assert server.process is not None and server.process.wait(10) != 0
    finally:
        server.stop()
