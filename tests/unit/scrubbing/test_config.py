"""Configuration: extra patterns (environment file or code), disabled kinds, validation."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from errorreplay_server.capture.scrubbing import (
    DEFAULT_KINDS,
    ENV_DISABLED_KINDS,
    ENV_EXTRA_PATTERNS,
    ENV_SCRUB_PII,
    PII_KINDS,
    SecretKeyRule,
    SecretPattern,
    SecretScrubber,
    parse_patterns,
)

JWT = "eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiIxMjM0NTY3ODkwIn0.c2lnbmF0dXJlLXNpZ25hdHVyZQ"
SAMPLE = f"password=hunter2 card 4111111111111111 jwt {JWT} ref ITK-0123456789abcdef emp EMP-123456"


def _write(tmp_path: Path, text: str) -> str:
    path = tmp_path / "patterns.tsv"
    path.write_text(text, encoding="utf-8")
    return str(path)


def test_from_env_without_settings_is_the_default() -> None:
    scrubber = SecretScrubber.from_env({})
    assert scrubber.kinds == DEFAULT_KINDS | PII_KINDS
    assert scrubber.scrub_text(SAMPLE) == SecretScrubber(pii=True).scrub_text(SAMPLE)


PII_SAMPLE = "user alice@example.com ssn 123-45-6789 password=hunter2"


def test_pii_is_scrubbed_by_default() -> None:
    assert SecretScrubber.from_env({}).scrub_text(PII_SAMPLE) == (
        "user [REDACTED:email] ssn [REDACTED:national_id] password=[REDACTED:password]"
    )


@pytest.mark.parametrize("value", ["off", "OFF", "false", "0", " no "])
def test_pii_scrubbing_can_be_turned_off(value: str) -> None:
    scrubber = SecretScrubber.from_env({ENV_SCRUB_PII: value})
    assert scrubber.scrub_text(PII_SAMPLE) == PII_SAMPLE.replace("hunter2", "[REDACTED:password]")
    assert not PII_KINDS & scrubber.kinds


def test_pii_setting_rejects_other_words() -> None:
    with pytest.raises(ValueError, match=ENV_SCRUB_PII):
        SecretScrubber.from_env({ENV_SCRUB_PII: "maybe"})


def test_extra_patterns_file(tmp_path: Path) -> None:
    path = _write(
        tmp_path,
        "# internal credentials\n\ninternal_token\tref (?P<secret>ITK-[0-9a-f]{16})\nemployee_id\t(?i)emp-\\d{6}\n",
    )
    scrubber = SecretScrubber.from_env({ENV_EXTRA_PATTERNS: path})
    assert scrubber.scrub_text(SAMPLE) == (
        "password=[REDACTED:password] card [REDACTED:credit_card] jwt [REDACTED:jwt] "
        "ref [REDACTED:internal_token] emp [REDACTED:employee_id]"
    )
    assert {"internal_token", "employee_id"} <= scrubber.kinds


def test_disabled_kinds(tmp_path: Path) -> None:
    scrubber = SecretScrubber.from_env({ENV_DISABLED_KINDS: " credit_card, jwt ,"})
    assert scrubber.scrub_text(SAMPLE) == SAMPLE.replace("hunter2", "[REDACTED:password]")
    assert "credit_card" not in scrubber.kinds
    assert "jwt" not in scrubber.kinds


def test_disabled_kind_applies_to_dict_keys() -> None:
    scrubber = SecretScrubber(disabled_kinds=["password"])
    assert scrubber.scrub_value({"password": "hunter2", "token": "t"}) == {
        "password": "hunter2",
        "token": "[REDACTED:token]",
    }


def test_extra_kind_can_be_disabled(tmp_path: Path) -> None:
    path = _write(tmp_path, "employee_id\tEMP-\\d{6}\n")
    scrubber = SecretScrubber.from_env({ENV_EXTRA_PATTERNS: path, ENV_DISABLED_KINDS: "employee_id"})
    assert "EMP-123456" in scrubber.scrub_text(SAMPLE)


def test_unknown_disabled_kind_is_an_error() -> None:
    with pytest.raises(ValueError, match="credit_cards"):
        SecretScrubber.from_env({ENV_DISABLED_KINDS: "credit_cards"})


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("ok\tabc\nno tab here\n", r":2: expected <kind><TAB><regex>"),
        ("bad\t(unclosed\n", r":1: bad regex for 'bad'"),
        ("Bad Kind\tabc\n", r":1: secret kind 'Bad Kind'"),
        ("empty\t\n", r":1: expected"),
    ],
)
def test_bad_pattern_file_is_an_error(tmp_path: Path, text: str, message: str) -> None:
    path = _write(tmp_path, text)
    with pytest.raises(ValueError, match=re.escape(path) + message):
        SecretScrubber.from_env({ENV_EXTRA_PATTERNS: path})


def test_missing_pattern_file_is_an_error(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="cannot read"):
        SecretScrubber.from_env({ENV_EXTRA_PATTERNS: str(tmp_path / "absent.tsv")})


def test_parse_patterns_uses_the_secret_group() -> None:
    whole, grouped = parse_patterns("a\tx-\\d+\nb\tkey=(?P<secret>\\w+)")
    assert whole.group is None
    assert grouped.group == "secret"
    assert SecretScrubber([whole, grouped]).scrub_text("x-12 key=abc") == "[REDACTED:a] key=[REDACTED:b]"


def test_programmatic_patterns() -> None:
    extra = SecretPattern("ticket", re.compile(r"TICKET-(\d{4})"), group=1, keywords=("ticket-",))
    scrubber = SecretScrubber(extra_patterns=[extra])
    assert scrubber.scrub_text("see TICKET-1234 and password=x") == (
        "see TICKET-[REDACTED:ticket] and password=[REDACTED:password]"
    )
    only = SecretScrubber([extra], key_rules=[])
    assert only.scrub_text("see TICKET-1234 and password=x") == "see TICKET-[REDACTED:ticket] and password=x"
    assert only.scrub_value({"password": "x"}) == {"password": "x"}


def test_programmatic_key_rules() -> None:
    rule = SecretKeyRule("session", re.compile(r"(?i)session_?id\Z"))
    scrubber = SecretScrubber(key_rules=[rule])
    assert scrubber.scrub_value({"SessionId": "abc", "password": "x"}) == {
        "SessionId": "[REDACTED:session]",
        "password": "x",
    }


def test_validator_can_reject_a_match() -> None:
    even = SecretPattern("even", re.compile(r"\d+"), validator=lambda s: int(s) % 2 == 0)
    assert SecretScrubber([even], key_rules=[]).scrub_text("1 2 3 4") == "1 [REDACTED:even] 3 [REDACTED:even]"


@pytest.mark.parametrize(
    "make",
    [
        lambda: SecretPattern("x", re.compile("a"), group=2),
        lambda: SecretPattern("x", re.compile("(?P<s>a)"), group="secret"),
        lambda: SecretPattern("X", re.compile("a")),
        lambda: SecretPattern("x", re.compile("a"), keywords=("A",)),
        lambda: SecretPattern("x", re.compile("a"), keywords=("",)),
        # A Unicode case-insensitive regex can match text the keyword test would miss.
        lambda: SecretPattern("x", re.compile("pass", re.IGNORECASE), keywords=("pass",)),
        lambda: SecretPattern("x", re.compile("(?i:pass)"), keywords=("pass",)),
        lambda: SecretKeyRule("x y", re.compile("a")),
    ],
)
def test_invalid_definitions_are_rejected(make: object) -> None:
    with pytest.raises(ValueError):
        make()  # type: ignore[operator]


def test_case_insensitive_ascii_pattern_may_have_keywords() -> None:
    p = SecretPattern("x", re.compile("pass", re.IGNORECASE | re.ASCII), keywords=("pass",))
    assert SecretScrubber([p], key_rules=[]).scrub_text("PASS") == "[REDACTED:x]"
