"""CaptureService: turns reports into durable snapshots, then publishes and enriches them."""

from __future__ import annotations

import asyncio
import logging
import secrets
from collections.abc import Sequence
from dataclasses import dataclass, replace
from typing import Protocol

from errorreplay_server.analysis.grouping import fingerprint, group_id_for
from errorreplay_server.analysis.settings import DEFAULT_SETTINGS, AnalysisSettings
from errorreplay_server.capture import field_policy
from errorreplay_server.capture.clock import ReceiveClock
from errorreplay_server.capture.field_policy import PolicyScrubber
from errorreplay_server.capture.validation import check_request_id, report_violations
from errorreplay_server.domain.errors import DomainError, FieldViolation, InvalidArgument, StampTaken
from errorreplay_server.domain.model import (
    CLIENT_LOG_COLLECTOR,
    CaptureOutcome,
    Change,
    Dependency,
    ErrorContext,
    ErrorReport,
    ErrorSnapshot,
    LogLine,
    NewError,
    Resource,
    Severity,
    Source,
    now_micros,
)
from errorreplay_server.settings import Limits
from errorreplay_server.store.base import Store

log = logging.getLogger(__name__)

# How often a capture is stamped anew when another replica took its received_at (StampTaken).
STAMP_ATTEMPTS = 3
MAX_CLIENT_LOG_LINES = 200
"""Breadcrumbs kept per error (the newest), as many as a log collector keeps."""
MAX_CLIENT_LOG_LINE_CHARS = 2000
"""A breadcrumb's message and each label value are cut here, like collected log lines."""


Scrubber = PolicyScrubber


class ErrorPublisher(Protocol):
    """Receives each committed capture, in commit order (the streaming hub)."""

    def publish(self, snapshot: ErrorSnapshot) -> None: ...


class CaptureObserver(Protocol):
    """Sees each committed, non-duplicate capture with its outcome flags (the notifier). It must
    not block: capture calls it inline, after the commit."""

    def captured(self, outcome: CaptureOutcome) -> None: ...


class Enricher(Protocol):
    """Collects context in the background (the enrichment queue)."""

    def initial_context(self) -> ErrorContext: ...

    def submit(self, snapshot: ErrorSnapshot) -> bool: ...

    async def wait_for(self, error_id: str, timeout: float | None) -> bool: ...

    async def refresh(self, snapshot: ErrorSnapshot) -> ErrorSnapshot: ...


@dataclass(slots=True)
class CaptureRequest:
    report: ErrorReport
    request_id: str = ""
    wait_for_context: bool = False
    # Who asks (api/auth.py: the principal's key when auth is on, "" when off): a request_id is
    # unique per scope, so one caller's request_id never returns another caller's error.
    idempotency_scope: str = ""
    # Whether the caller may read stored errors (reader or admin role, or auth off). A duplicate
    # answer carries the stored snapshot only then; otherwise just its ids.
    caller_may_read: bool = True


def _withheld(outcome: CaptureOutcome) -> CaptureOutcome:
    """A duplicate's answer for a caller that may not read it: the ids, nothing of the content."""
    s = outcome.snapshot
    stub = ErrorSnapshot(
        error_id=s.error_id,
        group_id=s.group_id,
        received_at=0,
        report=ErrorReport(message="", severity=Severity.UNSPECIFIED, source=Source.UNSPECIFIED),
        fingerprint="",
    )
    return CaptureOutcome(stub, duplicate=True, snapshot_withheld=True)


def _answer(req: CaptureRequest, outcome: CaptureOutcome) -> CaptureOutcome:
    return _withheld(outcome) if outcome.duplicate and not req.caller_may_read else outcome


def new_error_id(received_at: int) -> str:
    # Time-ordered prefix for locality in indexes, random suffix for uniqueness.
    return f"err_{received_at:014x}{secrets.token_hex(5)}"


class CaptureService:
    def __init__(
        self,
        store: Store,
        scrubber: Scrubber,
        limits: Limits,
        publisher: ErrorPublisher | None = None,
        enricher: Enricher | None = None,
        clock: ReceiveClock | None = None,
        analysis: AnalysisSettings = DEFAULT_SETTINGS,
        observer: CaptureObserver | None = None,
    ) -> None:
        self._analysis = analysis
        self._observer = observer
        self._store = store
        self._scrubber = scrubber
        self._limits = limits
        self._publisher = publisher
        self._enricher = enricher
        self._clock = clock or ReceiveClock()
        # Read by the metrics collector at scrape time.
        self.stored = 0
        self.duplicates = 0
        self.rejected = 0

    def clean_change(self, change: Change) -> Change:
        """RecordChange: the change with its texts scrubbed; InvalidArgument for an id with a secret."""
        cleaned, violations = field_policy.apply("Change", change, self._scrubber, "change.")
        if violations:
            raise InvalidArgument(violations)
        return cleaned

    def clean_topology(
        self, resources: Sequence[Resource], dependencies: Sequence[Dependency]
    ) -> tuple[list[Resource], list[Dependency]]:
        """UpsertResources: names, types and labels scrubbed; InvalidArgument for ids with a secret."""
        violations: list[FieldViolation] = []
        cleaned: list[Resource] = []
        for i, resource in enumerate(resources):
            scrubbed, found = field_policy.apply("Resource", resource, self._scrubber, f"resources[{i}].")
            cleaned.append(scrubbed)
            violations += found
        for i, dependency in enumerate(dependencies):
            violations += field_policy.apply("Dependency", dependency, self._scrubber, f"dependencies[{i}].")[1]
        if violations:
            raise InvalidArgument(violations)
        return cleaned, list(dependencies)

    async def start(self) -> None:
        self._clock.advance_past(await self._store.latest_received_at())

    def _prepare(self, req: CaptureRequest, field_prefix: str) -> NewError:
        now = now_micros()
        violations = report_violations(req.report, self._limits, now, prefix=f"{field_prefix}error")
        violations += check_request_id(req.request_id, self._limits, field=f"{field_prefix}request_id")
        if not violations:
            # Every stored field is scrubbed or, for identifiers, refused (capture/field_policy.py).
            report, violations = field_policy.apply("ErrorReport", req.report, self._scrubber, f"{field_prefix}error.")
            bad_request_id = field_policy.refused(req.request_id, f"{field_prefix}request_id", self._scrubber)
            if bad_request_id is not None:
                violations.append(bad_request_id)
        if violations:
            self.rejected += 1
            raise InvalidArgument(violations)
        # Breadcrumbs are stored once, as context logs (below), never on the report.
        report = replace(report, occurred_at=report.occurred_at or now, breadcrumbs=[])
        digest, title = fingerprint(report, self._analysis)
        # error_id and received_at are stamped by `commit`, in the order of the writes.
        snapshot = ErrorSnapshot(
            error_id="",
            group_id=group_id_for(digest),
            received_at=0,
            report=report,
            fingerprint=digest,
            request_id=req.request_id,
            idempotency_scope=req.idempotency_scope if req.request_id else "",
        )
        if req.report.breadcrumbs:
            snapshot.context.logs = self._client_logs(req.report.breadcrumbs, report.occurred_at)
        return NewError(snapshot, title)

    def _client_logs(self, lines: Sequence[LogLine], occurred_at: int) -> list[LogLine]:
        """The client's breadcrumbs as context log lines: the newest, scrubbed by the field policy
        (capture/field_policy.py), then cut to size. A line without a time takes the error's."""
        dated = [replace(line, time=line.time or occurred_at) for line in lines]
        kept = sorted(dated, key=lambda line: line.time)[-MAX_CLIENT_LOG_LINES:]
        out = []
        for line in kept:
            clean, _ = field_policy.apply("LogLine", line, self._scrubber, "")
            out.append(
                LogLine(
                    time=clean.time,
                    level=clean.level[:32],
                    message=clean.message[:MAX_CLIENT_LOG_LINE_CHARS],
                    collector=CLIENT_LOG_COLLECTOR,
                    labels={k[:128]: v[:MAX_CLIENT_LOG_LINE_CHARS] for k, v in list(clean.labels.items())[:32]},
                )
            )
        return out

    def group_id_of(self, report: ErrorReport) -> str:
        """The group a report would join if it were captured now (same scrubbing, same fingerprint)."""
        scrubbed, _ = field_policy.apply("ErrorReport", report, self._scrubber, "error.")
        digest, _ = fingerprint(replace(scrubbed, breadcrumbs=[]), self._analysis)
        return group_id_for(digest)

    async def commit(self, items: Sequence[NewError]) -> list[CaptureOutcome]:
        """Stamp prepared captures, store them, then publish, enrich and observe what was new.

        Stamping and submitting to the store happen in one step, without an await between them, so
        received_at (the stream cursor) increases in commit order. In a multi-process server the
        writer process calls this for every worker's captures (engine/writer.py); a worker's
        store forwards them here, so its own stamps are replaced (docs/ARCHITECTURE.md §5)."""
        for attempt in range(STAMP_ATTEMPTS):
            for item in items:
                snap = item.snapshot
                snap.received_at = self._clock.next()
                snap.error_id = new_error_id(snap.received_at)
                if self._enricher is not None:
                    snap.context.statuses = self._enricher.initial_context().statuses
            try:
                outcomes = await self._store.capture(items)
                break
            except StampTaken:
                # Replicas over one store stamp with their own clocks and can meet on a
                # microsecond; nothing was stored, so stamp anew (past it) and try again.
                if attempt == STAMP_ATTEMPTS - 1:
                    raise
        self._after_commit(outcomes)
        return outcomes

    def _after_commit(self, outcomes: Sequence[CaptureOutcome]) -> None:
        for outcome in outcomes:
            if outcome.duplicate:
                self.duplicates += 1
                continue
            self.stored += 1
            if self._publisher is not None:
                self._publisher.publish(outcome.snapshot)
            if self._enricher is not None:
                self._enricher.submit(outcome.snapshot)
            if self._observer is not None:
                self._observer.captured(outcome)

    async def capture(self, req: CaptureRequest, timeout: float | None = None) -> CaptureOutcome:
        (outcome,) = await self.commit([self._prepare(req, "")])
        if req.wait_for_context and self._enricher is not None and not outcome.duplicate:
            await self._wait_for_context(outcome, timeout)
        return _answer(req, outcome)

    async def _wait_for_context(self, outcome: CaptureOutcome, timeout: float | None) -> None:
        assert self._enricher is not None
        if await self._enricher.wait_for(outcome.snapshot.error_id, timeout):
            fresh = await self._store.get_error(outcome.snapshot.error_id)
            outcome.snapshot = fresh

    async def refresh_context(self, snapshot: ErrorSnapshot) -> ErrorSnapshot:
        """Collect the context window again (ReplayError with refresh_context)."""
        if self._enricher is None:
            return snapshot
        return await self._enricher.refresh(snapshot)

    async def capture_batch(
        self, requests: Sequence[CaptureRequest | InvalidArgument], timeout: float | None = None
    ) -> list[CaptureOutcome | DomainError]:
        """One result per item, in order. Items that failed to parse arrive as InvalidArgument and
        stay that way; a bad item never sinks the good ones."""
        if len(requests) > self._limits.max_batch_size:
            raise InvalidArgument.single("requests", f"has more than {self._limits.max_batch_size} items")
        results: list[CaptureOutcome | DomainError | None] = [None] * len(requests)
        accepted: list[tuple[int, NewError]] = []
        for i, req in enumerate(requests):
            if isinstance(req, InvalidArgument):
                results[i] = req
                continue
            try:
                accepted.append((i, self._prepare(req, f"requests[{i}].")))
            except InvalidArgument as exc:
                results[i] = exc
        if accepted:
            outcomes = await self.commit([new for _, new in accepted])
            for (i, _), outcome in zip(accepted, outcomes, strict=True):
                results[i] = outcome
            if self._enricher is not None:
                waits = [
                    self._wait_for_context(o, timeout)
                    for (i, _), o in zip(accepted, outcomes, strict=True)
                    if _wants_context(requests[i]) and not o.duplicate
                ]
                await asyncio.gather(*waits)
            for i, _ in accepted:
                request, result = requests[i], results[i]
                if isinstance(request, CaptureRequest) and isinstance(result, CaptureOutcome):
                    results[i] = _answer(request, result)
        return [r for r in results if r is not None]


def _wants_context(req: CaptureRequest | InvalidArgument) -> bool:
    return isinstance(req, CaptureRequest) and req.wait_for_context
