"""Whether a replay had enough context to go on (issue 20).

Each context source (one per collector) ends OK, EMPTY, FAILED, SKIPPED or stays PENDING. OK and
EMPTY are usable: an empty answer is still an answer. The others gave nothing. When the share of
sources that gave nothing is above `limited_context_share`, the diagnosis is limited and says
so in the response, in a GATHER_CONTEXT recommendation and in the CLI. With no source recorded
at all (enrichment off), coverage is not judged.
"""

from __future__ import annotations

from errorreplay_server.analysis.model import NO_CONTEXT_JUDGED, ContextCoverage
from errorreplay_server.analysis.settings import DEFAULT_SETTINGS, AnalysisSettings
from errorreplay_server.domain.model import CollectionState, ErrorContext

USABLE = (CollectionState.OK, CollectionState.EMPTY)


def context_coverage(context: ErrorContext, settings: AnalysisSettings = DEFAULT_SETTINGS) -> ContextCoverage:
    statuses = context.statuses
    if not statuses:
        return NO_CONTEXT_JUDGED
    missing = [
        f"{s.collector} {s.state.name}" + (f": {s.detail}" if s.detail else "")
        for s in sorted(statuses, key=lambda s: s.collector)
        if s.state not in USABLE
    ]
    limited = len(missing) / len(statuses) > settings.limited_context_share
    summary = ""
    if limited:
        summary = (
            f"The diagnosis had little to go on: {len(missing)} of {len(statuses)} context sources "
            f"gave nothing ({'; '.join(missing)})."
        )
    return ContextCoverage(len(statuses), missing, limited, summary)
