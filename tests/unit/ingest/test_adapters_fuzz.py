"""Whatever JSON a client sends, the adapters either map it or refuse it with INVALID_ARGUMENT:
never another exception (which the HTTP listener would have to answer with a 500)."""

from __future__ import annotations

import contextlib
import json

from hypothesis import given, settings
from hypothesis import strategies as st

from errorreplay_server.domain.errors import InvalidArgument
from errorreplay_server.ingest.alertmanager import parse_notification
from errorreplay_server.ingest.sentry import event_report, parse_envelope
from errorreplay_server.settings import Limits

LIMITS = Limits()
scalars = st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=20)
json_values = st.recursive(
    scalars,
    lambda children: st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=10), children, max_size=4),
    max_leaves=20,
)
EVENT_KEYS = [
    "event_id", "timestamp", "level", "message", "logentry", "exception", "tags", "server_name", "release",
    "environment", "contexts", "request", "breadcrumbs", "fingerprint", "sdk", "platform",
]  # fmt: skip
ALERT_KEYS = ["status", "labels", "annotations", "startsAt", "endsAt", "generatorURL", "fingerprint"]


def shaped(keys: list[str]) -> st.SearchStrategy[dict[str, object]]:
    return st.dictionaries(st.sampled_from(keys), json_values, max_size=len(keys))


@settings(max_examples=300, deadline=None)
@given(shaped(EVENT_KEYS))
def test_any_event_maps_or_is_invalid(event: dict[str, object]) -> None:
    try:
        mapped = event_report(event, "1", LIMITS, now=1)
    except InvalidArgument:
        return
    assert mapped.report.message


@settings(max_examples=300, deadline=None)
@given(shaped(ALERT_KEYS), json_values)
def test_any_notification_maps_or_is_invalid(alert: dict[str, object], other: object) -> None:
    for payload in ({"version": "4", "alerts": [alert]}, other):
        with contextlib.suppress(InvalidArgument):
            parse_notification(payload, LIMITS, ("service",), 1)


@settings(max_examples=300, deadline=None)
@given(st.lists(st.binary(max_size=40) | json_values.map(lambda v: json.dumps(v).encode()), max_size=6))
def test_any_envelope_bytes_parse_or_are_invalid(lines: list[bytes]) -> None:
    with contextlib.suppress(InvalidArgument):
        parse_envelope(b"\n".join(lines))
