"""The Python client (async and sync) against `errorreplay serve`; the wheel; mypy --strict on the example."""

from __future__ import annotations

import asyncio
import shutil
import subprocess
import sys
import uuid
import zipfile
from collections.abc import Iterator
from pathlib import Path

import grpc
import pytest

from errorreplay import ErrorReplayClient, RetryPolicy, SyncErrorReplayClient, report_from_exception
from errorreplay.v1 import message_pb2 as m
from errorreplay.v1 import request_response_pb2 as rr
from tests.e2e.server_process import VENV_BIN, ServerProcess

ROOT = Path(__file__).resolve().parents[2]
CLIENT_DIR = ROOT / "clients" / "python"
EXAMPLE = CLIENT_DIR / "examples" / "capture_example.py"


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory, server_workers: int) -> Iterator[ServerProcess]:
    """One server per process model (tests/e2e/conftest.py)."""
    proc = ServerProcess(tmp_path_factory.mktemp("client"), workers=server_workers).start()
    yield proc
    proc.stop()


class DeployFailedError(RuntimeError):
    pass


def failing_report(run: str, resource: str, correlation_id: str) -> m.ErrorReport:
    try:
        try:
            raise ConnectionError("db refused the connection")
        except ConnectionError as cause:
            raise DeployFailedError(f"checkout failed ({run})") from cause
    except DeployFailedError as exc:
        return report_from_exception(
            exc, severity=m.SEVERITY_HIGH, resource_id=resource, correlation_id=correlation_id, tags={"run": run}
        )


async def test_async_client_end_to_end(server: ServerProcess) -> None:
    run = uuid.uuid4().hex
    api, db, corr = f"api-{run}", f"db-{run}", f"corr-{run}"
    async with ErrorReplayClient(
        server.address, token="ignored-by-server", retry=RetryPolicy(initial_backoff=0.05)
    ) as c:
        upserted = await c.upsert_resources(
            [m.Resource(id=api, type="service"), m.Resource(id=db, type="database")],
            [m.Dependency(dependent_id=api, dependency_id=db)],
        )
        assert (upserted.resources_upserted, upserted.dependencies_upserted) == (2, 1)
        topology = await c.get_topology(api, depth=1)
        assert {r.id for r in topology.resources} >= {api, db}

        change = await c.record_change(m.Change(kind=m.CHANGE_KIND_DEPLOYMENT, resource_id=db, version="v9"))
        assert change.change_id.startswith("chg_")
        assert change.change_id in [ch.change_id for ch in (await c.list_changes(resource_ids=[db])).changes]

        report = failing_report(run, api, corr)
        first = await c.capture(report, request_id=f"req-{run}")
        again = await c.capture(report, request_id=f"req-{run}")
        assert not first.duplicate and again.duplicate and again.error_id == first.error_id

        snapshot = await c.get(first.error_id)
        assert snapshot.report.message == f"checkout failed ({run})"
        assert snapshot.report.error_type == f"{__name__}.DeployFailedError"
        assert "The above exception was the direct cause" in snapshot.report.stack_trace
        assert snapshot.request_id == f"req-{run}"

        batch = await c.batch_capture(
            m.ErrorReport(message=f"batch {i}", severity=m.SEVERITY_LOW, source=m.SOURCE_APPLICATION, tags={"run": run})
            for i in range(5)
        )
        assert (batch.stored_count, batch.failed_count) == (5, 0)

        flt = m.ErrorFilter(tags={"run": run})
        page = await c.search(flt, page_size=2)
        assert len(page.errors) == 2 and page.next_page_token and page.total_size == 6
        everything = [s.error_id async for s in c.search_all(flt, page_size=2)]
        assert len(everything) == 6 and len(set(everything)) == 6 and first.error_id in everything

        assert (await c.statistics(filter=flt)).total_count == 6
        assert len((await c.recent(page_size=3)).errors) == 3
        assert first.error_id in [e.error_id for e in (await c.by_resource(api)).errors]
        assert [e.error_id for e in (await c.by_correlation(corr)).errors] == [first.error_id]

        groups = await c.list_groups(order_by=rr.ERROR_GROUP_ORDER_LAST_SEEN)
        assert snapshot.group_id in [g.group_id for g in groups.groups]
        updated = await c.update_group(snapshot.group_id, m.ERROR_GROUP_STATUS_ACKNOWLEDGED)
        assert updated.status == m.ERROR_GROUP_STATUS_ACKNOWLEDGED

        with pytest.raises(grpc.aio.AioRpcError) as info:
            await c.get("err_missing")
        assert info.value.code() == grpc.StatusCode.NOT_FOUND


async def test_async_replay(server: ServerProcess) -> None:
    run = uuid.uuid4().hex
    async with ErrorReplayClient(server.address) as c:
        captured = await c.capture(failing_report(run, f"api-{run}", f"corr-{run}"))
        replay = await c.replay(captured.error_id)
    assert replay.error.error_id == captured.error_id
    assert captured.error_id in [e.reference_id for e in replay.timeline]


async def test_async_subscribe_resumes_then_goes_live(server: ServerProcess) -> None:
    run = uuid.uuid4().hex
    flt = m.ErrorFilter(tags={"run": run})

    def report(i: int) -> m.ErrorReport:
        return m.ErrorReport(
            message=f"sub {i}", severity=m.SEVERITY_HIGH, source=m.SOURCE_APPLICATION, tags={"run": run}
        )

    async with ErrorReplayClient(server.address) as c:
        ids = [(await c.capture(report(i))).error_id for i in range(3)]
        stream = c.subscribe(flt, resume_after=ids[0], reconnect=True)
        received: list[str] = []
        try:
            async with asyncio.timeout(30):
                async for message in stream:
                    received.append(message.error.error_id)
                    if len(received) == 2:  # the two missed after ids[0], replayed from the store
                        ids.append((await c.capture(report(3))).error_id)  # then one live
                    if len(received) == 3:
                        break
        finally:
            await stream.aclose()
    assert received == ids[1:]


def test_sync_client_end_to_end(server: ServerProcess) -> None:
    run = uuid.uuid4().hex
    with SyncErrorReplayClient(server.address, token="t") as c:
        captured = c.capture(failing_report(run, f"api-{run}", f"corr-{run}"))
        assert c.get(captured.error_id).report.tags["run"] == run
        flt = m.ErrorFilter(tags={"run": run})
        assert [s.error_id for s in c.search_all(flt)] == [captured.error_id]
        assert c.statistics(filter=flt).total_count == 1
        assert c.by_correlation(f"corr-{run}").errors[0].error_id == captured.error_id
        with pytest.raises(grpc.RpcError) as info:
            c.get("err_missing")
        assert isinstance(info.value, grpc.Call) and info.value.code() == grpc.StatusCode.NOT_FOUND
        replay = c.replay(captured.error_id)
        assert replay.error.error_id == captured.error_id


def test_sync_subscribe_replays_what_was_missed(server: ServerProcess) -> None:
    run = uuid.uuid4().hex
    with SyncErrorReplayClient(server.address) as c:
        ids = [
            c.capture(
                m.ErrorReport(message=f"s{i}", severity=m.SEVERITY_HIGH, source=m.SOURCE_APPLICATION, tags={"run": run})
            ).error_id
            for i in range(3)
        ]
        received: list[str] = []
        for message in c.subscribe(m.ErrorFilter(tags={"run": run}), resume_after=ids[0]):
            received.append(message.error.error_id)
            if len(received) == 2:
                break
    assert received == ids[1:]


def test_example_program_runs(server: ServerProcess) -> None:
    done = subprocess.run(
        [sys.executable, str(EXAMPLE), "--address", server.address], capture_output=True, text=True, timeout=60
    )
    assert done.returncode == 0, done.stdout + done.stderr
    assert done.stdout.startswith("captured err_")
    assert "PaymentDeclinedError" in done.stdout
    assert "1 error(s) share correlation id" in done.stdout


def test_example_passes_mypy_strict(tmp_path: Path) -> None:
    done = subprocess.run(
        [str(VENV_BIN / "mypy"), "--strict", "--cache-dir", str(tmp_path / "cache"), str(EXAMPLE.relative_to(ROOT))],
        cwd=ROOT,  # the root pyproject.toml points mypy at clients/python, where the .pyi stubs live
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, done.stdout + done.stderr


def test_mypy_strict_catches_a_misuse_of_the_stubs(tmp_path: Path) -> None:
    """The control for the test above: the stubs are really read, so a wrong field fails."""
    bad = tmp_path / "bad_client.py"
    bad.write_text(
        "from errorreplay import ErrorReplayClient\n"
        "from errorreplay.v1 import message_pb2 as m\n\n\n"
        "async def f(c: ErrorReplayClient) -> str:\n"
        "    r = await c.capture(m.ErrorReport(message='x', severity=m.SEVERITY_HIGH))\n"
        "    return r.error_idd\n"
    )
    done = subprocess.run(
        [str(VENV_BIN / "mypy"), "--strict", "--cache-dir", str(tmp_path / "cache"), str(bad)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 1
    assert '"CaptureErrorResponse" has no attribute "error_idd"' in done.stdout


def test_client_wheel_builds_on_its_own(tmp_path: Path) -> None:
    # Build from a copy: an in-tree build would leave build/ and *.egg-info in the checkout.
    source = tmp_path / "src"
    shutil.copytree(CLIENT_DIR, source, ignore=shutil.ignore_patterns("__pycache__", "build", "*.egg-info", "dist"))
    dist = tmp_path / "dist"
    done = subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-w", str(dist), str(source)],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    (wheel,) = dist.glob("errorreplay_client-*.whl")
    with zipfile.ZipFile(wheel) as zf:
        names = set(zf.namelist())
        metadata = next(zf.read(n).decode() for n in names if n.endswith(".dist-info/METADATA"))
        zf.extractall(tmp_path / "unpacked")
    for expected in (
        "errorreplay/__init__.py",
        "errorreplay/client.py",
        "errorreplay/sync_client.py",
        "errorreplay/py.typed",
        "errorreplay/v1/message_pb2.py",
        "errorreplay/v1/message_pb2.pyi",
        "errorreplay/v1/service_pb2_grpc.pyi",
    ):
        assert expected in names
    assert not [n for n in names if n.startswith(("errorreplay_server", "examples", "tests"))]
    assert "Name: errorreplay-client" in metadata
    assert "Requires-Dist: grpcio" in metadata and "Requires-Dist: protobuf" in metadata
    # The unpacked wheel imports on its own (grpcio and protobuf come from this venv).
    check = subprocess.run(
        [
            sys.executable,
            "-c",
            "import sys; sys.path.insert(0, sys.argv[1]); import errorreplay, errorreplay.v1.service_pb2_grpc;"
            "print(errorreplay.__file__); print(errorreplay.ErrorReplayClient.__name__)",
            str(tmp_path / "unpacked"),
        ],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert check.returncode == 0, check.stderr
    assert check.stdout.splitlines() == [
        str(tmp_path / "unpacked" / "errorreplay" / "__init__.py"),
        "ErrorReplayClient",
    ]
