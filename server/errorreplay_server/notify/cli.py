"""`errorreplay notifications rules|test|list`: they read the configuration and the data directory
where they run (the server's host), not the server over gRPC."""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import sys
from dataclasses import asdict
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, TextIO

from errorreplay_server.domain.model import MICROS_PER_SECOND, ErrorReport, ErrorSnapshot, Severity, Source, now_micros
from errorreplay_server.notify.outbox import OutboxEntry, OutboxState, open_outbox

if TYPE_CHECKING:  # the settings (and pydantic) load with these commands, not with every `errorreplay`
    from errorreplay_server.notify.config import NotifySettings, Rule

EXIT_OK, EXIT_FAILURE, EXIT_USAGE, EXIT_NOT_FOUND = 0, 1, 2, 3


def add_commands(sub: argparse._SubParsersAction) -> None:
    group = sub.add_parser(
        "notifications",
        help="notification rules, test messages and the outbox (reads ERRORREPLAY_CONFIG and the data directory)",
        description="Notification rules, test messages and the outbox. These read ERRORREPLAY_CONFIG (or --config)"
        " and ERRORREPLAY_DATA_DIR (or --data-dir) where they run, like `serve` does.",
    )
    actions = group.add_subparsers(dest="notifications_command", required=True, metavar="ACTION")

    def action(name: str, help: str) -> argparse.ArgumentParser:
        p = actions.add_parser(name, help=help, description=help)
        p.add_argument("--config", metavar="FILE", help="the TOML file (default: $ERRORREPLAY_CONFIG)")
        return p

    rules = action("rules", "list the notification rules and their targets (never their URLs or secrets)")
    rules.add_argument("--json", action="store_true")
    rules.set_defaults(run=_rules)
    test = action("test", "send a test message through a rule's target and report the answer")
    test.add_argument("rule", metavar="RULE")
    test.set_defaults(run=_test)
    listing = action("list", "the outbox, newest first: pending, sent and dead-letter messages")
    listing.add_argument("--data-dir", help="the server's data directory (default: $ERRORREPLAY_DATA_DIR or ./data)")
    listing.add_argument(
        "--state", action="append", choices=[s.value for s in OutboxState], help="(repeatable; default: all)"
    )
    listing.add_argument("--limit", type=int, default=50, help="default: 50")
    listing.add_argument("--json", action="store_true")
    listing.set_defaults(run=_list)


def _settings(args: argparse.Namespace, err: TextIO) -> NotifySettings | None:
    from errorreplay_server.notify.config import NotifySettings

    env = dict(os.environ)
    if getattr(args, "config", None):
        env["ERRORREPLAY_CONFIG"] = args.config
    try:
        return NotifySettings.from_env(env)
    except ValueError as exc:
        print(f"errorreplay: configuration error: {exc}", file=err)
        return None


def _rules(args: argparse.Namespace, out: TextIO | None = None, err: TextIO | None = None) -> int:
    out, err = out or _stdout(), err or _stderr()
    settings = _settings(args, err)
    if settings is None:
        return EXIT_USAGE
    if args.json:
        rows = [
            {
                "name": r.name,
                "trigger": r.trigger.describe(),
                "target": r.target,
                "target_kind": settings.targets[r.target].kind.value,
                "quiet_period_seconds": r.quiet_period_seconds,
                "filter": {k: v for k, v in asdict(r.filter).items() if v not in (None, "", [], {}, 0)},
            }
            for r in settings.rules
        ]
        print(json.dumps(rows, indent=2, default=str), file=out)
        return EXIT_OK
    if not settings.rules:
        print("no notification rules (add [[notifications.rules]] to the file named by ERRORREPLAY_CONFIG)", file=out)
        return EXIT_OK
    for r in settings.rules:
        target = settings.targets[r.target]
        print(
            f"{r.name:<20} {r.trigger.describe():<24} -> {r.target} ({target.kind.value})"
            f"  quiet {r.quiet_period_seconds:g}s  filter: {_filter_text(r)}",
            file=out,
        )
    return EXIT_OK


def _filter_text(rule: Rule) -> str:
    parts = []
    for key, value in asdict(rule.filter).items():
        if value in (None, "", [], {}, 0):
            continue
        if key == "min_severity":
            value = Severity(value).name
        parts.append(f"{key}={value}")
    return " ".join(parts) or "(every error)"


def _test(args: argparse.Namespace, out: TextIO | None = None, err: TextIO | None = None) -> int:
    out, err = out or _stdout(), err or _stderr()
    settings = _settings(args, err)
    if settings is None:
        return EXIT_USAGE
    rule = next((r for r in settings.rules if r.name == args.rule), None)
    if rule is None:
        known = ", ".join(r.name for r in settings.rules) or "none"
        print(f"errorreplay: NOT_FOUND: no rule named {args.rule!r} (rules: {known})", file=err)
        return EXIT_NOT_FOUND
    import httpx

    from errorreplay_server.notify import targets
    from errorreplay_server.notify.message import compose
    from errorreplay_server.notify.notifier import hide_target_urls, send
    from errorreplay_server.notify.rules import new_message_id

    target = settings.targets[rule.target]
    now = now_micros()
    report = ErrorReport(
        message="This is a test message from `errorreplay notifications test`",
        severity=Severity.INFO,
        source=Source.MANUAL,
        service="errorreplay",
        environment="test",
        occurred_at=now,
    )
    snapshot = ErrorSnapshot("err_test", "grp_test", now, report, "")
    message_id = new_message_id()
    message = compose(message_id, rule.name, "test", snapshot, "Test notification", 1, None, settings.console_url)
    body = targets.encode(targets.payload(target.kind, message))

    hide_target_urls([target])

    async def deliver() -> tuple[bool, str]:
        async with httpx.AsyncClient(timeout=settings.request_timeout_seconds, follow_redirects=False) as client:
            result = await send(client, target, message_id, body)
        return result.ok, result.detail

    ok, detail = asyncio.run(deliver())
    if not ok:
        print(f"errorreplay: test message to target {target.name} ({target.kind.value}) failed: {detail}", file=err)
        return EXIT_FAILURE
    print(f"sent test message {message_id} to target {target.name} ({target.kind.value}): {detail}", file=out)
    return EXIT_OK


def _list(args: argparse.Namespace, out: TextIO | None = None, err: TextIO | None = None) -> int:
    out, err = out or _stdout(), err or _stderr()
    try:
        from errorreplay_server.settings import Settings

        settings = Settings.from_env()
    except ValueError as exc:
        print(f"errorreplay: configuration error: {exc}", file=err)
        return EXIT_USAGE
    if args.data_dir:
        settings = settings.model_copy(update={"data_dir": Path(args.data_dir)})
    if settings.store == "sqlite" and not settings.sqlite_path.exists():
        print(f"errorreplay: no store at {settings.sqlite_path} (--data-dir or ERRORREPLAY_DATA_DIR)", file=err)
        return EXIT_USAGE
    outbox = open_outbox(settings, read_only=True)
    states = [OutboxState(s) for s in args.state or []]

    async def read() -> list[OutboxEntry]:
        await outbox.start()
        try:
            return await outbox.entries(states, max(1, args.limit))
        finally:
            await outbox.close()

    entries = asyncio.run(read())
    if args.json:
        print(json.dumps([{**asdict(e), "payload": json.loads(e.payload or "null")} for e in entries]), file=out)
        return EXIT_OK
    if not entries:
        print("the outbox is empty", file=out)
        return EXIT_OK
    for e in entries:
        decided = datetime.fromtimestamp(e.decided_at / MICROS_PER_SECOND, UTC).strftime("%Y-%m-%d %H:%M:%S")
        note = f"  last: {e.last_error}" if e.last_error else ""
        print(
            f"{e.message_id}  {e.state.value:<7} {decided}  rule {e.rule} -> {e.target}"
            f"  error {e.error_id}  attempts {e.attempts}{note}",
            file=out,
        )
    return EXIT_OK


def _stdout() -> TextIO:
    return sys.stdout


def _stderr() -> TextIO:
    return sys.stderr
