"""Opaque keyset page tokens and stream cursors, signed with the database's own key; shared by every store.

A page token carries the sort key of the last item served and a digest of the query that made it,
so a token replayed against another query is refused instead of silently skipping rows. Both are
signed with an HMAC under a secret created once per database (SQLite: the `meta` table; Neo4j: an
`ErrorReplayMeta` node), so a client cannot forge one: anything that does not verify, or decodes
to values of the wrong type or range, is InvalidArgument naming the field.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import json
import secrets
from collections.abc import Callable
from typing import Any, TypeVar

from errorreplay_server.domain.errors import InvalidArgument
from errorreplay_server.domain.model import ErrorFilter, ErrorGroup, ErrorSnapshot

T = TypeVar("T")

KEY_BYTES = 32
# Longer tokens are refused before any decoding: ours are a few hundred characters at most.
MAX_TOKEN_CHARS = 4096
_MAC_BYTES = 16
_CURSOR_MAC_BYTES = 12
INT64_MIN, INT64_MAX = -(2**63), 2**63 - 1
CURSOR_PREFIX = "c"


def new_key() -> bytes:
    return secrets.token_bytes(KEY_BYTES)


def query_digest(*parts: Any) -> str:
    raw = json.dumps(parts, sort_keys=True, default=str, separators=(",", ":"))
    return hashlib.blake2b(raw.encode("utf-8", "surrogatepass"), digest_size=6).hexdigest()


def _b64(raw: bytes) -> str:
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def _unb64(text: str) -> bytes:
    if not text.isascii():
        raise ValueError("not base64")
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def _valid_value(value: Any, kind: type) -> bool:
    if kind is int:
        return type(value) is int and INT64_MIN <= value <= INT64_MAX
    if kind is str:
        if type(value) is not str:
            return False
        try:
            value.encode("utf-8")  # a lone surrogate cannot be encoded
        except UnicodeEncodeError:
            return False
        return True
    return False


def error_key(snapshot: ErrorSnapshot) -> list[Any]:
    """The keyset position of a search result: (occurred_at, received_at)."""
    return [snapshot.report.occurred_at, snapshot.received_at]


def group_key(by_count: bool) -> Callable[[ErrorGroup], list[Any]]:
    """The keyset position of a listed group: (count or last_seen, group_id)."""
    return lambda g: [g.count if by_count else g.last_seen, g.group_id]


class PageTokens:
    """Signs and checks page tokens with one database's key."""

    def __init__(self, key: bytes) -> None:
        self._key = key

    def _mac(self, payload: bytes) -> bytes:
        return hmac.new(self._key, b"page:" + payload, hashlib.sha256).digest()[:_MAC_BYTES]

    def encode(self, digest: str, key: list[Any]) -> str:
        payload = json.dumps({"q": digest, "k": key}, separators=(",", ":")).encode()
        return _b64(payload + self._mac(payload))

    def page(self, items: list[T], page_size: int, digest: str, key: Callable[[T], list[Any]]) -> tuple[list[T], str]:
        """The first page_size of `items` (read with LIMIT page_size + 1) and the token of the next
        page, "" when there is none."""
        if len(items) <= page_size:
            return items, ""
        page = items[:page_size]
        return page, self.encode(digest, key(page[-1]))

    def decode(self, token: str, digest: str, key_types: tuple[type, ...]) -> list[Any] | None:
        """The key in `token`, or None for an empty token. Raises InvalidArgument("page_token")."""
        if not token:
            return None
        key: Any = None
        try:
            raw = _unb64(token) if len(token) <= MAX_TOKEN_CHARS else b""
            payload, mac = raw[:-_MAC_BYTES], raw[-_MAC_BYTES:]
            valid = len(raw) > _MAC_BYTES and hmac.compare_digest(mac, self._mac(payload))
            if valid:
                doc = json.loads(payload)
                key = doc["k"]
                valid = (
                    isinstance(doc, dict)
                    and doc.get("q") == digest
                    and isinstance(key, list)
                    and len(key) == len(key_types)
                    and all(_valid_value(v, t) for v, t in zip(key, key_types, strict=True))
                )
        except (ValueError, KeyError, TypeError, binascii.Error, UnicodeDecodeError, RecursionError):
            valid = False
        if not valid:
            raise InvalidArgument.single("page_token", "is not a page token of this query")
        return list(key)


class StreamCursors:
    """Short signed stream positions: `c` and 27 base64url characters (a received_at and its MAC)."""

    def __init__(self, key: bytes) -> None:
        self._key = key

    def _mac(self, payload: bytes) -> bytes:
        return hmac.new(self._key, b"cursor:" + payload, hashlib.sha256).digest()[:_CURSOR_MAC_BYTES]

    def encode(self, received_at: int) -> str:
        payload = received_at.to_bytes(8, "big", signed=True)
        return CURSOR_PREFIX + _b64(payload + self._mac(payload))

    def decode(self, cursor: str) -> int | None:
        """The position in a cursor of this database, or None when `cursor` is not one."""
        if not cursor.startswith(CURSOR_PREFIX) or len(cursor) > 64:
            return None
        try:
            raw = _unb64(cursor[len(CURSOR_PREFIX) :])
        except (ValueError, binascii.Error):
            return None
        if len(raw) != 8 + _CURSOR_MAC_BYTES or not hmac.compare_digest(raw[8:], self._mac(raw[:8])):
            return None
        position = int.from_bytes(raw[:8], "big", signed=True)
        return position if position >= 0 else None


def filter_digest(flt: ErrorFilter, *extra: Any) -> str:
    return query_digest(
        [int(s) for s in flt.severities],
        int(flt.min_severity),
        [int(s) for s in flt.sources],
        flt.resource_ids,
        flt.resource_type,
        flt.error_type,
        flt.correlation_id,
        flt.trace_id,
        flt.group_id,
        sorted(flt.tags.items()),
        flt.text,
        flt.start_time,
        flt.end_time,
        flt.service,
        flt.environment,
        *extra,
    )
