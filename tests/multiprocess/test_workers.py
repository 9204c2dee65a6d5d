"""`errorreplay serve --workers N` as a user runs it: streams across workers, resume across
restarts with another worker count, supervision, and taken ports (issue 17)."""

from __future__ import annotations

import queue
import re
import subprocess
import threading
import time
import urllib.request
import uuid
from collections.abc import Iterator
from pathlib import Path

import grpc
import pytest
from google.protobuf.duration_pb2 import Duration
from grpc_health.v1 import health_pb2, health_pb2_grpc
from prometheus_client.parser import text_string_to_metric_families

from errorreplay.v1 import message_pb2 as m
from errorreplay.v1 import request_response_pb2 as rr
from errorreplay.v1 import service_pb2_grpc
from tests.e2e.server_process import VENV_BIN, ServerProcess, free_port

SEPARATE_CONNECTION = [("grpc.use_local_subchannel_pool", 1)]


def _worker_of(channel: grpc.Channel, workers: int) -> int:
    """Which worker serves this connection: only worker i serves health name errorreplay-worker-i."""
    stub = health_pb2_grpc.HealthStub(channel)
    for i in range(workers):
        try:
            reply = stub.Check(health_pb2.HealthCheckRequest(service=f"errorreplay-worker-{i}"), timeout=5)
        except grpc.RpcError as err:
            assert err.code() == grpc.StatusCode.NOT_FOUND, err  # type: ignore[attr-defined]
            continue
        assert reply.status == health_pb2.HealthCheckResponse.SERVING
        return i
    raise AssertionError("no worker health name is served on this connection")


@pytest.fixture
def channels_on_two_workers(tmp_path: Path) -> Iterator[tuple[ServerProcess, grpc.Channel, grpc.Channel]]:
    """A --workers 2 server and one connection to each worker. SO_REUSEPORT spreads connections
    by a hash of their ports, so connections are opened until both workers have one."""
    metrics = {"ERRORREPLAY_METRICS_ADDRESS": f"127.0.0.1:{free_port()}"}
    server = ServerProcess(tmp_path / "data", workers=2, extra_env=metrics).start()
    found: dict[int, grpc.Channel] = {}
    spare: list[grpc.Channel] = []
    try:
        for _ in range(60):
            channel = grpc.insecure_channel(server.address, options=SEPARATE_CONNECTION)
            worker = _worker_of(channel, 2)
            if worker in found:
                spare.append(channel)
            else:
                found[worker] = channel
            if len(found) == 2:
                break
        assert len(found) == 2, "60 connections all reached one worker"
        yield server, found[0], found[1]
    finally:
        for channel in [*found.values(), *spare]:
            channel.close()
        server.stop()


def _report(run: str, i: int) -> m.ErrorReport:
    return m.ErrorReport(
        message=f"worker test {run} {i}",
        severity=m.SEVERITY_HIGH,
        source=m.SOURCE_APPLICATION,
        resource_id=f"svc-{i % 3}",
        tags={"run": run},
    )


class Subscriber(threading.Thread):
    """Reads a stream into a queue: ("error", error id, received_at µs, cursor) per error."""

    def __init__(self, channel: grpc.Channel, run: str, resume_after: str = "") -> None:
        super().__init__(daemon=True)
        stub = service_pb2_grpc.ErrorReplayServiceStub(channel)
        request = rr.SubscribeErrorsRequest(
            filter=m.ErrorFilter(tags={"run": run}),
            resume_after=resume_after,
            heartbeat_interval=Duration(nanos=200_000_000),
        )
        self.call = stub.SubscribeErrors(request, timeout=120)
        self.items: queue.Queue[tuple[str, str, int, str]] = queue.Queue()

    def run(self) -> None:
        try:
            for msg in self.call:
                kind = "heartbeat" if msg.heartbeat else "error"
                self.items.put((kind, msg.error.error_id, msg.error.received_at.ToMicroseconds(), msg.cursor))
        except grpc.RpcError:
            pass

    def live(self) -> None:
        """Wait for the first heartbeat: the subscription is registered, captures from now on reach it."""
        while self.items.get(timeout=30)[0] != "heartbeat":
            pass

    def errors(self, count: int, timeout: float = 30) -> list[tuple[str, int, str]]:
        """The next `count` errors (heartbeats skipped), then a short wait that no other arrives."""
        got: list[tuple[str, int, str]] = []
        deadline = time.monotonic() + timeout
        while len(got) < count:
            kind, error_id, received_at, cursor = self.items.get(timeout=max(0.1, deadline - time.monotonic()))
            if kind == "error":
                got.append((error_id, received_at, cursor))
        extra_until = time.monotonic() + 1.0
        while time.monotonic() < extra_until:
            try:
                kind, error_id, received_at, cursor = self.items.get(timeout=0.2)
            except queue.Empty:
                continue
            if kind == "error":
                got.append((error_id, received_at, cursor))
        return got


def _capture(channel: grpc.Channel, run: str, first: int, count: int) -> list[str]:
    stub = service_pb2_grpc.ErrorReplayServiceStub(channel)
    return [
        stub.CaptureError(rr.CaptureErrorRequest(error=_report(run, i), request_id=f"{run}-{i}"), timeout=30).error_id
        for i in range(first, first + count)
    ]


def _in_cursor_order(got: list[tuple[str, int, str]]) -> bool:
    stamps = [received_at for _, received_at, _ in got]
    return stamps == sorted(stamps) and len(set(stamps)) == len(stamps)


def test_a_subscriber_on_one_worker_gets_every_capture_of_both_once_in_cursor_order(
    channels_on_two_workers: tuple[ServerProcess, grpc.Channel, grpc.Channel],
) -> None:
    _, on_worker_0, on_worker_1 = channels_on_two_workers
    run = uuid.uuid4().hex
    subscriber = Subscriber(on_worker_0, run)
    subscriber.start()
    subscriber.live()
    # Through the other worker, then both at once.
    acked = _capture(on_worker_1, run, 0, 30)
    both: list[list[str]] = [[], []]
    threads = [
        threading.Thread(target=lambda: both[0].extend(_capture(on_worker_0, run, 100, 20))),
        threading.Thread(target=lambda: both[1].extend(_capture(on_worker_1, run, 200, 20))),
    ]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    acked += both[0] + both[1]
    got = subscriber.errors(len(acked))
    subscriber.call.cancel()
    ids = [error_id for error_id, _, _ in got]
    assert sorted(ids) == sorted(acked), "every acknowledged capture arrives exactly once"
    assert _in_cursor_order(got)
    # The first 30 came through worker 1 one after another: in that order on worker 0's stream.
    assert ids[:30] == acked[:30]


def test_resume_from_a_cursor_across_restarts_with_another_worker_count(tmp_path: Path) -> None:
    data = tmp_path / "data"
    run = uuid.uuid4().hex
    port = free_port()
    cursor = ""
    first = 0
    for workers, count in ((2, 6), (0, 5), (1, 4), (2, 3)):
        server = ServerProcess(data, port=port, workers=workers).start()
        try:
            with grpc.insecure_channel(server.address) as channel:
                acked = _capture(channel, run, first, count)
                first += count
                # The first run resumes after its first error's id, the others after the cursor
                # the previous run's stream gave last.
                resume_after, expected = (cursor, acked) if cursor else (acked[0], acked[1:])
                subscriber = Subscriber(channel, run, resume_after=resume_after)
                subscriber.start()
                got = subscriber.errors(len(expected))
                subscriber.call.cancel()
            assert [error_id for error_id, _, _ in got] == expected, f"workers={workers}"
            assert _in_cursor_order(got)
            cursor = got[-1][2]
        finally:
            assert server.terminate() == 0, server.output()


def _wait_for(server: ServerProcess, pattern: str, timeout: float = 30) -> re.Match[str]:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        found = re.search(pattern, server.output())
        if found:
            return found
        time.sleep(0.05)
    raise AssertionError(f"{pattern!r} not in the log:\n{server.output()}")


def test_a_killed_worker_is_restarted_and_a_killed_writer_too_without_losing_an_acknowledgement(
    tmp_path: Path,
) -> None:
    server = ServerProcess(tmp_path / "data", workers=2).start()
    run = uuid.uuid4().hex
    try:
        killed = server.kill_child("worker-1")
        _wait_for(server, rf"worker-1 process \(pid {killed}\) exited with code -9; restarting it")
        _wait_for(server, rf"started worker-1 process \(pid (?!{killed}\))\d+\)")

        acked: list[str] = []
        failures: list[str] = []
        stop = threading.Event()

        def capture_until_stopped() -> None:
            with grpc.insecure_channel(server.address) as channel:
                stub = service_pb2_grpc.ErrorReplayServiceStub(channel)
                i = 0
                while not stop.is_set():
                    request = rr.CaptureErrorRequest(error=_report(run, i), request_id=f"{run}-{i}")
                    try:
                        acked.append(stub.CaptureError(request, timeout=10).error_id)
                        i += 1
                    except grpc.RpcError as err:
                        if err.code() != grpc.StatusCode.UNAVAILABLE:  # type: ignore[attr-defined]
                            failures.append(f"{err.code()}: {err.details()}")  # type: ignore[attr-defined]
                        time.sleep(0.05)  # then the same request_id again

        client = threading.Thread(target=capture_until_stopped)
        client.start()
        time.sleep(1.0)
        writer = server.kill_child("writer")
        _wait_for(server, rf"writer process \(pid {writer}\) exited with code -9: calls in flight got UNAVAILABLE")
        _wait_for(server, rf"started writer process \(pid (?!{writer}\))\d+\)")
        before = len(acked)
        deadline = time.monotonic() + 30
        while len(acked) < before + 20 and time.monotonic() < deadline:
            time.sleep(0.1)
        stop.set()
        client.join(30)
        assert not failures
        assert len(acked) >= before + 20, "captures go on after the writer's restart"
        with grpc.insecure_channel(server.address) as channel:
            stub = service_pb2_grpc.ErrorReplayServiceStub(channel)
            stored = stub.SearchErrors(
                rr.SearchErrorsRequest(filter=m.ErrorFilter(tags={"run": run}), page_size=1000), timeout=30
            ).errors
        assert sorted(e.error_id for e in stored) == sorted(set(acked)), "acknowledged means stored, once"
    finally:
        server.stop()


def test_sigterm_drains_the_workers_then_the_writer(tmp_path: Path) -> None:
    server = ServerProcess(tmp_path / "data", workers=2).start()
    children = server.children()
    assert server.terminate() == 0
    log = server.output()
    writer_stopped = log.index("writer: stopped")
    for name in ("worker-0", "worker-1"):
        assert log.index(f"[{name}]: stopped") < writer_stopped, log
    assert log.rstrip().endswith("errorreplay: stopped")
    for pid in children.values():
        assert not Path(f"/proc/{pid}").exists() or "zombie" in Path(f"/proc/{pid}/status").read_text()


def _serve_fails(data: Path, address: str, *args: str) -> str:
    done = subprocess.run(
        [str(VENV_BIN / "errorreplay"), "serve", "--address", address, *args],
        env={
            "ERRORREPLAY_DATA_DIR": str(data),
            "ERRORREPLAY_METRICS_ADDRESS": "off",
            "ERRORREPLAY_HTTP_ADDRESS": "off",
            "PATH": str(VENV_BIN),
        },
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 1, done
    return done.stderr


@pytest.mark.parametrize(
    ("first", "second"),
    [(0, ["--workers", "2"]), (2, []), (2, ["--workers", "2"])],
    ids=["one-process-then-workers", "workers-then-one-process", "workers-then-workers"],
)
def test_a_second_server_on_a_taken_port_fails_naming_the_address(
    tmp_path: Path, first: int, second: list[str]
) -> None:
    server = ServerProcess(tmp_path / "first", workers=first).start()
    try:
        message = _serve_fails(tmp_path / "second", server.address, *second)
        assert f"cannot listen on {server.address}" in message and "in use" in message, message
        with grpc.insecure_channel(server.address) as channel:
            reply = health_pb2_grpc.HealthStub(channel).Check(health_pb2.HealthCheckRequest(), timeout=5)
            assert reply.status == health_pb2.HealthCheckResponse.SERVING, "the first server still serves"
    finally:
        server.stop()


def test_metrics_of_every_worker_are_served_by_the_writer_with_a_worker_label(
    channels_on_two_workers: tuple[ServerProcess, grpc.Channel, grpc.Channel],
) -> None:
    server, on_worker_0, on_worker_1 = channels_on_two_workers
    metrics_address = re.search(r"metrics=http://([^/]+)/metrics", server.output())
    assert metrics_address is not None, server.output()
    run = uuid.uuid4().hex
    _capture(on_worker_0, run, 0, 3)
    _capture(on_worker_1, run, 10, 5)
    with urllib.request.urlopen(f"http://{metrics_address.group(1)}/metrics", timeout=30) as response:
        families = {f.name: f for f in text_string_to_metric_families(response.read().decode())}

    def value(family: str, **labels: str) -> float:
        return sum(
            s.value
            for s in families[family].samples
            if s.name.endswith("_total") and all(s.labels.get(k) == v for k, v in labels.items())
        )

    method = "/errorreplay.v1.ErrorReplayService/CaptureError"
    assert value("errorreplay_rpc_handled", method=method, code="OK", worker="0") == 3
    assert value("errorreplay_rpc_handled", method=method, code="OK", worker="1") == 5
    assert value("errorreplay_captures", outcome="stored") == 8
    assert {s.labels["worker"] for s in families["errorreplay_stream_subscribers"].samples} == {"0", "1"}
