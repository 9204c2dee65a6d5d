"""Deciding which captures notify whom: in memory, cheap, called inline after each commit."""

from __future__ import annotations

import uuid
from collections import deque
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from errorreplay_server.domain.model import MICROS_PER_SECOND, CaptureOutcome, ErrorSnapshot, Micros
from errorreplay_server.notify.config import Rule, TriggerKind
from errorreplay_server.streaming.matcher import ErrorMatcher


@dataclass(frozen=True, slots=True)
class Decision:
    """One message to send: `rule` fired for `snapshot`. The message id is what receivers dedup on."""

    message_id: str
    rule: Rule
    snapshot: ErrorSnapshot
    decided_at: Micros


def new_message_id() -> str:
    return f"ntf_{uuid.uuid4().hex}"


class RuleEngine:
    """Applies each rule's filter, trigger and quiet period to a committed capture.

    The quiet period is per rule and group: after a message, the group's next triggers for that
    rule within the period are suppressed (counted). Bursts count a group's matching errors in a
    sliding window of receive times."""

    def __init__(self, rules: Sequence[Rule]) -> None:
        self._rules = [(rule, ErrorMatcher(rule.filter)) for rule in rules]
        # (rule name, group id) -> when that rule last sent a message for that group.
        self._last_sent: dict[tuple[str, str], Micros] = {}
        # (rule name, group id) -> receive times of matching errors within the burst window.
        self._bursts: dict[tuple[str, str], deque[Micros]] = {}
        # rule name -> triggers suppressed by the quiet period.
        self.suppressed: dict[str, int] = {rule.name: 0 for rule in rules}

    @property
    def rules(self) -> list[Rule]:
        return [rule for rule, _ in self._rules]

    def remember(self, sent: Iterable[tuple[str, str, Micros]]) -> None:
        """Quiet periods survive a restart: (rule, group, decided_at) of recent decisions from the outbox."""
        for rule_name, group_id, decided_at in sent:
            key = (rule_name, group_id)
            self._last_sent[key] = max(decided_at, self._last_sent.get(key, 0))

    def prune(self, now: Micros) -> None:
        """Forget quiet periods and burst windows that have run out (memory stays bounded)."""
        quiet = {rule.name: rule.quiet_period_seconds * MICROS_PER_SECOND for rule, _ in self._rules}
        for key in [k for k, last in self._last_sent.items() if now - last >= quiet.get(k[0], 0)]:
            del self._last_sent[key]
        windows = {rule.name: rule.trigger.burst_window_seconds * MICROS_PER_SECOND for rule, _ in self._rules}
        for key in [k for k, w in self._bursts.items() if not w or now - w[-1] > windows.get(k[0], 0)]:
            del self._bursts[key]

    def decide(self, outcome: CaptureOutcome, now: Micros) -> list[Decision]:
        snapshot = outcome.snapshot
        decisions = []
        for rule, matcher in self._rules:
            if not matcher.matches(snapshot) or not self._triggered(rule, outcome):
                continue
            key = (rule.name, snapshot.group_id)
            last = self._last_sent.get(key)
            if last is not None and now - last < rule.quiet_period_seconds * MICROS_PER_SECOND:
                self.suppressed[rule.name] += 1
                continue
            self._last_sent[key] = now
            decisions.append(Decision(new_message_id(), rule, snapshot, now))
        return decisions

    def _triggered(self, rule: Rule, outcome: CaptureOutcome) -> bool:
        trigger = rule.trigger
        if trigger.kind == TriggerKind.NEW_GROUP:
            return outcome.new_group
        if trigger.kind == TriggerKind.REGRESSION:
            return outcome.regression
        if trigger.kind == TriggerKind.SEVERITY:
            return outcome.snapshot.report.severity >= trigger.min_severity
        # BURST: a sliding window over receive times; it fires on reaching the count, and the
        # window starts over so that the next burst needs the full count again.
        key = (rule.name, outcome.snapshot.group_id)
        window = self._bursts.setdefault(key, deque())
        received = outcome.snapshot.received_at
        window.append(received)
        horizon = received - trigger.burst_window_seconds * MICROS_PER_SECOND
        while window and window[0] < horizon:
            window.popleft()
        if len(window) >= trigger.burst_count:
            window.clear()
            return True
        return False
