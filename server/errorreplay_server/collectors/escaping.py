"""Every user value that goes into a query language or a URL path passes through here.

Values are quoted as string literals of the target language, never spliced in raw; names
(labels, columns, tables) come from configuration and are validated instead of quoted.
"""

from __future__ import annotations

import re
from urllib.parse import quote

_LABEL_NAME = re.compile(r"[a-zA-Z_][a-zA-Z0-9_]*")
_KQL_IDENTIFIER = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
_TRACE_ID = re.compile(r"[0-9a-fA-F]{1,32}")

# Escapes shared by PromQL and LogQL: both lex double-quoted strings with Go's rules.
_GO_ESCAPES = {"\\": "\\\\", '"': '\\"', "\n": "\\n", "\r": "\\r", "\t": "\\t"}
# KQL's lexer takes the same C-style escapes (KqlTokens.g4: EscapeSequence).
_KQL_ESCAPES = _GO_ESCAPES


def _escape(value: str, table: dict[str, str]) -> str:
    out = []
    for ch in value:
        mapped = table.get(ch)
        if mapped is not None:
            out.append(mapped)
        elif ch < " " or "\x7f" <= ch <= "\x9f" or ch in "\u2028\u2029":
            # Other control characters and line separators as \uXXXX, which every lexer here
            # accepts, so nothing invisible reaches the query text.
            out.append(f"\\u{ord(ch):04x}")
        else:
            out.append(ch)
    return "".join(out)


def promql_string(value: str) -> str:
    """A double-quoted PromQL/LogQL string literal whose value is exactly `value`."""
    return '"' + _escape(value, _GO_ESCAPES) + '"'


logql_string = promql_string


def check_label_name(name: str) -> str:
    """Prometheus and Loki label names: [a-zA-Z_][a-zA-Z0-9_]*. Raises ValueError."""
    if not _LABEL_NAME.fullmatch(name):
        raise ValueError(f"not a valid label name: {name!r}")
    return name


def label_matcher(name: str, value: str) -> str:
    """`name="value"`, an equality matcher, so regex characters in the value stay literal."""
    return f"{check_label_name(name)}={promql_string(value)}"


def kql_string(value: str) -> str:
    """A double-quoted KQL string literal whose value is exactly `value`."""
    return '"' + _escape(value, _KQL_ESCAPES) + '"'


def check_kql_identifier(name: str) -> str:
    """Table and column names are configuration, never user input; still, only plain
    identifiers are accepted so a setting cannot smuggle query text. Raises ValueError."""
    if not _KQL_IDENTIFIER.fullmatch(name):
        raise ValueError(f"not a plain KQL identifier: {name!r}")
    return name


def normalise_trace_id(value: str) -> str | None:
    """The trace id as lowercase hex if it is 1–32 hex digits, else None.

    Only a validated id goes into Tempo's URL path, so `../` or `?` cannot change the request."""
    value = value.strip()
    if not _TRACE_ID.fullmatch(value):
        return None
    return value.lower()


def path_segment(value: str, safe: str = "") -> str:
    """Percent-encode a value for one URL path segment (`/` included)."""
    return quote(value, safe=safe)
