"""Every row of the domain-exception -> status table."""

from __future__ import annotations

import pytest
from google.rpc import code_pb2, error_details_pb2

from errorreplay_server.api.errors import INTERNAL_MESSAGE, status_for
from errorreplay_server.domain.errors import (
    DeadlineExceeded,
    FailedPrecondition,
    FieldViolation,
    InvalidArgument,
    NotFound,
    OutOfRange,
    ResourceExhausted,
    StoreUnavailable,
    Unimplemented,
)


def test_invalid_argument_carries_bad_request() -> None:
    st = status_for(InvalidArgument([FieldViolation("error.message", "is required"), FieldViolation("a", "b")]))
    assert st.code == code_pb2.INVALID_ARGUMENT
    bad = error_details_pb2.BadRequest()
    assert st.details[0].Unpack(bad)
    assert [(v.field, v.description) for v in bad.field_violations] == [("error.message", "is required"), ("a", "b")]


def test_not_found_names_the_id() -> None:
    st = status_for(NotFound("error", "err_123"))
    assert st.code == code_pb2.NOT_FOUND and "err_123" in st.message
    info = error_details_pb2.ResourceInfo()
    assert st.details[0].Unpack(info) and (info.resource_type, info.resource_name) == ("error", "err_123")


def test_resource_exhausted_carries_retry_info() -> None:
    st = status_for(ResourceExhausted("slow down", retry_after_seconds=1.5))
    assert st.code == code_pb2.RESOURCE_EXHAUSTED
    retry = error_details_pb2.RetryInfo()
    assert st.details[0].Unpack(retry) and retry.retry_delay.ToNanoseconds() == 1_500_000_000


def test_slow_subscriber_carries_its_resume_cursor() -> None:
    st = status_for(ResourceExhausted("too slow", resume_after="cABC"))
    assert st.code == code_pb2.RESOURCE_EXHAUSTED
    retry, info = error_details_pb2.RetryInfo(), error_details_pb2.ErrorInfo()
    assert st.details[0].Unpack(retry) and st.details[1].Unpack(info)
    assert info.reason == "SUBSCRIBER_TOO_SLOW" and dict(info.metadata) == {"resume_after": "cABC"}


def test_out_of_range_names_the_field() -> None:
    st = status_for(OutOfRange("resume_after", "is past the newest stored error"))
    assert st.code == code_pb2.OUT_OF_RANGE and "resume_after" in st.message
    bad = error_details_pb2.BadRequest()
    assert st.details[0].Unpack(bad)
    assert [(v.field, v.description) for v in bad.field_violations] == [
        ("resume_after", "is past the newest stored error")
    ]


@pytest.mark.parametrize(
    ("exc", "code"),
    [
        (StoreUnavailable("down"), code_pb2.UNAVAILABLE),
        (FailedPrecondition("no"), code_pb2.FAILED_PRECONDITION),
        (Unimplemented("later"), code_pb2.UNIMPLEMENTED),
        (DeadlineExceeded("late"), code_pb2.DEADLINE_EXCEEDED),
    ],
)
def test_simple_rows(exc: Exception, code: int) -> None:
    assert status_for(exc).code == code


@pytest.mark.parametrize("exc", [RuntimeError("password=hunter2 at /srv/secret.py"), KeyError("x"), ValueError()])
def test_anything_else_is_internal_without_internals(exc: Exception) -> None:
    st = status_for(exc)
    assert st.code == code_pb2.INTERNAL
    assert st.message == INTERNAL_MESSAGE and not st.details
