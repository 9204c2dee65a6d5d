"""The multi-process engine's parts that need no process: frames, errors across the socket,
and the supervisor's port check (tests/multiprocess runs the processes)."""

from __future__ import annotations

import asyncio
import socket

import pytest

from errorreplay_server.domain import errors
from errorreplay_server.domain.model import (
    CaptureOutcome,
    CollectionState,
    CollectorStatus,
    ErrorContext,
    LogLine,
    Severity,
)
from errorreplay_server.engine import frames
from errorreplay_server.engine.supervisor import SupervisorError, claim_ports
from errorreplay_server.settings import Settings
from tests.factories import new_error


def _roundtrip(frame: tuple[object, ...]) -> tuple[object, ...]:
    async def go() -> tuple[object, ...]:
        reader = asyncio.StreamReader()
        reader.feed_data(frames.encode(frame))
        reader.feed_eof()
        return await frames.read(reader)

    return asyncio.run(go())


def test_a_capture_crosses_the_socket_unchanged() -> None:
    item = new_error("disk full on /var", severity=Severity.CRITICAL, tags={"pod": "a-1"}, resource_id="db")
    item.snapshot.context = ErrorContext(
        logs=[LogLine(time=5, level="error", message="write failed", collector="client", labels={"k": "v"})],
        statuses=[CollectorStatus("loki", CollectionState.PENDING, "", 0.0, 0)],
    )
    outcome = CaptureOutcome(item.snapshot, duplicate=True, regression=False, new_group=True)
    kind, call_id, method, (items, outcomes) = _roundtrip((frames.CALL, 7, "capture", ([item], [outcome])))
    assert (kind, call_id, method) == (frames.CALL, 7, "capture")
    assert items == [item] and outcomes == [outcome]
    decoded = items[0].snapshot.report.severity  # type: ignore[index]
    assert decoded is Severity.CRITICAL, "enums come back as the same members"


@pytest.mark.parametrize(
    "error",
    [
        errors.InvalidArgument([errors.FieldViolation("error.message", "is required")]),
        errors.NotFound("group", "grp_1"),
        errors.ResourceExhausted("slow down", retry_after_seconds=2.5, resume_after="c1"),
        errors.OutOfRange("resume_after", "is past the newest stored error"),
        errors.StoreUnavailable("embedded store write failed: OperationalError"),
        errors.FailedPrecondition("no"),
    ],
    ids=lambda e: type(e).__name__,
)
def test_a_domain_error_from_the_writer_is_the_same_error_in_the_worker(error: errors.DomainError) -> None:
    back = frames.unpack_error(frames.pack_error(error))
    assert type(back) is type(error)
    assert str(back) == str(error)
    assert vars(back) == vars(error)


def test_any_other_error_from_the_writer_is_internal_and_names_itself() -> None:
    back = frames.unpack_error(frames.pack_error(KeyError("seq")))
    assert type(back) is RuntimeError
    assert "writer process: KeyError" in str(back)
    assert type(frames.unpack_error(("NoSuchError", ("x",), {}))) is RuntimeError


def test_a_taken_port_fails_naming_the_address() -> None:
    with socket.socket() as held:
        held.bind(("127.0.0.1", 0))
        held.listen()
        address = f"127.0.0.1:{held.getsockname()[1]}"
        with pytest.raises(SupervisorError, match=f"cannot listen on {address} .*in use"):
            claim_ports(Settings(listen_address=address, metrics_address=""))


def test_port_zero_is_resolved_once_for_every_worker() -> None:
    settings = claim_ports(Settings(listen_address="127.0.0.1:0", metrics_address=""))
    host, _, port = settings.listen_address.rpartition(":")
    assert host == "127.0.0.1" and int(port) > 0


def test_a_unix_socket_address_is_refused_with_workers() -> None:
    with pytest.raises(SupervisorError, match="--workers needs a TCP host:port"):
        claim_ports(Settings(listen_address="unix:/tmp/er.sock", metrics_address=""))
