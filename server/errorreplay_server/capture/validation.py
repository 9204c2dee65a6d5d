"""Validation of everything a client sends. Each problem names the field it is about."""

from __future__ import annotations

import json
import math
import unicodedata
from typing import Any

from errorreplay_server.domain.errors import FieldViolation, InvalidArgument
from errorreplay_server.domain.model import (
    MICROS_PER_SECOND,
    ErrorFilter,
    ErrorReport,
    Micros,
    Severity,
    Source,
)
from errorreplay_server.settings import Limits

_ID_FIELDS = (
    "resource_id",
    "resource_type",
    "service",
    "environment",
    "release",
    "error_type",
    "correlation_id",
    "trace_id",
    "span_id",
)


def _depth(value: Any, limit: int) -> int:
    """Nesting depth of a JSON-like value, stopping once it passes `limit`."""
    stack: list[tuple[Any, int]] = [(value, 1)]
    deepest = 0
    while stack:
        item, level = stack.pop()
        deepest = max(deepest, level)
        if deepest > limit:
            return deepest
        if isinstance(item, dict):
            stack.extend((v, level + 1) for v in item.values())
        elif isinstance(item, list):
            stack.extend((v, level + 1) for v in item)
    return deepest


# Unicode categories that draw nothing on their own: format characters (zero-width space and
# joiners, bidi marks, BOM), controls, separators, and combining marks with no base.
_INVISIBLE_CATEGORIES = frozenset({"Cf", "Cc", "Zs", "Zl", "Zp", "Mn", "Me"})
# Letters that render blank (Hangul fillers, the blank Braille pattern).
_BLANK_LETTERS = frozenset("\u115f\u1160\u3164\uffa0\u2800")


def is_blank(text: str) -> bool:
    """Whether the text shows nothing: empty, or only whitespace and invisible characters."""
    return all(ch.isspace() or ch in _BLANK_LETTERS or unicodedata.category(ch) in _INVISIBLE_CATEGORIES for ch in text)


def _non_finite_path(value: Any) -> str | None:
    """The path of the first NaN or ±Infinity in a JSON-like value (``a.b[2]``), else None.
    JSON has no such numbers, so a stored one would break every JSON reader of the error."""
    stack: list[tuple[Any, str]] = [(value, "")]
    while stack:
        item, path = stack.pop()
        if isinstance(item, float) and not math.isfinite(item):
            return path
        if isinstance(item, dict):
            stack.extend((v, f"{path}.{k}" if path else str(k)) for k, v in item.items())
        elif isinstance(item, list):
            stack.extend((v, f"{path}[{i}]") for i, v in enumerate(item))
    return None


def report_violations(report: ErrorReport, limits: Limits, now: Micros, prefix: str = "error") -> list[FieldViolation]:
    v: list[FieldViolation] = []

    def bad(name: str, why: str) -> None:
        v.append(FieldViolation(f"{prefix}.{name}", why))

    if not report.message.strip():
        bad("message", "is required")
    elif is_blank(report.message):
        bad("message", "is required: it holds only invisible characters")
    elif len(report.message) > limits.max_message_chars:
        bad("message", f"is longer than {limits.max_message_chars} characters")
    if report.severity not in Severity.__members__.values() or report.severity == Severity.UNSPECIFIED:
        bad("severity", "must be one of SEVERITY_INFO, _LOW, _MEDIUM, _HIGH, _CRITICAL")
    if report.source not in Source.__members__.values() or report.source == Source.UNSPECIFIED:
        bad("source", "must be a Source other than SOURCE_UNSPECIFIED")
    for name in _ID_FIELDS:
        if len(getattr(report, name)) > limits.max_id_chars:
            bad(name, f"is longer than {limits.max_id_chars} characters")
    if len(report.stack_trace) > limits.max_stack_trace_chars:
        bad("stack_trace", f"is longer than {limits.max_stack_trace_chars} characters")
    if report.occurred_at > now + limits.max_future_skew_seconds * MICROS_PER_SECOND:
        bad("occurred_at", f"is more than {limits.max_future_skew_seconds} s in the future")
    if len(report.tags) > limits.max_tags:
        bad("tags", f"has more than {limits.max_tags} entries")
    else:
        for key, value in report.tags.items():
            if not key:
                bad("tags", "has an empty key")
            elif len(key) > limits.max_tag_key_chars:
                bad(f"tags[{key[:32]}]", f"key is longer than {limits.max_tag_key_chars} characters")
            elif len(value) > limits.max_tag_value_chars:
                bad(f"tags[{key}]", f"value is longer than {limits.max_tag_value_chars} characters")
    if report.attributes:
        if _depth(report.attributes, limits.max_attributes_depth) > limits.max_attributes_depth:
            bad("attributes", f"is nested deeper than {limits.max_attributes_depth} levels")
        elif (where := _non_finite_path(report.attributes)) is not None:
            bad(f"attributes.{where[:128]}", "is NaN or Infinity, which JSON cannot hold")
        elif len(json.dumps(report.attributes, ensure_ascii=False).encode()) > limits.max_attributes_bytes:
            bad("attributes", f"is larger than {limits.max_attributes_bytes} bytes as UTF-8 JSON")
    if len(report.fingerprint) > limits.max_fingerprint_parts:
        bad("fingerprint", f"has more than {limits.max_fingerprint_parts} parts")
    elif any(len(p) > limits.max_id_chars for p in report.fingerprint):
        bad("fingerprint", f"has a part longer than {limits.max_id_chars} characters")
    if len(report.breadcrumbs) > limits.max_breadcrumbs:
        bad("breadcrumbs", f"has more than {limits.max_breadcrumbs} entries")
    else:
        for i, line in enumerate(report.breadcrumbs):
            size = len(line.message) + len(line.level) + sum(len(k) + len(x) for k, x in line.labels.items())
            if size > limits.max_breadcrumb_chars:
                bad(f"breadcrumbs[{i}]", f"is longer than {limits.max_breadcrumb_chars} characters")
            elif line.time > now + limits.max_future_skew_seconds * MICROS_PER_SECOND:
                bad(f"breadcrumbs[{i}].time", f"is more than {limits.max_future_skew_seconds} s in the future")
    return v


def check_request_id(request_id: str, limits: Limits, field: str = "request_id") -> list[FieldViolation]:
    if len(request_id) > limits.max_id_chars:
        return [FieldViolation(field, f"is longer than {limits.max_id_chars} characters")]
    # The stored idempotency key joins scope and request_id with a control character
    # (domain.model.idempotency_key), so a request_id must not hold one.
    if any(ord(c) < 0x20 or ord(c) == 0x7F for c in request_id):
        return [FieldViolation(field, "must not contain control characters")]
    return []


def check_page_size(page_size: int, default: int, maximum: int, field: str = "page_size") -> int:
    """The page size to use: the default for 0, else the given one within [1, maximum]."""
    if page_size == 0:
        return default
    if page_size < 0 or page_size > maximum:
        raise InvalidArgument.single(field, f"must be between 1 and {maximum}, got {page_size}")
    return page_size


def filter_violations(flt: ErrorFilter, limits: Limits, prefix: str = "filter") -> list[FieldViolation]:
    v: list[FieldViolation] = []
    known_severities = set(Severity.__members__.values()) - {Severity.UNSPECIFIED}
    if any(s not in known_severities for s in flt.severities):
        v.append(FieldViolation(f"{prefix}.severities", "contains an unknown or unspecified severity"))
    if flt.min_severity and flt.min_severity not in known_severities:
        v.append(FieldViolation(f"{prefix}.min_severity", "is not a known severity"))
    known_sources = set(Source.__members__.values()) - {Source.UNSPECIFIED}
    if any(s not in known_sources for s in flt.sources):
        v.append(FieldViolation(f"{prefix}.sources", "contains an unknown or unspecified source"))
    if len(flt.text) > limits.max_search_text_chars:
        v.append(FieldViolation(f"{prefix}.text", f"is longer than {limits.max_search_text_chars} characters"))
    if len(flt.tags) > limits.max_tags:
        v.append(FieldViolation(f"{prefix}.tags", f"has more than {limits.max_tags} entries"))
    if flt.start_time is not None and flt.end_time is not None and flt.end_time < flt.start_time:
        v.append(FieldViolation(f"{prefix}.end_time", "is before start_time"))
    return v


def raise_if(violations: list[FieldViolation]) -> None:
    if violations:
        raise InvalidArgument(violations)
