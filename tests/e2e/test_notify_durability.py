"""Notifications decided before a SIGKILL are delivered after the restart, each exactly once
at a receiver that dedups on X-Errorreplay-Message-Id."""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import grpc
import pytest

from errorreplay.v1 import message_pb2 as m
from errorreplay.v1 import request_response_pb2 as rr
from errorreplay.v1 import service_pb2_grpc
from errorreplay_server.notify import targets
from errorreplay_server.notify.outbox import OutboxEntry, OutboxState, SqliteOutbox
from tests.e2e.server_process import ServerProcess
from tests.notify_sink import ThreadedSink

GROUPS = 12
SECRET = "durability-secret"


@pytest.fixture
def sink() -> Iterator[ThreadedSink]:
    sink = ThreadedSink()
    yield sink
    sink.close()


def outbox_rows(data_dir: Path) -> list[OutboxEntry]:
    outbox = SqliteOutbox(data_dir / "errorreplay.db", read_only=True)
    outbox.start_sync()
    return outbox.entries_sync([], 1000)


def wait_until(what: str, check: object, timeout: float = 60.0) -> None:
    """Polls `check` (a callable); the timeout only bounds a hang."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if check():  # type: ignore[operator]
            return
        time.sleep(0.02)
    raise AssertionError(f"timed out waiting for {what}")


def test_decided_messages_survive_sigkill_and_arrive_once(tmp_path: Path, sink: ThreadedSink) -> None:
    config = tmp_path / "errorreplay.toml"
    config.write_text(
        f"""
[notifications.targets.hook]
kind = "webhook"
url = "{sink.sink.url("/hook")}"

[[notifications.rules]]
name = "new-groups"
trigger = "new_group"
target = "hook"
"""
    )
    env = {
        "ERRORREPLAY_CONFIG": str(config),
        "ERRORREPLAY_NOTIFY_TARGET_HOOK_SECRET": SECRET,
        "ERRORREPLAY_ENRICHMENT": "off",
        # One delivery at a time, so that most messages are still in the outbox at the kill.
        "ERRORREPLAY_NOTIFY_CONCURRENCY": "1",
        "ERRORREPLAY_NOTIFY_BACKOFF_BASE": "200ms",
        "ERRORREPLAY_NOTIFY_BACKOFF_MAX": "5s",
    }
    sink.call(lambda: sink.sink.answer("/hook", 500))
    sink.call(lambda: sink.sink.answer("/hook", 429, {"Retry-After": "3"}))
    data_dir = tmp_path / "data"
    server = ServerProcess(data_dir, extra_env=env).start()
    try:
        with grpc.insecure_channel(server.address) as channel:
            stub = service_pb2_grpc.ErrorReplayServiceStub(channel)
            for i in range(GROUPS):
                report = m.ErrorReport(
                    message=f"durability {i}",
                    error_type=f"Durability{i}",
                    severity=m.SEVERITY_HIGH,
                    source=m.SOURCE_APPLICATION,
                )
                stub.CaptureError(rr.CaptureErrorRequest(error=report), timeout=10)
        # Every decision is in the outbox, and the receiver has refused with 500 and 429.
        wait_until("decisions in the outbox", lambda: len(outbox_rows(data_dir)) == GROUPS)
        wait_until("a 500 and a 429", lambda: len(sink.call(lambda: list(sink.sink.requests))) >= 2)
        server.kill()
        at_kill = outbox_rows(data_dir)
        assert len({e.message_id for e in at_kill}) == GROUPS
        assert any(e.state == OutboxState.PENDING for e in at_kill)  # killed with messages in the outbox
        refused = [e for e in at_kill if e.last_error == "HTTP 429"]
        assert refused and refused[0].state == OutboxState.PENDING, "the 429'd message waits for its Retry-After"

        server = ServerProcess(data_dir, extra_env=env).start()
        accepted = sink.wait_for(GROUPS, "/hook", timeout=120)
        wait_until(
            "every message marked sent",
            lambda: all(e.state == OutboxState.SENT for e in outbox_rows(data_dir)),
        )
    finally:
        server.stop()
    decided = {e.message_id for e in outbox_rows(data_dir)}
    # Every decided message arrived, once after dedup, and nothing else arrived.
    assert {r.message_id for r in accepted} == decided and len(accepted) == GROUPS
    requests = sink.call(lambda: list(sink.sink.requests))
    assert {r.message_id for r in requests} == decided
    statuses = Counter(r.status for r in requests)
    assert statuses[500] == 1 and statuses[429] == 1
    # The 429'd message was retried and then accepted (after the restart or before it).
    retried = [r for r in requests if r.message_id == requests[1].message_id]
    assert [r.status for r in retried][:2] == [429, 200]
    # Each body is the signed generic JSON, verifiable with the shared secret.
    for r in accepted:
        ts, sig = r.headers["X-Errorreplay-Timestamp"], r.headers["X-Errorreplay-Signature"]
        assert targets.verify(SECRET, ts, r.body, sig, now=int(ts))
        assert r.json["message_id"] == r.message_id
