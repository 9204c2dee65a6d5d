"""Every row of the field policy, end to end over a real server (issue 19, item 3).

A secret placed in each stored field never comes back from GetError, SearchErrors,
SubscribeErrors, ReplayError, GetTopology or ListChanges, and is not in the SQLite files: a SCRUB
field is stored masked, a REFUSE field is answered INVALID_ARGUMENT naming it.
"""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import grpc
import pytest
from google.protobuf.message import Message

from errorreplay.v1 import message_pb2 as m
from errorreplay.v1 import request_response_pb2 as rr
from errorreplay_server.capture.field_policy import FIELD_POLICY, REFUSE, SCRUB
from tests.grpc.conftest import Api, field_violations
from tests.grpc.helpers import report, uid
from tests.grpc.test_subscribe import read_errors, subscribed
from tests.unit.scrubbing.corpus import ALNUM, fake


def secret_for(field: str) -> str:
    """A GitHub token unique to the field, so a leak names the field it came from."""
    return "ghp_" + fake(ALNUM, 36, field)


def place(msg: Message, field: str, secret: str) -> None:
    """Put the secret in `field` of `msg`, whatever the field's kind."""
    desc = msg.DESCRIPTOR.fields_by_name[field]
    value = getattr(msg, field)
    if desc.message_type is not None and desc.message_type.full_name == "google.protobuf.Struct":
        value.update({"note": f"key {secret}", "nested": {"list": [secret]}})
    elif desc.message_type is not None:  # map<string, string>
        value["note"] = f"deploy token {secret}"
    elif not isinstance(value, str):  # repeated string
        value.append(f"part {secret}")
    elif field == "message":
        setattr(msg, field, f"boom with {secret}")
    else:
        setattr(msg, field, f"{uid('x-')}-{secret}" if FIELD_POLICY[desc.full_name] is REFUSE else f"v {secret}")


def rows(message: str) -> list[str]:
    prefix = f"errorreplay.v1.{message}."
    return sorted(name.removeprefix(prefix) for name in FIELD_POLICY if name.startswith(prefix))


def sqlite_bytes(data_dir: Path) -> bytes:
    return b"".join(p.read_bytes() for p in sorted(data_dir.glob("errorreplay.db*")))


async def refused(call: Any, field: str) -> None:
    with pytest.raises(grpc.aio.AioRpcError) as info:
        await call
    assert info.value.code() == grpc.StatusCode.INVALID_ARGUMENT, field
    assert field in field_violations(info.value)
    assert "ghp_" not in (info.value.details() or "")


async def test_every_policy_row_keeps_its_secret_out(api: Api, tmp_path: Path) -> None:
    secrets: dict[str, str] = {name: secret_for(name) for name in FIELD_POLICY}
    resource = uid("api-")
    stream = await subscribed(api, rr.SubscribeErrorsRequest(filter=m.ErrorFilter(resource_ids=[resource])))
    scrubbed_reports = 0

    # --- ErrorReport and CaptureErrorRequest ------------------------------------------------
    for field in rows("ErrorReport"):
        name = f"errorreplay.v1.ErrorReport.{field}"
        error = report(resource_id=resource, correlation_id=uid("corr-"))
        place(error, field, secrets[name])
        call = api.errors.CaptureError(rr.CaptureErrorRequest(error=error), timeout=10)
        if FIELD_POLICY[name] is REFUSE:
            await refused(call, f"error.{field}")
            continue
        captured = await call
        scrubbed_reports += 1
        got = await api.errors.GetError(rr.GetErrorRequest(error_id=captured.error_id), timeout=10)
        assert b"[REDACTED:github_token]" in got.SerializeToString(), field
        for answer in (
            captured,
            got,
            await api.errors.SearchErrors(
                rr.SearchErrorsRequest(filter=m.ErrorFilter(resource_ids=[resource])), timeout=10
            ),
            await api.errors.ReplayError(rr.ReplayErrorRequest(error_id=captured.error_id), timeout=10),
        ):
            assert secrets[name].encode() not in answer.SerializeToString(), field
    await refused(
        api.errors.CaptureError(
            rr.CaptureErrorRequest(error=report(), request_id=f"retry-{secrets[_request_id()]}"), timeout=10
        ),
        "request_id",
    )
    batch = await api.errors.BatchCaptureErrors(
        rr.BatchCaptureErrorsRequest(
            requests=[rr.CaptureErrorRequest(error=report(correlation_id=f"c-{secrets[_request_id()]}"))]
        ),
        timeout=10,
    )
    assert batch.failed_count == 1
    assert "requests[0].error.correlation_id" in [v.field for v in batch.results[0].error.field_violations]
    streamed = await read_errors(stream, scrubbed_reports)
    for msg in streamed:
        assert not any(s.encode() in msg.SerializeToString() for s in secrets.values())
    stream.cancel()

    # --- ErrorReport.breadcrumbs (LogLine, stored as context log lines) -----------------------
    for field in rows("LogLine"):
        name = f"errorreplay.v1.LogLine.{field}"
        crumb = m.LogLine(level="info", message="user clicked pay")
        place(crumb, field, secrets[name])
        error = report(resource_id=resource, breadcrumbs=[crumb])
        captured = await api.errors.CaptureError(rr.CaptureErrorRequest(error=error), timeout=10)
        got = await api.errors.GetError(rr.GetErrorRequest(error_id=captured.error_id), timeout=10)
        assert [line.collector for line in got.error.context.logs] == ["client"], field
        if FIELD_POLICY[name] is SCRUB:
            assert b"[REDACTED:github_token]" in got.SerializeToString(), field
        for answer in (captured, got):
            assert secrets[name].encode() not in answer.SerializeToString(), field

    # --- Change (RecordChange, ListChanges, replay timelines) --------------------------------
    for field in rows("Change"):
        name = f"errorreplay.v1.Change.{field}"
        change = m.Change(kind=m.CHANGE_KIND_DEPLOYMENT, resource_id=resource, version="v1")
        place(change, field, secrets[name])
        call = api.topology.RecordChange(rr.RecordChangeRequest(change=change), timeout=10)
        if FIELD_POLICY[name] is REFUSE:
            await refused(call, f"change.{field}")
            continue
        recorded = await call
        assert b"[REDACTED:github_token]" in recorded.SerializeToString(), field
    changes = await api.topology.ListChanges(rr.ListChangesRequest(resource_ids=[resource]), timeout=10)
    assert len(changes.changes) == sum(FIELD_POLICY[f"errorreplay.v1.Change.{f}"] is SCRUB for f in rows("Change"))
    after = await api.errors.CaptureError(
        rr.CaptureErrorRequest(error=report(resource_id=resource), wait_for_context=True), timeout=10
    )
    replay = await api.errors.ReplayError(rr.ReplayErrorRequest(error_id=after.error_id), timeout=10)
    assert replay.related_changes, "the changes must reach the replay for this check to mean anything"
    for answer in (changes, replay, after):
        blob = answer.SerializeToString()
        assert not any(s.encode() in blob for s in secrets.values())

    # --- Resource and Dependency (UpsertResources, GetTopology) ------------------------------
    for field in rows("Resource"):
        name = f"errorreplay.v1.Resource.{field}"
        res = m.Resource(id=uid("svc-"), type="service")
        place(res, field, secrets[name])
        call = api.topology.UpsertResources(rr.UpsertResourcesRequest(resources=[res]), timeout=10)
        if FIELD_POLICY[name] is REFUSE:
            await refused(call, f"resources[0].{field}")
            continue
        await call
        topology = await api.topology.GetTopology(rr.GetTopologyRequest(resource_id=res.id), timeout=10)
        blob = topology.SerializeToString()
        assert b"[REDACTED:github_token]" in blob, field
        assert secrets[name].encode() not in blob, field
    for field in rows("Dependency"):
        name = f"errorreplay.v1.Dependency.{field}"
        dep = m.Dependency(dependent_id=uid("a-"), dependency_id=uid("b-"))
        place(dep, field, secrets[name])
        await refused(
            api.topology.UpsertResources(rr.UpsertResourcesRequest(dependencies=[dep]), timeout=10),
            f"dependencies[0].{field}",
        )

    # --- on disk ------------------------------------------------------------------------------
    await asyncio.sleep(0)
    stored = sqlite_bytes(tmp_path)
    assert b"[REDACTED:github_token]" in stored
    leaked = sorted(name for name, s in secrets.items() if s.encode() in stored)
    assert not leaked


def _request_id() -> str:
    return "errorreplay.v1.CaptureErrorRequest.request_id"
