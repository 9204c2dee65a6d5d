"""report_from_exception: an ErrorReport from a Python exception, with its type, message and traceback."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from errorreplay import report_from_exception
from errorreplay.v1 import message_pb2 as m


class PaymentDeclinedError(Exception):
    pass


def _raise_chained() -> None:
    try:
        dict[str, str]()["card"]
    except KeyError as exc:
        raise PaymentDeclinedError("card declined for order ord-7") from exc


def test_message_type_and_traceback_with_chained_cause() -> None:
    with pytest.raises(PaymentDeclinedError) as info:
        _raise_chained()
    report = report_from_exception(info.value, severity=m.SEVERITY_HIGH, resource_id="api-payments")
    assert report.message == "card declined for order ord-7"
    assert report.error_type == f"{__name__}.PaymentDeclinedError"
    assert report.severity == m.SEVERITY_HIGH
    assert report.source == m.SOURCE_APPLICATION
    assert report.resource_id == "api-payments"
    trace = report.stack_trace
    assert trace.startswith("Traceback (most recent call last):")
    assert "KeyError: 'card'" in trace
    assert "The above exception was the direct cause of the following exception" in trace
    assert "in _raise_chained" in trace
    assert trace.rstrip().endswith("PaymentDeclinedError: card declined for order ord-7")


def test_implicit_context_is_kept() -> None:
    try:
        try:
            raise TimeoutError("pool timeout")
        except TimeoutError:
            raise RuntimeError("retry failed")  # noqa: B904 - the implicit context is what is tested
    except RuntimeError as exc:
        report = report_from_exception(exc, severity=m.SEVERITY_MEDIUM)
    assert "During handling of the above exception, another exception occurred" in report.stack_trace
    assert "TimeoutError: pool timeout" in report.stack_trace


def test_builtin_type_name_and_empty_message() -> None:
    report = report_from_exception(ValueError(), severity=m.SEVERITY_LOW)
    assert report.error_type == "ValueError"
    assert report.message == "ValueError"
    assert report.stack_trace == "ValueError\n"  # never raised: no frames, just the line


def test_extra_fields_source_and_occurred_at() -> None:
    before = datetime.now(UTC)
    report = report_from_exception(
        OSError("disk full"),
        severity=m.SEVERITY_CRITICAL,
        source=m.SOURCE_MANUAL,
        service="ingest",
        correlation_id="req-1",
        tags={"team": "storage"},
    )
    assert (report.service, report.correlation_id, dict(report.tags)) == ("ingest", "req-1", {"team": "storage"})
    assert report.source == m.SOURCE_MANUAL
    occurred = report.occurred_at.ToDatetime(tzinfo=UTC)
    assert before - timedelta(seconds=1) <= occurred <= datetime.now(UTC) + timedelta(seconds=1)


def test_explicit_occurred_at_is_kept() -> None:
    when = datetime(2024, 5, 1, 12, 0, tzinfo=UTC)
    report = report_from_exception(RuntimeError("x"), severity=m.SEVERITY_HIGH, occurred_at=when)
    assert report.occurred_at.ToDatetime(tzinfo=UTC) == when


def test_unknown_field_is_rejected() -> None:
    with pytest.raises(ValueError):
        report_from_exception(RuntimeError("x"), severity=m.SEVERITY_HIGH, no_such_field="y")
