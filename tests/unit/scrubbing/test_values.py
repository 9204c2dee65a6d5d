"""scrub_value: nested structures, keys that name secrets, the depth limit, scalar types."""

from __future__ import annotations

import copy
from typing import Any

import pytest

from errorreplay_server.capture.scrubbing import DEPTH_LIMIT_MASK, MAX_SCRUB_DEPTH, SecretScrubber

SCRUBBER = SecretScrubber()
GHP = "ghp_" + "Ab1" * 12
JWT = "eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiIxMjM0NTY3ODkwIn0.c2lnbmF0dXJlLXNpZ25hdHVyZQ"


def test_nested_structures_are_scrubbed() -> None:
    value = {
        "request": {
            "headers": [("Accept", "*/*"), ("X-Trace", "t-1")],
            "url": "https://svc:s3cret@api.internal/v1",
            "body": {"items": [{"note": f"call with {GHP}"}, {"card": "4111 1111 1111 1111"}]},
        },
        "count": 3,
        "ratio": 0.5,
        "ok": True,
        "none": None,
    }
    assert SCRUBBER.scrub_value(value) == {
        "request": {
            "headers": [("Accept", "*/*"), ("X-Trace", "t-1")],
            "url": "https://svc:[REDACTED:url_password]@api.internal/v1",
            "body": {"items": [{"note": "call with [REDACTED:github_token]"}, {"card": "[REDACTED:credit_card]"}]},
        },
        "count": 3,
        "ratio": 0.5,
        "ok": True,
        "none": None,
    }


def test_input_is_not_modified() -> None:
    value = {"password": "hunter2", "list": ["password=x", {"token": "y"}]}
    before = copy.deepcopy(value)
    SCRUBBER.scrub_value(value)
    assert value == before


KEY_NAMED: list[tuple[str, Any, Any]] = [
    ("password", "hunter2", "[REDACTED:password]"),
    ("PASSWORD", "hunter2", "[REDACTED:password]"),
    ("db_password", "hunter2", "[REDACTED:password]"),
    ("db.password", "hunter2", "[REDACTED:password]"),
    ("newPassword", "hunter2", "[REDACTED:password]"),
    ("passwd", "hunter2", "[REDACTED:password]"),
    ("pwd", "hunter2", "[REDACTED:password]"),
    ("secret", "s", "[REDACTED:secret]"),
    ("client_secret", "abc", "[REDACTED:secret]"),
    ("clientSecret", "abc", "[REDACTED:secret]"),
    ("SECRET_KEY", "abc", "[REDACTED:secret]"),
    ("token", "abc", "[REDACTED:token]"),
    ("access_token", "abc", "[REDACTED:token]"),
    ("refreshToken", "abc", "[REDACTED:token]"),
    ("api_key", "abc", "[REDACTED:api_key]"),
    ("apikey", "abc", "[REDACTED:api_key]"),
    ("X-Api-Key", "abc", "[REDACTED:api_key]"),
    ("private_key", "abc", "[REDACTED:private_key]"),
    ("aws_secret_access_key", "abc", "[REDACTED:aws_secret_access_key]"),
    ("DD_API_KEY", "abc", "[REDACTED:datadog_api_key]"),
    ("Authorization", "Token abc", "[REDACTED:authorization]"),
    ("Proxy-Authorization", "Basic abc", "[REDACTED:authorization]"),
    ("Cookie", "session=abc", "[REDACTED:cookie]"),
    ("set-cookie", "session=abc; HttpOnly", "[REDACTED:cookie]"),
    # Keys the red team found unmasked (issue 19).
    ("pass", "hunter2", "[REDACTED:password]"),
    ("db_pass", "hunter2", "[REDACTED:password]"),
    ("DB_PASS", "hunter2", "[REDACTED:password]"),
    ("passcode", "482913", "[REDACTED:password]"),
    ("pw", "hunter2", "[REDACTED:password]"),
    ("credentials", "abc", "[REDACTED:credentials]"),
    ("clientSecret", "abc", "[REDACTED:secret]"),
    ("apitoken", "abc", "[REDACTED:token]"),
    ("session", "abc", "[REDACTED:session]"),
    ("session_id", "abc", "[REDACTED:session]"),
    ("sessionId", "abc", "[REDACTED:session]"),
    ("userSession", "abc", "[REDACTED:session]"),
    ("pin", 1234, "[REDACTED:pin]"),
    ("pin_code", "1234", "[REDACTED:pin]"),
    ("otp", "123456", "[REDACTED:otp]"),
    ("OTP", 123456, "[REDACTED:otp]"),
    # Whatever the value holds.
    ("password", 1234, "[REDACTED:password]"),
    ("password", 12.5, "[REDACTED:password]"),
    ("token", {"value": "abc", "exp": 1}, "[REDACTED:token]"),
    ("secret", ["a", "b"], "[REDACTED:secret]"),
    ("token", b"raw", "[REDACTED:token]"),
    # Nothing to hide.
    ("password", "", ""),
    ("password", "   ", "   "),
    ("password", None, None),
    ("password", True, True),
    ("token", "null", "null"),
    ("token", {}, {}),
    ("password", "[REDACTED:password]", "[REDACTED:password]"),
    ("pwd", "/home/app", "/home/app"),
    # Keys that do not name a secret.
    ("password_hint", "first pet", "first pet"),
    ("passwordHint", "first pet", "first pet"),
    ("token_type", "Bearer", "Bearer"),
    ("tokens", 5, 5),
    ("secretary", "bob", "bob"),
    ("keyboard", "qwerty", "qwerty"),
    ("apiKeyVersion", "2", "2"),
    ("passport", "X123", "X123"),
    ("bypass", "on", "on"),
    ("session_count", 3, 3),
    ("sessions", 3, 3),
    ("ping", 12, 12),
    ("spin", 1, 1),
    ("otp_enabled", True, True),
]


@pytest.mark.parametrize("number", [4111111111111111.0, 4111111111111111, 5555555555554444.0])
def test_card_numbers_as_struct_numbers_are_masked(number: float) -> None:
    # A protobuf Struct holds every number as a double, so a card arrives as 4111111111111111.0.
    assert SCRUBBER.scrub_value({"card_number": number, "n": [number]}) == {
        "card_number": "[REDACTED:credit_card]",
        "n": ["[REDACTED:credit_card]"],
    }


@pytest.mark.parametrize("number", [4111111111111112.0, 1732812345678901.0, 4111111111111111.5, 1e300, float("nan")])
def test_other_large_numbers_are_kept(number: float) -> None:
    out = SCRUBBER.scrub_value({"n": number})["n"]
    assert out == number or (out != out and number != number)


@pytest.mark.parametrize(("key", "value", "expected"), KEY_NAMED)
def test_key_named_secret(key: str, value: Any, expected: Any) -> None:
    assert SCRUBBER.scrub_value({key: value}) == {key: expected}


def test_key_named_secrets_in_nested_lists_and_tags() -> None:
    value = {"auth": {"client_secret": "abc", "client_id": "web"}, "users": [{"name": "a", "password": "p"}]}
    assert SCRUBBER.scrub_value(value) == {
        "auth": {"client_secret": "[REDACTED:secret]", "client_id": "web"},
        "users": [{"name": "a", "password": "[REDACTED:password]"}],
    }
    tags = {"env": "prod", "db.password": "hunter2", "note": "token=abc"}
    expected = {"env": "prod", "db.password": "[REDACTED:password]", "note": "token=[REDACTED:token]"}
    assert SCRUBBER.scrub_tags(tags) == expected
    assert SCRUBBER.scrub_value(tags) == expected


def test_secret_key_kind() -> None:
    assert SCRUBBER.secret_key_kind("userPassword") == "password"
    assert SCRUBBER.secret_key_kind("x-auth-token") == "token"
    assert SCRUBBER.secret_key_kind("region") is None


def test_keys_are_scrubbed_as_text() -> None:
    out = SCRUBBER.scrub_value({"postgres://u:pw@h/db": 1, f"via {GHP}": "x"})
    assert out == {"postgres://u:[REDACTED:url_password]@h/db": 1, "via [REDACTED:github_token]": "x"}


def _nest(depth: int, leaf: Any) -> Any:
    value = leaf
    for _ in range(depth):
        value = {"next": value, "note": "password=hunter2"}
    return value


def test_depth_limit_replaces_deeper_containers() -> None:
    out = SCRUBBER.scrub_value(_nest(MAX_SCRUB_DEPTH + 5, ["password=hunter2"]))
    level = out
    for _ in range(MAX_SCRUB_DEPTH):
        assert level["note"] == "password=[REDACTED:password]"
        level = level["next"]
    assert level == DEPTH_LIMIT_MASK
    assert "hunter2" not in repr(out)


def test_depth_limit_keeps_a_structure_at_the_limit() -> None:
    value = _nest(MAX_SCRUB_DEPTH - 1, "token=abc")
    level = SCRUBBER.scrub_value(value)
    for _ in range(MAX_SCRUB_DEPTH - 1):
        level = level["next"]
    assert level == "token=[REDACTED:token]"


def test_very_deep_and_cyclic_values_do_not_recurse_without_bound() -> None:
    deep = _nest(10_000, "x")
    assert SCRUBBER.scrub_value(deep)["next"]["next"]["note"] == "password=[REDACTED:password]"
    cyclic: dict[str, Any] = {"token": ""}
    cyclic["self"] = cyclic
    out = SCRUBBER.scrub_value(cyclic)
    for _ in range(MAX_SCRUB_DEPTH):
        out = out["self"]
    assert out == DEPTH_LIMIT_MASK


def test_max_depth_is_configurable() -> None:
    assert SecretScrubber(max_depth=2).scrub_value({"a": {"b": {"c": "d"}}}) == {"a": {"b": DEPTH_LIMIT_MASK}}
    with pytest.raises(ValueError):
        SecretScrubber(max_depth=0)


def test_scalars() -> None:
    assert SCRUBBER.scrub_value("password=x") == "password=[REDACTED:password]"
    assert SCRUBBER.scrub_value(4111111111111111) == "[REDACTED:credit_card]"
    assert SCRUBBER.scrub_value(4111111111111112) == 4111111111111112
    assert SCRUBBER.scrub_value(1732812345678903) == 1732812345678903
    assert SCRUBBER.scrub_value(42) == 42
    assert SCRUBBER.scrub_value(True) is True
    assert SCRUBBER.scrub_value(None) is None
    assert SCRUBBER.scrub_value(0.4111111111111111) == 0.4111111111111111
    assert SCRUBBER.scrub_value(b"plain bytes") == b"plain bytes"
    assert SCRUBBER.scrub_value(b"password=x") == "password=[REDACTED:password]"


def test_container_types_are_kept() -> None:
    out = SCRUBBER.scrub_value({"t": ("password=x", 1), "s": {"token=y"}, "f": frozenset({"a"})})
    assert out == {"t": ("password=[REDACTED:password]", 1), "s": {"token=[REDACTED:token]"}, "f": frozenset({"a"})}


def test_jwt_in_attribute_list() -> None:
    assert SCRUBBER.scrub_value({"ids": [JWT, "plain"]}) == {"ids": ["[REDACTED:jwt]", "plain"]}


def test_clean_cache_does_not_change_results() -> None:
    scrubber = SecretScrubber()
    for _ in range(3):
        assert scrubber.scrub_value({"env": "prod", "password": "x"}) == {
            "env": "prod",
            "password": "[REDACTED:password]",
        }
        assert scrubber.scrub_text("prod") == "prod"
        assert scrubber.scrub_text("password=x") == "password=[REDACTED:password]"
