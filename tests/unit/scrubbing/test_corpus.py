"""Every secret shape in the corpus is masked exactly, and its near-miss is left alone."""

from __future__ import annotations

import dataclasses

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from errorreplay_server.capture.scrubbing import DEFAULT_KINDS, DEFAULT_PATTERNS, SecretScrubber, mask_for

from .corpus import B64, EMAILS_IN_SHAPES, NEAR_MISSES, PII_SHAPES, SHAPES, Shape, fake

SCRUBBER = SecretScrubber()
# The same patterns with the keyword prefilter off: every pattern scans every string.
NO_PREFILTER = SecretScrubber([dataclasses.replace(p, keywords=()) for p in DEFAULT_PATTERNS])

# Kinds that only dict keys can produce (tested in test_values).
KEY_ONLY_KINDS = {"session", "pin", "otp"}
# A secret chunk this long must not appear in the output (unless the text around it holds it).
LEAK_CHUNK = 8


def shape_id(shape: Shape) -> str:
    return shape.id


def test_corpus_covers_at_least_30_shapes_and_kinds() -> None:
    assert len(SHAPES) >= 30
    assert len({s.kind for s in SHAPES}) >= 30
    assert len({s.id for s in SHAPES}) == len(SHAPES)


def test_every_default_kind_has_a_corpus_row() -> None:
    assert {s.kind for s in SHAPES} >= DEFAULT_KINDS - KEY_ONLY_KINDS


def test_every_row_kind_is_a_default_kind() -> None:
    assert {s.kind for s in SHAPES} <= DEFAULT_KINDS


@pytest.mark.parametrize("shape", SHAPES, ids=shape_id)
def test_secret_is_masked(shape: Shape) -> None:
    assert SCRUBBER.scrub_text(shape.text) == shape.expected


@pytest.mark.parametrize("shape", SHAPES, ids=shape_id)
def test_near_miss_is_unchanged(shape: Shape) -> None:
    assert SCRUBBER.scrub_text(shape.near_miss) == shape.near_miss


PII_SCRUBBER = SecretScrubber(pii=True)


@pytest.mark.parametrize("shape", PII_SHAPES, ids=shape_id)
def test_pii_is_masked_when_on_and_kept_when_off(shape: Shape) -> None:
    assert PII_SCRUBBER.scrub_text(shape.text) == shape.expected
    assert PII_SCRUBBER.scrub_text(shape.near_miss) == shape.near_miss
    assert SCRUBBER.scrub_text(shape.text) == shape.text


@pytest.mark.parametrize("shape", SHAPES, ids=shape_id)
def test_pii_patterns_leave_every_secret_row_as_it_was(shape: Shape) -> None:
    # A secret wins over an address it overlaps (``user:pw@host`` stays a URL password).
    def and_emails(text: str) -> str:
        for email in EMAILS_IN_SHAPES:
            text = text.replace(email, "[REDACTED:email]")
        return text

    assert PII_SCRUBBER.scrub_text(shape.text) == and_emails(SCRUBBER.scrub_text(shape.text))
    assert PII_SCRUBBER.scrub_text(shape.near_miss) == and_emails(SCRUBBER.scrub_text(shape.near_miss))


@pytest.mark.parametrize("text", NEAR_MISSES)
def test_listed_near_misses_are_unchanged(text: str) -> None:
    assert SCRUBBER.scrub_text(text) == text


@pytest.mark.parametrize("shape", SHAPES, ids=shape_id)
def test_output_holds_no_part_of_the_secret(shape: Shape) -> None:
    out = SCRUBBER.scrub_text(shape.text)
    context = shape.before + shape.after + mask_for(shape.kind)
    size = min(LEAK_CHUNK, len(shape.secret))
    chunks = {shape.secret[i : i + size] for i in range(len(shape.secret) - size + 1)}
    leaked = sorted(c for c in chunks if c not in context and c in out)
    assert not leaked


@pytest.mark.parametrize("shape", SHAPES, ids=shape_id)
def test_scrubbing_is_idempotent(shape: Shape) -> None:
    assert SCRUBBER.scrub_text(shape.expected) == shape.expected


@pytest.mark.parametrize("shape", SHAPES, ids=shape_id)
def test_prefilter_does_not_change_the_output(shape: Shape) -> None:
    for text in (shape.text, shape.near_miss, shape.text.upper(), shape.text.lower()):
        assert NO_PREFILTER.scrub_text(text) == SCRUBBER.scrub_text(text)


def test_all_shapes_in_one_text() -> None:
    # A key cut off before its END line is masked to the end of the text, so it goes last.
    shapes = sorted(SHAPES, key=lambda s: s.id == "pem-truncated")
    sep = "\n--- next ---\n"
    text = sep.join(s.text for s in shapes)
    assert SCRUBBER.scrub_text(text) == sep.join(s.expected for s in shapes)


EXPLICIT = [
    ("password=hunter2", "password=[REDACTED:password]"),
    ('{"password": "hunter2"}', '{"password": "[REDACTED:password]"}'),
    ("db_password: 'hunter 2'", "db_password: '[REDACTED:password]'"),
    (
        "postgres://app:s3cret@db.internal:5432/orders?sslmode=require",
        "postgres://app:[REDACTED:url_password]@db.internal:5432/orders?sslmode=require",
    ),
    ("Authorization: Bearer abc123def456ghi789", "Authorization: Bearer [REDACTED:bearer_token]"),
    ("card 4111-1111-1111-1111 declined", "card [REDACTED:credit_card] declined"),
    ("id 4111-1111-1111-1112 declined", "id 4111-1111-1111-1112 declined"),
    ("key AKIAIOSFODNN7EXAMPLE leaked", "key [REDACTED:aws_access_key_id] leaked"),
    ("api_key=" + "sk-" + "a1B2" * 12, "api_key=[REDACTED:openai_api_key]"),
    ("login ok token=&user=bob", "login ok token=&user=bob"),
    # After "key= " the next word is taken for the value: masking too much beats leaking.
    ("login ok token= user=bob", "login ok token= [REDACTED:token]"),
    ("PWD=/srv/app MYSQL_PWD=x", "PWD=/srv/app MYSQL_PWD=[REDACTED:password]"),
    ('    if password == "hunter2":', '    if password == "[REDACTED:password]":'),
]


@pytest.mark.parametrize(("text", "expected"), EXPLICIT)
def test_explicit_examples(text: str, expected: str) -> None:
    assert SCRUBBER.scrub_text(text) == expected


SAME_SHAPE_SECRETS = [
    ("login password=", "hunter2", "correct-horse", " ok"),
    ("card ", "4111111111111111", "5555555555554444", "."),
    ("GITHUB_TOKEN=", "ghp_" + fake("abcdef0123456789", 36, "a"), "ghp_" + fake("ABCDEF0123", 36, "b"), ""),
    ("https://u:", "one", "two-two", "@h/"),
]


@pytest.mark.parametrize(("before", "one", "two", "after"), SAME_SHAPE_SECRETS)
def test_masking_is_deterministic_and_independent_of_the_secret(before: str, one: str, two: str, after: str) -> None:
    first = SCRUBBER.scrub_text(before + one + after)
    assert first == SCRUBBER.scrub_text(before + one + after)
    assert first == SecretScrubber().scrub_text(before + one + after)
    assert first == SCRUBBER.scrub_text(before + two + after)
    assert one not in first and two not in first


def test_redactions_report_kind_and_span() -> None:
    text = "user=bob password=hunter2 card 4111111111111111"
    found = SCRUBBER.redactions(text)
    assert [(text[r.start : r.end], r.kind) for r in found] == [
        ("hunter2", "password"),
        ("4111111111111111", "credit_card"),
    ]


def test_overlapping_secrets_become_one_mask_of_the_first_kind() -> None:
    jwt = next(s.secret for s in SHAPES if s.kind == "jwt")
    # The bearer token and the JWT cover the same span; JWT is listed first.
    assert SCRUBBER.scrub_text("Authorization: Bearer " + jwt) == "Authorization: Bearer [REDACTED:jwt]"
    # The password value holds a URL with its own password: one mask covers both.
    assert SCRUBBER.scrub_text('"password": "redis://:pw@h"') == '"password": "[REDACTED:password]"'


def test_secrets_glued_together_are_all_masked() -> None:
    # The second token's lookbehind fails next to the first one until that one is masked.
    age = next(s.secret for s in SHAPES if s.kind == "age_secret_key")
    shopify = next(s.secret for s in SHAPES if s.kind == "shopify_token")
    assert SCRUBBER.scrub_text(age + shopify) == "[REDACTED:age_secret_key][REDACTED:shopify_token]"


# --- properties -------------------------------------------------------------------------------

FRAGMENTS = sorted(
    {part for s in SHAPES for part in (s.before, s.secret, s.after, s.near_miss) if part}
    | {"password", "=", "==", ":", " ", '"', "'", "\n", "--", "://", "@", "Bearer ", "4111", "[REDACTED:x]"}
)
fragment_text = st.lists(st.one_of(st.sampled_from(FRAGMENTS), st.text(max_size=6)), max_size=8).map("".join)


@settings(max_examples=300, deadline=None)
@given(fragment_text, st.sampled_from(["keep", "upper", "lower"]))
def test_prefilter_is_safe_on_mixed_text(text: str, case: str) -> None:
    text = {"keep": text, "upper": text.upper(), "lower": text.lower()}[case]
    assert NO_PREFILTER.scrub_text(text) == SCRUBBER.scrub_text(text)


@settings(max_examples=300, deadline=None)
@given(fragment_text)
def test_scrubbing_is_idempotent_on_mixed_text(text: str) -> None:
    once = SCRUBBER.scrub_text(text)
    assert SCRUBBER.scrub_text(once) == once


# --- hostile input ----------------------------------------------------------------------------
# Pathological strings for backtracking regexes. The scrubber is linear, so each is quick; the
# suite timeout is the only clock here.

HOSTILE = [
    "sk-" * 20_000,
    "a_" * 25_000 + "password=x",
    "-----BEGIN PRIVATE KEY-----" * 2_000,
    "4" * 50_000,
    "4111 " * 12_000,
    "password=" * 6_000,
    "x://" * 15_000,
    "Bearer " * 8_000,
    'password="' + "a" * 50_000,
    "Authorization: " * 4_000,
    "--password " * 5_000,
    "eyJ" * 15_000 + ".",
    "abc8Q~" * 10_000,
    "-----BEGIN RSA PRIVATE KEY-----\n" + fake(B64, 50_000, "long"),
    "mysql " * 10_000,
    "mysql -u " + "x" * 50_000,
    "Cookie: " * 8_000,
    "cookie: " + "a" * 50_000,
    "a" * 50_000 + "@",
    "a@" * 25_000,
    "AKIAIOSFODNN7EXAMPLE " * 2_500,
    "secret_key " * 5_000,
    "://" + "a1" * 25_000 + "@",
    "://u:" + "1/" * 25_000,
    "123-45-" * 7_000,
]


@pytest.mark.parametrize("text", HOSTILE, ids=lambda t: repr(t[:16]))
def test_hostile_input_is_scrubbed(text: str) -> None:
    out = SCRUBBER.scrub_text(text)
    assert isinstance(out, str)
    assert SCRUBBER.scrub_text(out) == out
