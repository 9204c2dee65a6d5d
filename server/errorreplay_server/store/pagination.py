"""Opaque keyset page tokens, shared by every store.

A token carries the sort key of the last item served and a digest of the query that made it,
so a token replayed against another query is refused instead of silently skipping rows.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import json
from typing import Any

from errorreplay_server.domain.errors import InvalidArgument
from errorreplay_server.domain.model import ErrorFilter


def query_digest(*parts: Any) -> str:
    raw = json.dumps(parts, sort_keys=True, default=str, separators=(",", ":"))
    return hashlib.blake2b(raw.encode(), digest_size=6).hexdigest()


def encode_token(digest: str, key: list[Any]) -> str:
    raw = json.dumps({"q": digest, "k": key}, separators=(",", ":")).encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def decode_token(token: str, digest: str, key_types: tuple[type, ...]) -> list[Any] | None:
    """The key in `token`, or None for an empty token. Raises InvalidArgument("page_token")."""
    if not token:
        return None
    try:
        raw = base64.urlsafe_b64decode(token + "=" * (-len(token) % 4))
        doc = json.loads(raw)
        key = doc["k"]
        valid = (
            isinstance(doc, dict)
            and doc.get("q") == digest
            and isinstance(key, list)
            and len(key) == len(key_types)
            and all(isinstance(v, t) and not isinstance(v, bool) for v, t in zip(key, key_types, strict=True))
        )
    except (ValueError, KeyError, TypeError, binascii.Error, UnicodeDecodeError):
        valid = False
    if not valid:
        raise InvalidArgument.single("page_token", "is not a page token of this query")
    return list(key)


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
