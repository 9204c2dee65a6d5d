"""What the JetStream bus puts on the wire (streaming/jetstream.py) and its settings."""

from __future__ import annotations

from dataclasses import replace

import pytest

from errorreplay_server.domain.model import CollectionState, CollectorStatus, ErrorContext, LogLine
from errorreplay_server.settings import Settings
from errorreplay_server.streaming.jetstream import decode_snapshot, encode_snapshot, error_subject, subject_token
from tests.factories import new_error


@pytest.mark.parametrize(
    ("value", "token"),
    [
        ("", "_"),
        ("payments-api_2", "payments-api_2"),
        ("a.b", "a%2Eb"),
        ("*", "%2A"),
        (">", "%3E"),
        ("prod eu", "prod%20eu"),
        ("100%", "100%25"),
        ("café", "caf%C3%A9"),
    ],
)
def test_a_subject_token_never_holds_a_separator_or_a_wildcard(value: str, token: str) -> None:
    assert subject_token(value) == token


def test_the_subject_has_exactly_four_tokens_whatever_the_resource() -> None:
    snapshot = new_error(resource_id="db.*.>", environment="prod.eu").snapshot
    subject = error_subject("errorreplay.errors", snapshot)
    assert subject == "errorreplay.errors.prod%2Eeu.high.db%2E%2A%2E%3E"
    assert len(subject.split(".")) == 5 and "*" not in subject and ">" not in subject


def test_a_snapshot_survives_the_wire() -> None:
    snapshot = new_error(
        resource_id="api",
        environment="prod",
        tags={"run": "x"},
        attributes={"n": 1, "nested": {"a": [1, 2]}},
        trace_id="t1",
        correlation_id="c1",
        request_id="req-1",
    ).snapshot
    snapshot = replace(
        snapshot,
        idempotency_scope="key-a",
        context=ErrorContext(
            logs=[LogLine(time=5, level="error", message="boom", collector="client", labels={"k": "v"})],
            statuses=[CollectorStatus("prometheus", CollectionState.PENDING, "", 0.0, 0)],
        ),
    )
    assert decode_snapshot(encode_snapshot(snapshot)) == snapshot


def test_nats_is_off_unless_a_url_is_set() -> None:
    assert not Settings.from_env({}).nats.enabled
    settings = Settings.from_env(
        {
            "ERRORREPLAY_NATS_URL": "nats://a:4222, nats://b:4222",
            "ERRORREPLAY_NATS_STREAM_MAX_AGE_SECONDS": "3600",
            "ERRORREPLAY_NATS_JOB_ACK_WAIT_SECONDS": "10",
        }
    ).nats
    assert settings.servers == ["nats://a:4222", "nats://b:4222"]
    assert settings.stream_max_age_seconds == 3600 and settings.job_ack_wait_seconds == 10


@pytest.mark.parametrize(
    ("env", "message"),
    [
        ({"ERRORREPLAY_NATS_URL": "localhost:4222"}, 'ERRORREPLAY_NATS_URL: "localhost:4222" is not nats://'),
        (
            {"ERRORREPLAY_NATS_URL": "nats://a:1", "ERRORREPLAY_NATS_STREAM_MAX_BYTES": "0"},
            "MAX_BYTES: .* not an integer >= 1",
        ),
        (
            {"ERRORREPLAY_NATS_URL": "nats://a:1", "ERRORREPLAY_NATS_JOB_MAX_DELIVER": "1"},
            "MAX_DELIVER: .* not an integer >= 2",
        ),
        ({"ERRORREPLAY_NATS_JOB_ACK_WAIT_SECONDS": "soon"}, "ERRORREPLAY_NATS_JOB_ACK_WAIT_SECONDS: .* not a duration"),
    ],
)
def test_bad_nats_settings_are_refused_by_name(env: dict[str, str], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        Settings.from_env(env)
