"""Signed page tokens and stream cursors: what verifies, and everything that must not."""

from __future__ import annotations

import base64
import json

import pytest

from errorreplay_server.domain.errors import InvalidArgument
from errorreplay_server.store.pagination import PageTokens, StreamCursors, new_key, query_digest

KEY = new_key()
DIGEST = query_digest("search", 1)


def _unsigned(doc: object) -> str:
    """A token as the server made them before they were signed: base64 of the JSON."""
    return base64.urlsafe_b64encode(json.dumps(doc).encode()).decode().rstrip("=")


def test_page_token_round_trips() -> None:
    tokens = PageTokens(KEY)
    token = tokens.encode(DIGEST, [1_760_000_000_000_000, 42])
    assert tokens.decode(token, DIGEST, (int, int)) == [1_760_000_000_000_000, 42]
    assert tokens.decode("", DIGEST, (int, int)) is None
    assert PageTokens(KEY).decode(tokens.encode(DIGEST, [3, "grp_é"]), DIGEST, (int, str)) == [3, "grp_é"]


@pytest.mark.parametrize(
    "token",
    [
        _unsigned({"q": DIGEST, "k": [9223372036854775808, 0]}),
        _unsigned({"q": DIGEST, "k": [0, 1]}),  # well-formed but unsigned
        "garbage",
        "e30",
        "²",
        "x" * 10_000,
        "[" * 5000,
    ],
)
def test_unsigned_or_garbled_tokens_are_invalid(token: str) -> None:
    with pytest.raises(InvalidArgument) as info:
        PageTokens(KEY).decode(token, DIGEST, (int, int))
    assert [v.field for v in info.value.violations] == ["page_token"]


@pytest.mark.parametrize(
    ("key", "types"),
    [
        ([2**63, 0], (int, int)),
        ([-(2**63) - 1, 0], (int, int)),
        ([True, 0], (int, int)),
        ([1.5, 0], (int, int)),
        ([0, "\ud800"], (int, str)),
        ([0, 1], (int, str)),
        ([0], (int, int)),
    ],
)
def test_signed_tokens_with_values_out_of_type_or_range_are_invalid(key: list[object], types: tuple[type, ...]) -> None:
    tokens = PageTokens(KEY)
    with pytest.raises(InvalidArgument):
        tokens.decode(tokens.encode(DIGEST, key), DIGEST, types)


def test_tokens_of_another_database_or_query_or_tampered_are_invalid() -> None:
    token = PageTokens(KEY).encode(DIGEST, [1, 2])
    for bad_token, digest in (
        (PageTokens(new_key()).encode(DIGEST, [1, 2]), DIGEST),
        (token, query_digest("other")),
        (token[:-3] + ("A" if token[-3] != "A" else "B") + token[-2:], DIGEST),
    ):
        with pytest.raises(InvalidArgument):
            PageTokens(KEY).decode(bad_token, digest, (int, int))


def test_cursors_are_short_signed_and_checked() -> None:
    cursors = StreamCursors(KEY)
    cursor = cursors.encode(1_760_000_000_123_456)
    assert cursor.startswith("c") and len(cursor) <= 32
    assert cursors.decode(cursor) == 1_760_000_000_123_456
    assert cursors.decode(cursors.encode(0)) == 0
    for bad in (
        "c1760000000123456",  # the unsigned form of earlier versions
        "c99999999999999999999999",
        "c9223372036854775807",
        "c²",
        "c",
        "",
        "err_0123",
        StreamCursors(new_key()).encode(5),
        cursor[:-1],
        "c" + "A" * 100,
    ):
        assert cursors.decode(bad) is None, bad
