"""A failed batch item gets the status a single call would have ended with: code, message and
details from api/errors.py `status_for`, one row per kind of error."""

from __future__ import annotations

import logging

import pytest
from google.protobuf import any_pb2
from google.rpc import code_pb2, error_details_pb2

from errorreplay.v1 import message_pb2 as m
from errorreplay_server.api.errors import INTERNAL_MESSAGE, fill_item_error
from errorreplay_server.domain.errors import (
    DeadlineExceeded,
    FailedPrecondition,
    FieldViolation,
    InvalidArgument,
    NotFound,
    OutOfRange,
    PermissionDenied,
    ResourceExhausted,
    ShuttingDown,
    StoreUnavailable,
    Unauthenticated,
    Unimplemented,
)


def _item(exc: BaseException) -> m.ItemError:
    out = m.ItemError()
    fill_item_error(exc, out)
    return out


def _unpacked(detail: any_pb2.Any, kind: type) -> object:
    message = kind()
    assert detail.Unpack(message), f"{detail.type_url} is not {kind.__name__}"
    return message


def test_invalid_argument_item_names_its_fields_both_ways() -> None:
    item = _item(
        InvalidArgument(
            [FieldViolation("requests[1].error.message", "is required"), FieldViolation("requests[1].x", "bad")]
        )
    )
    assert item.code == code_pb2.INVALID_ARGUMENT
    assert item.message == "invalid argument: requests[1].error.message: is required; requests[1].x: bad"
    expected = [("requests[1].error.message", "is required"), ("requests[1].x", "bad")]
    assert [(v.field, v.description) for v in item.field_violations] == expected
    (detail,) = item.details
    bad = _unpacked(detail, error_details_pb2.BadRequest)
    assert isinstance(bad, error_details_pb2.BadRequest)
    assert [(v.field, v.description) for v in bad.field_violations] == expected


def test_store_unavailable_item_is_unavailable_and_says_to_retry() -> None:
    item = _item(StoreUnavailable("database is locked"))
    assert item.code == code_pb2.UNAVAILABLE
    assert item.message == "store unavailable, retry with the same request_id: database is locked"
    assert not item.field_violations and not item.details


def test_resource_exhausted_item_carries_retry_info() -> None:
    item = _item(ResourceExhausted("capture queue full", retry_after_seconds=2.5))
    assert (item.code, item.message) == (code_pb2.RESOURCE_EXHAUSTED, "capture queue full")
    (detail,) = item.details
    retry = _unpacked(detail, error_details_pb2.RetryInfo)
    assert isinstance(retry, error_details_pb2.RetryInfo)
    assert retry.retry_delay.ToNanoseconds() == 2_500_000_000


def test_not_found_item_carries_resource_info() -> None:
    item = _item(NotFound("group", "grp_1"))
    assert item.code == code_pb2.NOT_FOUND and "grp_1" in item.message
    (detail,) = item.details
    info = _unpacked(detail, error_details_pb2.ResourceInfo)
    assert isinstance(info, error_details_pb2.ResourceInfo)
    assert (info.resource_type, info.resource_name) == ("group", "grp_1")


def test_out_of_range_item_names_its_field() -> None:
    item = _item(OutOfRange("requests[0].error.occurred_at", "is too far in the future"))
    assert item.code == code_pb2.OUT_OF_RANGE
    assert [(v.field, v.description) for v in item.field_violations] == [
        ("requests[0].error.occurred_at", "is too far in the future")
    ]


@pytest.mark.parametrize(
    ("exc", "code"),
    [
        (ShuttingDown("the server is shutting down"), code_pb2.UNAVAILABLE),
        (DeadlineExceeded("context not collected in time"), code_pb2.DEADLINE_EXCEEDED),
        (FailedPrecondition("group is muted"), code_pb2.FAILED_PRECONDITION),
        (Unimplemented("not on this store"), code_pb2.UNIMPLEMENTED),
        (Unauthenticated("token expired"), code_pb2.UNAUTHENTICATED),
        (PermissionDenied("reader cannot capture"), code_pb2.PERMISSION_DENIED),
    ],
    ids=lambda v: type(v).__name__ if isinstance(v, Exception) else str(v),
)
def test_other_domain_errors_keep_their_code_and_message(exc: Exception, code: int) -> None:
    item = _item(exc)
    assert (item.code, item.message) == (code, str(exc))
    assert not item.field_violations and not item.details


def test_an_unexpected_item_error_is_internal_without_internals(caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.ERROR, logger="errorreplay_server.api.errors"):
        item = _item(RuntimeError("password=hunter2 at /srv/secret.py"))
    assert (item.code, item.message) == (code_pb2.INTERNAL, INTERNAL_MESSAGE)
    assert not item.field_violations and not item.details
    assert "unexpected error in a batch item" in caplog.text  # the server keeps the details
