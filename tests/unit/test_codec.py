"""What the stores keep of a context (store/codec.py): documents already stored keep decoding to the
same records, every record survives a round trip, and a document of a later version still reads."""

from __future__ import annotations

import json
from dataclasses import fields

import pytest

from errorreplay_server.domain.model import (
    Change,
    ChangeKind,
    CollectionState,
    CollectorStatus,
    Dependency,
    ErrorContext,
    ErrorReport,
    ErrorSnapshot,
    LogLine,
    MetricAnomaly,
    MetricBaseline,
    MetricPoint,
    MetricSeries,
    Resource,
    Severity,
    Source,
    Span,
    SpanStatus,
    Topology,
)
from errorreplay_server.store.codec import (
    LINK_COLUMNS,
    context_from_json,
    context_to_json,
    from_doc,
    link_from_row,
    to_doc,
)

CHANGE = Change("c1", ChangeKind.DEPLOYMENT, "api", 7, "v2", "roll out", "ci", {"sha": "abc"})
CONTEXT = ErrorContext(
    logs=[LogLine(5, "error", "boom", "loki", {"pod": "api-1"}), LogLine(6, "warn", "slow")],
    metrics=[
        MetricSeries(
            name="cpu",
            query="rate(x[1m])",
            labels={"resource_id": "api"},
            points=[MetricPoint(1, 40.0), MetricPoint(2, 97.5)],
            anomalies=[MetricAnomaly(2, 97.5, 40.0, 60.0, "cpu 97.5 above 60", "baseline", 2)],
            unit="percent",
            resource_id="api",
            baseline=MetricBaseline(40.0, 1.5, 60, "lookback", -3600, 0, 55.0, 86_400),
        ),
        MetricSeries(name="memory"),
    ],
    spans=[Span("t1", "s1", "", "api", "GET /", 10, 250, SpanStatus.ERROR, "500", True, {"http.status": "500"})],
    topology=Topology("api", [Resource("api", "service", "API", {"team": "a"})], [Dependency("api", "db")], True),
    changes=[CHANGE],
    statuses=[
        CollectorStatus("prometheus", CollectionState.OK, "", 12.5, 9),
        CollectorStatus("loki", CollectionState.PENDING),
    ],
)

# CONTEXT as stored by earlier versions: arrays for the many small records (two of them shorter
# than the record is now), objects for the rest, empty lists written out.
STORED = {
    "logs": [[5, "error", "boom", "loki", {"pod": "api-1"}], [6, "warn", "slow", "", {}]],
    "metrics": [
        {
            "name": "cpu",
            "query": "rate(x[1m])",
            "labels": {"resource_id": "api"},
            "points": [[1, 40.0], [2, 97.5]],
            "anomalies": [[2, 97.5, 40.0, 60.0, "cpu 97.5 above 60", "baseline", 2]],
            "unit": "percent",
            "resource_id": "api",
            "baseline": {
                "median": 40.0,
                "spread": 1.5,
                "points": 60,
                "source": "lookback",
                "start": -3600,
                "end": 0,
                "seasonal_peak": 55.0,
                "seasonal_offset_us": 86_400,
            },
        },
        {"name": "memory", "query": "", "labels": {}, "points": [], "anomalies": [], "unit": "", "resource_id": ""},
    ],
    "spans": [["t1", "s1", "", "api", "GET /", 10, 250, 3, "500", True, {"http.status": "500"}]],
    "topology": {
        "root": "api",
        "resources": [["api", "service", "API", {"team": "a"}]],
        "dependencies": [["api", "db"]],
        "truncated": True,
    },
    "changes": [
        {
            "change_id": "c1",
            "kind": 1,
            "resource_id": "api",
            "occurred_at": 7,
            "version": "v2",
            "description": "roll out",
            "author": "ci",
            "metadata": {"sha": "abc"},
        }
    ],
    "statuses": [["prometheus", 2, "", 12.5, 9], ["loki", 1, "", 0.0, 0]],
}


def test_a_context_stored_by_earlier_versions_decodes_to_the_same_records() -> None:
    assert SpanStatus.ERROR == 3 and ChangeKind.DEPLOYMENT == 1  # the ints written in STORED
    assert CollectionState.OK == 2 and CollectionState.PENDING == 1
    assert context_from_json(json.dumps(STORED)) == CONTEXT


def test_every_record_survives_a_round_trip_and_enums_come_back_as_enums() -> None:
    decoded = context_from_json(context_to_json(CONTEXT))
    assert decoded == CONTEXT
    assert decoded.spans[0].status is SpanStatus.ERROR
    assert decoded.statuses[1].state is CollectionState.PENDING
    assert context_from_json(context_to_json(ErrorContext())) == ErrorContext()
    assert context_to_json(ErrorContext()) == "{}"


def test_arrays_stored_before_later_fields_take_their_defaults() -> None:
    old = {"metrics": [{"name": "cpu", "anomalies": [[2, 97.0, 40.0, 60.0, "high"]]}], "logs": [[1, "error", "x"]]}
    ctx = context_from_json(json.dumps(old))
    assert ctx.metrics[0].anomalies == [MetricAnomaly(2, 97.0, 40.0, 60.0, "high", "", 0)]
    assert ctx.logs == [LogLine(1, "error", "x", "", {})]


def test_a_key_written_by_a_later_version_is_passed_over() -> None:
    later = {**STORED, "profiles": [[1, 2]], "topology": {**STORED["topology"], "weights": {"api": 1}}}  # type: ignore[dict-item]
    assert context_from_json(json.dumps(later)) == CONTEXT


def test_a_change_document_has_every_field_for_the_stores_to_set() -> None:
    doc = to_doc(Change("c2", ChangeKind.CONFIG, "", 3))
    assert doc == {
        "change_id": "c2",
        "kind": ChangeKind.CONFIG,
        "resource_id": "",
        "occurred_at": 3,
        "version": "",
        "description": "",
        "author": "",
        "metadata": {},
    }
    assert from_doc(Change, json.loads(json.dumps(to_doc(CHANGE)))) == CHANGE


def test_a_link_row_sets_each_link_field_and_shares_only_read_only_empties() -> None:
    # link_from_row builds positionally: a field moved in the dataclasses must fail here.
    row = dict(
        zip(LINK_COLUMNS, ["e1", "g1", 11, 10, int(Severity.HIGH), int(Source.LOKI), "api", "c1", "t1"], strict=True)
    )
    first, second = link_from_row(tuple(row.values())), link_from_row(tuple(row.values()))
    report = ErrorReport(
        "", Severity.HIGH, Source.LOKI, resource_id="api", correlation_id="c1", trace_id="t1", occurred_at=10
    )
    expected = ErrorSnapshot("e1", "g1", 11, report, "")
    # Each field as built by keyword, an empty container matching a read-only empty one.
    for made, wanted in ((first, expected), (first.report, report), (first.context, expected.context)):
        assert {f.name: getattr(made, f.name) or None for f in fields(made) if f.name not in ("report", "context")} == {
            f.name: getattr(wanted, f.name) or None for f in fields(wanted) if f.name not in ("report", "context")
        }
    assert first.report.tags is second.report.tags and first.context is second.context
    with pytest.raises(TypeError):
        first.report.tags["k"] = "v"
    with pytest.raises(AttributeError):
        first.report.fingerprint.append("x")
    with pytest.raises(AttributeError):
        first.context.logs.append(LogLine(1, "error", "x"))
    with pytest.raises(AttributeError):
        first.related_error_ids.append("e2")
