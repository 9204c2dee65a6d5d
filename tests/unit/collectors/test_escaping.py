"""The escaping helpers: every hostile character comes back as itself once the target language
reads the literal."""

from __future__ import annotations

import ast
import json

import pytest

from errorreplay_server.collectors.escaping import (
    check_kql_identifier,
    check_label_name,
    kql_string,
    label_matcher,
    logql_string,
    normalise_trace_id,
    path_segment,
    promql_string,
)


@pytest.mark.parametrize(
    ("value", "literal"),
    [
        ("api-1", '"api-1"'),
        ('a"b', '"a\\"b"'),
        ("a\\b", '"a\\\\b"'),
        ("a\nb", '"a\\nb"'),
        ("a\rb\tc", '"a\\rb\\tc"'),
        ("}|'", '"}|\'"'),
        ("\x00\x1b\x7f\u2028", '"\\u0000\\u001b\\u007f\\u2028"'),
        ("ünï", '"ünï"'),
    ],
)
def test_promql_string_literals(value: str, literal: str) -> None:
    assert promql_string(value) == literal
    assert logql_string(value) == literal
    # Go's double-quoted strings read back like JSON strings for these escapes.
    assert json.loads(literal) == value


@pytest.mark.parametrize("value", ['x"}) or vector(1) #', "\\", "\n\r\t", "'", "|", "}{"])
def test_promql_literal_never_ends_early(value: str) -> None:
    literal = promql_string(value)
    body = literal[1:-1]
    # An unescaped quote would close the literal: after removing escape pairs none may remain.
    stripped = body.replace("\\\\", "").replace('\\"', "")
    assert '"' not in stripped
    assert "\n" not in literal
    assert ast.literal_eval(literal) == value  # Python reads these escapes the same way


def test_label_matcher_is_an_equality_matcher() -> None:
    assert label_matcher("resource_id", 'a|b.*"') == 'resource_id="a|b.*\\""'


@pytest.mark.parametrize("name", ["", "1abc", "a-b", "a.b", 'a"', "a}", "a b"])
def test_bad_label_names_are_refused(name: str) -> None:
    with pytest.raises(ValueError):
        check_label_name(name)


@pytest.mark.parametrize(
    ("value", "literal"),
    [
        ("AppRole", '"AppRole"'),
        ('a"b', '"a\\"b"'),
        ("a\\b", '"a\\\\b"'),
        ("a\nb\r", '"a\\nb\\r"'),
        ("it's | take 1", '"it\'s | take 1"'),
        ("\x01", '"\\u0001"'),
    ],
)
def test_kql_string_literals(value: str, literal: str) -> None:
    assert kql_string(value) == literal
    assert json.loads(literal) == value


@pytest.mark.parametrize("name", ["AppTraces", "_ResourceId", "Col_2"])
def test_kql_identifiers(name: str) -> None:
    assert check_kql_identifier(name) == name


@pytest.mark.parametrize("name", ["App Traces", "T | take 1", "['x']", "a.b", "", "1x"])
def test_bad_kql_identifiers_are_refused(name: str) -> None:
    with pytest.raises(ValueError):
        check_kql_identifier(name)


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("4BF92F3577B34DA6A3CE929D0E0E4736", "4bf92f3577b34da6a3ce929d0e0e4736"),
        ("00f067aa0ba902b7", "00f067aa0ba902b7"),
        (" abc ", "abc"),
        ("", None),
        ("../../api/search", None),
        ("abc?x=1", None),
        ("abc/def", None),
        ("g" * 32, None),
        ("a" * 33, None),
        ('a"b', None),
        ("ab\ncd", None),
    ],
)
def test_trace_ids_must_be_hex(value: str, expected: str | None) -> None:
    assert normalise_trace_id(value) == expected


def test_path_segment_escapes_separators() -> None:
    assert path_segment("a/b?c#d e") == "a%2Fb%3Fc%23d%20e"
    assert path_segment("logs-*,other", safe=",*") == "logs-*,other"
