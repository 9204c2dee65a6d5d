"""The filter cases every compilation of ErrorFilter must answer exactly alike: SQL (SqliteStore),
Cypher (Neo4jStore, on the Bolt server) and the stream matcher (streaming/matcher.py).

Each case is a filter and the exact set of dataset indexes it matches; there is one answer.
Text has the meaning of domain/words.py: case-folded whole words, all of them, no prefixes.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from errorreplay_server.domain.model import MICROS_PER_MINUTE, ErrorFilter, NewError, Severity, Source
from tests.factories import new_error

T0 = 1_760_000_000_000_000

MESSAGES = [
    "Payment DECLINED for order_7: card-expired",
    "payment timeout for order 8",
    "Straße closed: café ümlaut",
    "timeout; timeouts galore",
    'weird "quoted" AND OR NOT * NEAR( col:umn ) -minus',
    "x" * 100 + " tail",
    "connection refused to db-3:5432",
    "connection pool exhausted",
    "refused connection",
    "日本語 エラー 発生",
]
ALL = set(range(len(MESSAGES)))


def dataset(run: str) -> list[NewError]:
    """One error per message; every other field varies with the index, all under the tag run."""
    return [
        new_error(
            message=message,
            severity=Severity(1 + i % 5),
            source=Source.APPLICATION if i % 3 else Source.PROMETHEUS,
            resource_id=f"{run}-res{i % 3}",
            resource_type="db" if i % 4 == 0 else "api",
            error_type="Timeout" if i % 2 else "Declined",
            correlation_id=f"{run}-corr" if i < 4 else "",
            trace_id=f"{run}-trace" if i == 5 else "",
            service="checkout" if i % 2 else "payments",
            environment="prod" if i < 6 else "staging",
            group_id=f"grp_{run}_{i % 3}",
            occurred_at=T0 + i * MICROS_PER_MINUTE,
            tags={"run": run, "shard": str(i % 2), **({"zone": "a"} if i in (2, 3, 6) else {})},
        )
        for i, message in enumerate(MESSAGES)
    ]


# (case id, the filter's fields other than the run tag given the run, the indexes it matches)
Case = tuple[str, Callable[[str], dict[str, Any]], set[int]]
CASES: list[Case] = [
    ("everything", lambda run: {}, ALL),
    # text: whole words, case folded, all of them, in any order
    ("text one word", lambda run: {"text": "timeout"}, {1, 3}),
    ("text folds case", lambda run: {"text": "TIMEOUT"}, {1, 3}),
    ("text is no prefix", lambda run: {"text": "time"}, set()),
    ("text all words", lambda run: {"text": "payment declined"}, {0}),
    ("text any order", lambda run: {"text": "declined PAYMENT"}, {0}),
    ("text underscore joins", lambda run: {"text": "order_7"}, {0}),
    ("text word not inside another", lambda run: {"text": "order"}, {1}),
    ("text punctuation splits", lambda run: {"text": "card-expired"}, {0}),
    ("text casefold sharp s", lambda run: {"text": "STRASSE"}, {2}),
    ("text casefold both sides", lambda run: {"text": "straße"}, {2}),
    ("text keeps diacritics", lambda run: {"text": "cafe"}, set()),
    ("text accented upper", lambda run: {"text": "CAFÉ"}, {2}),
    ("text quoted is literal", lambda run: {"text": '"quoted"'}, {4}),
    ("text AND is a word", lambda run: {"text": "AND"}, {4}),
    ("text OR NOT are words", lambda run: {"text": "OR NOT"}, {4}),
    ("text NEAR( is a word", lambda run: {"text": "NEAR("}, {4}),
    ("text column syntax", lambda run: {"text": "col:umn"}, {4}),
    ("text minus", lambda run: {"text": "-minus"}, {4}),
    ("text of no words", lambda run: {"text": "* \" ' ;"}, ALL),
    ("text long word cut", lambda run: {"text": "x" * 64}, {5}),
    ("text long query word cut", lambda run: {"text": "x" * 80}, {5}),
    ("text shorter word", lambda run: {"text": "x" * 63}, set()),
    ("text two words", lambda run: {"text": "connection refused"}, {6, 8}),
    ("text three words", lambda run: {"text": "refused to connection"}, {6}),
    ("text digits", lambda run: {"text": "5432"}, {6}),
    ("text cjk", lambda run: {"text": "日本語"}, {9}),
    ("text no match", lambda run: {"text": "nothing-like-this"}, set()),
    # every other field
    ("severities", lambda run: {"severities": [Severity.CRITICAL]}, {4, 9}),
    ("min severity", lambda run: {"min_severity": Severity.HIGH}, {3, 4, 8, 9}),
    ("sources", lambda run: {"sources": [Source.PROMETHEUS]}, {0, 3, 6, 9}),
    ("resource ids", lambda run: {"resource_ids": [f"{run}-res1", f"{run}-res2"]}, ALL - {0, 3, 6, 9}),
    ("resource type", lambda run: {"resource_type": "db"}, {0, 4, 8}),
    ("error type", lambda run: {"error_type": "Timeout"}, {1, 3, 5, 7, 9}),
    ("correlation id", lambda run: {"correlation_id": f"{run}-corr"}, {0, 1, 2, 3}),
    ("trace id", lambda run: {"trace_id": f"{run}-trace"}, {5}),
    ("group id", lambda run: {"group_id": f"grp_{run}_1"}, {1, 4, 7}),
    ("service", lambda run: {"service": "payments"}, {0, 2, 4, 6, 8}),
    ("environment", lambda run: {"environment": "staging"}, {6, 7, 8, 9}),
    ("tags", lambda run: {"tags": {"shard": "1"}}, {1, 3, 5, 7, 9}),
    ("two tags", lambda run: {"tags": {"shard": "0", "zone": "a"}}, {2, 6}),
    ("tag value differs", lambda run: {"tags": {"zone": "b"}}, set()),
    ("start time", lambda run: {"start_time": T0 + 7 * MICROS_PER_MINUTE}, {7, 8, 9}),
    ("end time", lambda run: {"end_time": T0 + 1 * MICROS_PER_MINUTE}, {0, 1}),
    ("exclude groups", lambda run: {"exclude_group_ids": [f"grp_{run}_0", f"grp_{run}_2"]}, {1, 4, 7}),
    # combinations
    ("text and severity", lambda run: {"text": "connection", "min_severity": Severity.HIGH}, {8}),
    ("text and tags", lambda run: {"text": "timeout", "tags": {"zone": "a"}}, {3}),
    ("text and exclude", lambda run: {"text": "connection", "exclude_group_ids": [f"grp_{run}_2"]}, {6, 7}),
    (
        "fields and time",
        lambda run: {
            "resource_ids": [f"{run}-res0", f"{run}-res1"],
            "environment": "prod",
            "start_time": T0 + 1 * MICROS_PER_MINUTE,
            "end_time": T0 + 4 * MICROS_PER_MINUTE,
        },
        {1, 3, 4},
    ),
    (
        "everything at once",
        lambda run: {
            "text": "payment",
            "severities": [Severity.LOW, Severity.MEDIUM],
            "sources": [Source.APPLICATION, Source.PROMETHEUS],
            "resource_type": "api",
            "error_type": "Timeout",
            "correlation_id": f"{run}-corr",
            "group_id": f"grp_{run}_1",
            "service": "checkout",
            "environment": "prod",
            "tags": {"shard": "1"},
            "exclude_group_ids": [f"grp_{run}_2"],
        },
        {1},
    ),
    ("combination excludes all", lambda run: {"text": "timeout", "environment": "staging"}, set()),
]


def case_filter(run: str, fields: Callable[[str], dict[str, Any]]) -> ErrorFilter:
    kw = fields(run)
    kw["tags"] = {"run": run, **kw.get("tags", {})}
    return ErrorFilter(**kw)
