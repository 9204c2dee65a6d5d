"""Notification rules and targets: the `[notifications]` table of the TOML file named by
ERRORREPLAY_CONFIG, plus ERRORREPLAY_NOTIFY_* variables (README: Notifications).

All of the loading lives here, so that the one settings schema can take it over whole.
Target URLs and secrets are credentials: they are never logged, and `repr` leaves them out.
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Annotated, Any

from google.protobuf import json_format
from pydantic import Field

from errorreplay.v1 import message_pb2 as pb
from errorreplay_server.domain.durations import parse_duration
from errorreplay_server.domain.errors import InvalidArgument
from errorreplay_server.domain.model import ErrorFilter, Severity
from errorreplay_server.settings_types import Count, Parsed, Seconds, SettingsModel, setting


class TargetKind(StrEnum):
    SLACK = "slack"
    TEAMS = "teams"
    WEBHOOK = "webhook"


class TriggerKind(StrEnum):
    NEW_GROUP = "new_group"
    REGRESSION = "regression"
    SEVERITY = "severity"
    BURST = "burst"


@dataclass(frozen=True, slots=True)
class Target:
    name: str
    kind: TargetKind
    url: str = field(repr=False)
    # The HMAC-SHA256 key of a generic webhook; unused by Slack and Teams.
    secret: str = field(default="", repr=False)


@dataclass(frozen=True, slots=True)
class Trigger:
    kind: TriggerKind
    # SEVERITY: at or above this.
    min_severity: Severity = Severity.UNSPECIFIED
    # BURST: at least `burst_count` matching errors of one group within `burst_window_seconds`.
    burst_count: int = 0
    burst_window_seconds: float = 0.0

    def describe(self) -> str:
        if self.kind == TriggerKind.SEVERITY:
            return f"severity >= {self.min_severity.name}"
        if self.kind == TriggerKind.BURST:
            return f"burst of {self.burst_count} in {self.burst_window_seconds:g}s"
        return self.kind.value


DEFAULT_QUIET_PERIOD_SECONDS = 3600.0


@dataclass(frozen=True, slots=True)
class Rule:
    name: str
    filter: ErrorFilter
    trigger: Trigger
    target: str
    # At most one message per group and rule in this period; the rest are counted as suppressed.
    quiet_period_seconds: float = DEFAULT_QUIET_PERIOD_SECONDS


class NotifySettings(SettingsModel):
    """Notification rules, targets and delivery knobs. No rules: the notifier does not run."""

    # Rules and targets come from the config file's [notifications] table (settings_schema.py).
    rules: Annotated[tuple[Rule, ...], Parsed(tuple)] = ()
    targets: Annotated[Mapping[str, Target], Parsed(dict)] = Field(default_factory=dict)
    max_attempts: Count = setting(8, "NOTIFY_MAX_ATTEMPTS", "deliveries tried before a dead letter")
    # Backoff between attempts: base * 2^(attempt-1), capped, with jitter (half fixed, half random).
    backoff_base_seconds: Seconds = setting(1.0, "NOTIFY_BACKOFF_BASE", "first retry delay (doubles, with jitter)")
    backoff_max_seconds: Seconds = setting(300.0, "NOTIFY_BACKOFF_MAX", "longest retry delay")
    # Then the message is composed anyway (the same bound as CaptureError's wait_for_context).
    context_wait_seconds: Seconds = setting(10.0, "NOTIFY_CONTEXT_WAIT", "wait for the error's context")
    request_timeout_seconds: Seconds = setting(10.0, "NOTIFY_REQUEST_TIMEOUT", "timeout of one delivery")
    concurrency: Count = setting(4, "NOTIFY_CONCURRENCY", "messages composed and sent at once")
    # Past this a capture's decisions are dropped (counted) rather than slowing capture down.
    max_pending_decisions: Count = setting(10_000, "NOTIFY_MAX_PENDING_DECISIONS", "decisions queued for the outbox")
    # Counted from their decision.
    outbox_retention_seconds: Seconds = setting(7 * 24 * 3600.0, "NOTIFY_OUTBOX_RETENTION", "sent and dead rows kept")
    # e.g. https://errorreplay.example.com; "" = no replay link. Set by ERRORREPLAY_CONSOLE_URL.
    console_url: str = ""

    @property
    def enabled(self) -> bool:
        return bool(self.rules)

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> NotifySettings:
        """The notification settings of the one settings schema (settings_schema.py)."""
        from errorreplay_server.settings import Settings

        return Settings.from_env(os.environ if env is None else env).notify


_ENV_NAME = re.compile(r"[^A-Z0-9]")


def target_env_prefix(name: str) -> str:
    """ERRORREPLAY_NOTIFY_TARGET_<NAME>_ : the name upper-cased, other characters as `_`."""
    return f"ERRORREPLAY_NOTIFY_TARGET_{_ENV_NAME.sub('_', name.upper())}_"


def parse_targets(raw: Any, env: Mapping[str, str]) -> dict[str, Target]:
    if not isinstance(raw, dict):
        raise ValueError("[notifications.targets] must be a table of targets")
    targets: dict[str, Target] = {}
    for name, spec in raw.items():
        where = f"[notifications.targets.{name}]"
        if not isinstance(spec, dict):
            raise ValueError(f"{where} must be a table")
        _no_unknown_keys(where, spec, {"kind", "url", "secret"})
        kinds = ", ".join(k.value for k in TargetKind)
        try:
            kind = TargetKind(str(spec.get("kind", "")).lower())
        except ValueError:
            raise ValueError(f"{where} kind must be one of {kinds}") from None
        prefix = target_env_prefix(name)
        # The environment wins, so the file can stay free of credentials.
        url = env.get(f"{prefix}URL", "").strip() or str(spec.get("url", "")).strip()
        secret = env.get(f"{prefix}SECRET", "") or str(spec.get("secret", ""))
        if not url.startswith(("https://", "http://")):
            raise ValueError(f"{where} needs an http(s) url (url, or {prefix}URL)")
        if kind == TargetKind.WEBHOOK and not secret:
            raise ValueError(f"{where} is a webhook and needs a signing secret (secret, or {prefix}SECRET)")
        targets[name] = Target(name, kind, url, secret)
    return targets


def parse_rules(raw: Any, targets: Mapping[str, Target]) -> tuple[Rule, ...]:
    if not isinstance(raw, list):
        raise ValueError("[[notifications.rules]] must be an array of tables")
    rules: list[Rule] = []
    names: set[str] = set()
    for i, spec in enumerate(raw):
        if not isinstance(spec, dict):
            raise ValueError(f"notifications.rules[{i}] must be a table")
        name = str(spec.get("name", "")).strip()
        where = f"notifications rule {name!r}" if name else f"notifications.rules[{i}]"
        _no_unknown_keys(
            where,
            spec,
            {"name", "filter", "trigger", "target", "quiet_period", "min_severity", "burst_count", "burst_window"},
        )
        if not name:
            raise ValueError(f"{where} needs a name")
        if name in names:
            raise ValueError(f"{where}: the name is used by another rule")
        names.add(name)
        target = str(spec.get("target", ""))
        if target not in targets:
            known = ", ".join(sorted(targets)) or "none defined"
            raise ValueError(f"{where}: target {target!r} is not in [notifications.targets] ({known})")
        quiet = spec.get("quiet_period", DEFAULT_QUIET_PERIOD_SECONDS)
        rules.append(
            Rule(
                name=name,
                filter=parse_filter(spec.get("filter", {}), where),
                trigger=_trigger(spec, where),
                target=target,
                quiet_period_seconds=_duration_value(quiet, f"{where} quiet_period"),
            )
        )
    return tuple(rules)


def parse_filter(raw: Any, where: str) -> ErrorFilter:
    """The same keys and meaning as ErrorFilter in the API's JSON form (e.g. `service`,
    `min_severity = "SEVERITY_HIGH"` or `"HIGH"`, `resource_ids`, `tags`)."""
    from errorreplay_server.api.convert import filter_from_pb

    if not isinstance(raw, dict):
        raise ValueError(f"{where}: filter must be a table")
    spec = dict(raw)
    for key in ("min_severity", "minSeverity"):
        if isinstance(spec.get(key), str):
            spec[key] = _severity_enum_name(spec[key])
    for key in ("severities",):
        if isinstance(spec.get(key), list):
            spec[key] = [_severity_enum_name(s) if isinstance(s, str) else s for s in spec[key]]
    try:
        msg = json_format.ParseDict(spec, pb.ErrorFilter())
        return filter_from_pb(msg, "filter")
    except (json_format.ParseError, InvalidArgument) as exc:
        raise ValueError(f"{where}: filter is not a valid ErrorFilter: {exc}") from exc


def _severity_enum_name(text: str) -> str:
    upper = text.strip().upper()
    return upper if upper.startswith("SEVERITY_") else f"SEVERITY_{upper}"


def _severity(text: Any, where: str) -> Severity:
    name = str(text).strip().upper().removeprefix("SEVERITY_")
    try:
        severity = Severity[name]
    except KeyError:
        severity = Severity.UNSPECIFIED
    if severity == Severity.UNSPECIFIED:
        raise ValueError(f"{where} must be one of info, low, medium, high, critical")
    return severity


def _trigger(spec: Mapping[str, Any], where: str) -> Trigger:
    kinds = ", ".join(k.value for k in TriggerKind)
    try:
        kind = TriggerKind(str(spec.get("trigger", "")).lower())
    except ValueError:
        raise ValueError(f"{where}: trigger must be one of {kinds}") from None
    if kind == TriggerKind.SEVERITY:
        return Trigger(kind, min_severity=_severity(spec.get("min_severity", ""), f"{where} min_severity"))
    if kind == TriggerKind.BURST:
        count = spec.get("burst_count")
        if not isinstance(count, int) or count < 1:
            raise ValueError(f"{where}: a burst trigger needs burst_count, a positive integer")
        window = _duration_value(spec.get("burst_window", ""), f"{where} burst_window")
        if window <= 0:
            raise ValueError(f"{where}: a burst trigger needs burst_window, a positive duration")
        return Trigger(kind, burst_count=count, burst_window_seconds=window)
    return Trigger(kind)


def _duration_value(value: Any, where: str) -> float:
    if isinstance(value, int | float) and not isinstance(value, bool):
        seconds = float(value)
    else:
        try:
            seconds = parse_duration(str(value))
        except ValueError:
            raise ValueError(f"{where} must be a duration such as 30s, 15m or 1h, got {value!r}") from None
    if seconds < 0:
        raise ValueError(f"{where} must not be negative")
    return seconds


def _no_unknown_keys(where: str, spec: Mapping[str, Any], known: set[str]) -> None:
    unknown = sorted(set(spec) - known)
    if unknown:
        raise ValueError(f"{where}: unknown keys {', '.join(unknown)} (known: {', '.join(sorted(known))})")
