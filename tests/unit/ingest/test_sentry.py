"""The Sentry mapping (README: HTTP ingestion, Sentry), row by row, and the envelope parser."""

from __future__ import annotations

import json

import pytest

from errorreplay_server.domain.errors import InvalidArgument
from errorreplay_server.domain.model import CLIENT_LOG_COLLECTOR, Severity, Source
from errorreplay_server.ingest.sentry import event_report, parse_envelope
from errorreplay_server.settings import Limits

LIMITS = Limits()
EVENT_ID = "9ec79c33ec9942ab8353589fcb2e04dc"


def report(**event: object):
    return event_report({"event_id": EVENT_ID, **event}, "42", LIMITS, now=1_000)


def frame(function: str, lineno: int, line: str) -> dict[str, object]:
    return {"filename": "app/pay.py", "function": function, "lineno": lineno, "context_line": f"    {line}  "}


CHAINED = {
    "values": [
        {"type": "KeyError", "value": "'card'", "stacktrace": {"frames": [frame("read_card", 3, "return c['card']")]}},
        {
            "type": "ChargeFailed",
            "module": "shop.errors",
            "value": "charge failed",
            "stacktrace": {"frames": [frame("main", 20, "charge(c)"), frame("charge", 9, "raise ChargeFailed()")]},
        },
    ]
}


def test_outermost_exception_gives_type_and_value_and_the_chain_is_a_readable_trace() -> None:
    r = report(exception=CHAINED).report
    assert (r.error_type, r.message, r.source) == ("ChargeFailed", "charge failed", Source.APPLICATION)
    assert r.stack_trace == (
        "Traceback (oldest call first):\n"
        '  File "app/pay.py", line 3, in read_card\n'
        "    return c['card']\n"
        "KeyError: 'card'\n\n"
        "The above exception led to the next one:\n\n"
        "Traceback (oldest call first):\n"
        '  File "app/pay.py", line 20, in main\n'
        "    charge(c)\n"
        '  File "app/pay.py", line 9, in charge\n'
        "    raise ChargeFailed()\n"
        "shop.errors.ChargeFailed: charge failed"
    )


def test_frame_vars_are_never_rendered() -> None:
    exc = {
        "values": [{"type": "E", "value": "v", "stacktrace": {"frames": [{**frame("f", 1, "x"), "vars": {"k": "S3"}}]}}]
    }
    assert "S3" not in report(exception=exc).report.stack_trace


def test_a_trace_over_the_limit_keeps_the_outermost_exception() -> None:
    frames = [frame(f"f{i}", i, "x" * 200) for i in range(200)]
    exc = {"values": [{"type": "Old", "value": "o", "stacktrace": {"frames": frames}}, {"type": "New", "value": "n"}]}
    r = event_report({"exception": exc}, "42", Limits(max_stack_trace_chars=5000)).report
    assert len(r.stack_trace) <= 5000 and r.stack_trace.endswith("New: n")


@pytest.mark.parametrize(
    ("level", "severity"),
    [
        ("fatal", Severity.CRITICAL),
        ("error", Severity.HIGH),
        ("warning", Severity.MEDIUM),
        ("info", Severity.INFO),
        ("debug", Severity.INFO),
        (None, Severity.HIGH),
        ("weird", Severity.HIGH),
    ],
)
def test_level_to_severity(level: str | None, severity: Severity) -> None:
    event = {"message": "m"} if level is None else {"message": "m", "level": level}
    assert report(**event).report.severity == severity


def test_release_environment_server_name_and_tags() -> None:
    r = report(
        message="m",
        release="shop@1.2",
        environment="prod",
        server_name="web-7",
        tags={"team": "pay", "n": 3},
    ).report
    assert (r.release, r.environment) == ("shop@1.2", "prod")
    assert r.tags == {"team": "pay", "n": "3", "server_name": "web-7"}
    # Tags may come as [key, value] pairs too.
    assert report(message="m", tags=[["a", "b"]]).report.tags == {"a": "b"}


def test_trace_context() -> None:
    trace = {"trace_id": "A" * 32, "span_id": "b" * 16}
    r = report(message="m", contexts={"trace": trace}).report
    assert (r.trace_id, r.span_id) == ("a" * 32, "b" * 16)
    assert report(message="m", contexts={"trace": {"trace_id": "nothex"}}).report.trace_id == ""


def test_request_url_and_method_become_attributes() -> None:
    r = report(message="m", request={"url": "https://x.example/p", "method": "POST", "query_string": "a=1"}).report
    assert r.attributes["request"] == {"url": "https://x.example/p?a=1", "method": "POST"}
    pairs = report(message="m", request={"url": "https://x.example/p", "query_string": [["k", "v"]]}).report
    assert pairs.attributes["request"]["url"] == "https://x.example/p?k=v"


def test_breadcrumbs_become_client_log_lines() -> None:
    crumbs = {
        "values": [
            {"timestamp": 1700000000.5, "level": "info", "category": "app", "message": "loaded cart"},
            {
                "timestamp": "2023-11-14T22:13:21.123456Z",
                "category": "http",
                "data": {"url": "/pay", "status_code": 502},
            },
        ]
    }
    lines = report(message="m", breadcrumbs=crumbs).report.breadcrumbs
    assert [(x.time, x.level, x.message, x.collector) for x in lines] == [
        (1_700_000_000_500_000, "info", "loaded cart", CLIENT_LOG_COLLECTOR),
        (1_700_000_001_123_456, "info", "url=/pay status_code=502", CLIENT_LOG_COLLECTOR),
    ]
    assert lines[0].labels == {"category": "app"}
    assert lines[1].labels == {"category": "http", "data.url": "/pay", "data.status_code": "502"}


def test_event_id_is_the_request_id_and_the_reply_id() -> None:
    mapped = report(message="m")
    assert mapped.event_id == EVENT_ID and mapped.request_id == f"sentry:42:{EVENT_ID}"
    dashed = event_report({"event_id": "9EC79C33-EC99-42AB-8353-589FCB2E04DC", "message": "m"}, "42", LIMITS)
    assert dashed.event_id == EVENT_ID
    with pytest.raises(InvalidArgument, match=r"event\.event_id"):
        event_report({"event_id": "nope", "message": "m"}, "42", LIMITS)


def test_message_events_and_the_resource_rule() -> None:
    assert report(message="plain").report.message == "plain"
    assert report(logentry={"message": "fmt %s", "formatted": "fmt x"}).report.message == "fmt x"
    assert report(message={"formatted": "as object"}).report.message == "as object"
    r = report(message="m").report
    assert (r.resource_id, r.service, r.error_type) == ("sentry-project-42", "sentry-project-42", "")
    tagged = report(message="m", tags={"service": "checkout"}).report
    assert (tagged.resource_id, tagged.service) == ("checkout", "checkout")
    assert report(message="m", tags={"service": "a", "resource_id": "pod-1"}).report.resource_id == "pod-1"


def test_timestamp_gives_occurred_at() -> None:
    assert report(message="m", timestamp=1700000000.25).report.occurred_at == 1_700_000_000_250_000
    assert report(message="m").report.occurred_at == 1_000  # the receive time


def test_custom_fingerprint_is_used_and_the_default_one_is_not() -> None:
    assert report(message="m", fingerprint=["db", "timeout"]).report.fingerprint == ["db", "timeout"]
    assert report(message="m", fingerprint=["{{ default }}", "x"]).report.fingerprint == []


# --- envelopes -----------------------------------------------------------------------------------


def test_envelope_items_with_and_without_length() -> None:
    event = json.dumps({"message": "hi\nthere"}).encode()  # JSON escapes the newline
    body = b'{"event_id":"%s"}\n{"type":"event","length":%d}\n%s\n{"type":"session"}\n{"sid":"x"}\n' % (
        EVENT_ID.encode(),
        len(event),
        event,
    )
    env = parse_envelope(body)
    assert env.headers == {"event_id": EVENT_ID}
    assert [(i.type, i.payload) for i in env.items] == [("event", event), ("session", b'{"sid":"x"}')]
    attachment = b'{}\n{"type":"attachment","length":3}\na\nb\n'  # a payload with a newline inside
    assert parse_envelope(attachment).items[0].payload == b"a\nb"
    assert parse_envelope(b'{}\n{"type":"event","length":2}\n{}').items[0].payload == b"{}"  # no final newline


@pytest.mark.parametrize(
    ("body", "field"),
    [
        (b"", "envelope"),
        (b"not json\n", "envelope.header"),
        (b"[1]\n", "envelope.header"),
        (b'{}\n{"type":"event","length":500}\n{}\n', "envelope.items[0].header.length"),
        (b'{}\n{"type":"event","length":1}\n{}\n', "envelope.items[0].header.length"),
        (b'{}\n{"type":"event","length":-1}\n{}\n', "envelope.items[0].header.length"),
        (b'{}\n{"type":"event","length":"2"}\n{}\n', "envelope.items[0].header.length"),
        (b'{}\n{"length":2}\n{}\n', "envelope.items[0].header.type"),
        (b"{}\n{oops\n", "envelope.items[0].header"),
    ],
)
def test_bad_envelopes_name_the_problem(body: bytes, field: str) -> None:
    with pytest.raises(InvalidArgument) as info:
        parse_envelope(body)
    assert info.value.violations[0].field == field
