"""ErrorMatcher: an ErrorFilter evaluated in memory, for live streams.

It gives the same answers as the stores' queries, for every field: `text` has the one meaning of
domain/words.py (every word of the filter is a word of the message), and `exclude_group_ids`
leaves those groups out. tests/contract/filter_cases.py runs the same cases here and on each store.
"""

from __future__ import annotations

from errorreplay_server.domain.model import ErrorFilter, ErrorSnapshot
from errorreplay_server.domain.words import words


class ErrorMatcher:
    __slots__ = ("_filter", "_text_words")

    def __init__(self, flt: ErrorFilter) -> None:
        self._filter = flt
        self._text_words = set(words(flt.text))

    @property
    def filter(self) -> ErrorFilter:
        return self._filter

    def matches(self, snapshot: ErrorSnapshot) -> bool:
        return self.matches_severity(snapshot) and self.matches_identity(snapshot)

    def matches_severity(self, snapshot: ErrorSnapshot) -> bool:
        """The severity and environment part, which correlated errors must meet too."""
        f = self._filter
        r = snapshot.report
        if f.severities and r.severity not in f.severities:
            return False
        if f.min_severity and r.severity < f.min_severity:
            return False
        return not (f.environment and r.environment != f.environment)

    def matches_identity(self, snapshot: ErrorSnapshot) -> bool:
        """Everything else: which errors the subscriber asked for."""
        f = self._filter
        r = snapshot.report
        if f.sources and r.source not in f.sources:
            return False
        if f.resource_ids and r.resource_id not in f.resource_ids:
            return False
        for wanted, actual in (
            (f.resource_type, r.resource_type),
            (f.error_type, r.error_type),
            (f.correlation_id, r.correlation_id),
            (f.trace_id, r.trace_id),
            (f.group_id, snapshot.group_id),
            (f.service, r.service),
        ):
            if wanted and wanted != actual:
                return False
        if f.exclude_group_ids and snapshot.group_id in f.exclude_group_ids:
            return False
        if f.start_time is not None and r.occurred_at < f.start_time:
            return False
        if f.end_time is not None and r.occurred_at > f.end_time:
            return False
        for key, value in f.tags.items():
            if r.tags.get(key) != value:
                return False
        return not (self._text_words and not self._text_words <= set(words(r.message)))
