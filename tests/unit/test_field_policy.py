"""The field policy covers every stored string field, found by protobuf reflection (issue 19, item 3)."""

from __future__ import annotations

import dataclasses

import pytest
from google.protobuf.descriptor import Descriptor, FieldDescriptor

from errorreplay.v1 import message_pb2 as m
from errorreplay.v1 import request_response_pb2 as rr
from errorreplay_server.capture import field_policy
from errorreplay_server.capture.field_policy import FIELD_POLICY, REFUSE, SCRUB, SET_BY_SERVER
from errorreplay_server.capture.scrubbing import SecretScrubber
from errorreplay_server.domain import model
from tests.unit.scrubbing.corpus import PII_SHAPES, SHAPES

# What a client stores: the write requests and the messages they carry, nested ones included.
STORED_ROOTS = (
    m.ErrorReport,
    m.Change,
    m.Resource,
    m.Dependency,
    rr.CaptureErrorRequest,
    rr.BatchCaptureErrorsRequest,
    rr.RecordChangeRequest,
    rr.UpsertResourcesRequest,
)
# Scalar kinds that carry no text of the client's (numbers, booleans, enums, timestamps).
NOT_TEXT = {"google.protobuf.Timestamp", "google.protobuf.Duration"}
DOMAIN = {
    "ErrorReport": model.ErrorReport,
    "Change": model.Change,
    "Resource": model.Resource,
    "Dependency": model.Dependency,
    "LogLine": model.LogLine,
}

SCRUBBER = SecretScrubber.from_env({})


def text_fields(root: Descriptor) -> set[str]:
    """Full names of the fields under `root` that hold client text: strings, repeated strings,
    maps with string keys or values, and Structs."""
    found: set[str] = set()
    seen: set[str] = set()
    todo = [root]
    while todo:
        desc = todo.pop()
        if desc.full_name in seen:
            continue
        seen.add(desc.full_name)
        for f in desc.fields:
            if f.type == FieldDescriptor.TYPE_STRING:
                found.add(f.full_name)
            elif f.type == FieldDescriptor.TYPE_MESSAGE:
                sub = f.message_type
                if sub.GetOptions().map_entry:
                    if any(x.type == FieldDescriptor.TYPE_STRING for x in sub.fields):
                        found.add(f.full_name)
                elif sub.full_name == "google.protobuf.Struct":
                    found.add(f.full_name)
                elif sub.full_name not in NOT_TEXT:
                    todo.append(sub)
    return found


STORED_TEXT_FIELDS = set().union(*(text_fields(root.DESCRIPTOR) for root in STORED_ROOTS))


def test_reflection_finds_the_fields_the_red_team_named() -> None:
    # The walk itself must see nested and map fields, or the next check would prove nothing.
    assert {
        "errorreplay.v1.ErrorReport.correlation_id",
        "errorreplay.v1.ErrorReport.tags",
        "errorreplay.v1.ErrorReport.attributes",
        "errorreplay.v1.Change.metadata",
        "errorreplay.v1.Resource.labels",
        "errorreplay.v1.CaptureErrorRequest.request_id",
    } <= STORED_TEXT_FIELDS


def test_every_stored_text_field_has_a_treatment() -> None:
    missing = sorted(STORED_TEXT_FIELDS - set(FIELD_POLICY))
    assert not missing, f"stored fields with no row in capture/field_policy.py FIELD_POLICY: {missing}"


def test_every_row_is_a_stored_text_field() -> None:
    assert set(FIELD_POLICY) <= STORED_TEXT_FIELDS


@pytest.mark.parametrize("name", sorted(FIELD_POLICY))
def test_every_row_names_an_attribute_of_the_domain_type(name: str) -> None:
    message, field = name.removeprefix("errorreplay.v1.").split(".")
    if message == "CaptureErrorRequest":
        return  # request_id is checked by CaptureService itself
    assert field in {f.name for f in dataclasses.fields(DOMAIN[message])}


@pytest.mark.parametrize("shape", SHAPES, ids=lambda s: s.id)
def test_every_secret_shape_in_an_identifier_is_refused(shape: object) -> None:
    text = shape.text  # type: ignore[attr-defined]
    violation = field_policy.refused(text, "error.correlation_id", SCRUBBER)
    assert violation is not None
    assert violation.field == "error.correlation_id"
    assert shape.secret not in violation.description  # type: ignore[attr-defined]


@pytest.mark.parametrize("shape", PII_SHAPES, ids=lambda s: s.id)
def test_personal_data_in_an_identifier_is_kept(shape: object) -> None:
    assert field_policy.refused(shape.text, "error.correlation_id", SCRUBBER) is None  # type: ignore[attr-defined]


@pytest.mark.parametrize(
    "value",
    [
        "req-42",
        "4bf92f3577b34da6a3ce929d0e0e4736",
        "00f067aa0ba902b7",
        "payments@1.4.2",
        # A trace id whose last 16 hex digits happen to form a Luhn-valid card number.
        "4bf92f3577b34dae4111111111111111",
        "123e4567-e89b-12d3-a456-426614174000",
        "err_06615a9d44d737778dee0286",
    ],
)
def test_ordinary_identifiers_are_kept(value: str) -> None:
    assert field_policy.refused(value, "error.correlation_id", SCRUBBER) is None


def test_apply_scrubs_free_text_and_refuses_identifiers() -> None:
    change = model.Change(
        change_id="chg-1",
        kind=model.ChangeKind.CONFIG,
        resource_id="api-1",
        occurred_at=0,
        version="v2 token=abc123def",
        description="rotated DB_PASS=hunter2x",
        author="ops password=hunter2x",
        metadata={"db_pass": "hunter2x", "note": "card 4111111111111111"},
    )
    cleaned, violations = field_policy.apply("Change", change, SCRUBBER, "change.")
    assert violations == []
    assert "hunter2x" not in repr(cleaned) and "abc123def" not in repr(cleaned)
    assert "4111111111111111" not in repr(cleaned)
    assert cleaned.description == "rotated DB_PASS=[REDACTED:password]"
    _, violations = field_policy.apply(
        "Change", dataclasses.replace(change, resource_id="api-AKIAIOSFODNN7EXAMPLE"), SCRUBBER, "change."
    )
    assert [v.field for v in violations] == ["change.resource_id"]


def test_treatments_are_scrub_refuse_or_set_by_the_server() -> None:
    assert set(FIELD_POLICY.values()) == {SCRUB, REFUSE, SET_BY_SERVER}
