"""The `errorreplay` command: `serve` runs the server; the other subcommands talk to one over gRPC.

Exit codes: 0 on success, 1 when a call fails (one line `errorreplay: CODE: details` on stderr), 2 for
usage errors. Rendering lives in cli_render so that it can be tested without a terminal or a server.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
import re
import sys
from collections.abc import Callable, Coroutine
from datetime import UTC, datetime, timedelta
from importlib import metadata
from typing import Any, TextIO

import grpc

from errorreplay.client import RetryPolicy, timestamp
from errorreplay.sync_client import SyncErrorReplayClient
from errorreplay.v1 import message_pb2 as m
from errorreplay_server import cli_render
from errorreplay_server.settings import Settings

DEFAULT_ADDRESS = "localhost:50051"
DEFAULT_TIMEOUT_SECONDS = 10.0
WATCH_RETRY = RetryPolicy(max_attempts=10, max_backoff=5.0)
"""watch reconnects (from its last cursor) this many times in a row before it gives up."""

Command = Callable[[SyncErrorReplayClient, argparse.Namespace, TextIO], int]


def run_event_loop(main: Coroutine[Any, Any, None], kind: str) -> None:
    """uvloop when installed (the `fast` extra; it serves about 10-25 % more captures per second
    here, see README: Performance) unless ERRORREPLAY_EVENT_LOOP=asyncio."""
    if kind != "asyncio":
        try:
            import uvloop
        except ImportError:
            if kind == "uvloop":
                raise RuntimeError("ERRORREPLAY_EVENT_LOOP=uvloop, but uvloop is not installed") from None
        else:
            uvloop.run(main)
            return
    asyncio.run(main)


def _serve(args: argparse.Namespace) -> int:
    from errorreplay_server.server import serve

    try:
        settings = Settings.from_env()
    except ValueError as exc:
        print(f"errorreplay: configuration error: {exc}", file=sys.stderr)
        return 2
    logging.basicConfig(level=settings.log_level, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    try:
        run_event_loop(serve(settings), settings.event_loop)
    except Exception as exc:  # start-up failures: one clear line, non-zero exit
        logging.getLogger("errorreplay").error("cannot start: %s", exc)
        return 1
    return 0


# Argument types: each raises ArgumentTypeError, which argparse turns into a usage error (exit 2).


def _enum_type(wrapper: Any, prefix: str) -> Callable[[str], int]:
    names = {name.removeprefix(prefix).lower(): int(value) for name, value in wrapper.items() if int(value)}

    def parse(text: str) -> int:
        key = text.strip().lower().removeprefix(prefix.lower()).replace("-", "_")
        if key not in names:
            raise argparse.ArgumentTypeError(f"{text!r} is not one of {', '.join(names)}")
        return names[key]

    parse.__name__ = prefix.strip("_").lower()
    return parse


_severity = _enum_type(m.Severity, "SEVERITY_")
_source = _enum_type(m.Source, "SOURCE_")

_DURATION = re.compile(r"^(\d+(?:\.\d+)?)([smhd])$")
_UNIT_SECONDS = {"s": 1, "m": 60, "h": 3600, "d": 86400}


def _duration(text: str) -> timedelta:
    match = _DURATION.match(text.strip())
    if not match:
        raise argparse.ArgumentTypeError(f"{text!r} is not a duration such as 90s, 15m, 2h or 7d")
    return timedelta(seconds=float(match.group(1)) * _UNIT_SECONDS[match.group(2)])


def _tag(text: str) -> tuple[str, str]:
    key, sep, value = text.partition("=")
    if not sep or not key:
        raise argparse.ArgumentTypeError(f"{text!r} is not a tag of the form key=value")
    return key, value


def _positive_float(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        value = -1
    if value <= 0:
        raise argparse.ArgumentTypeError(f"{text!r} is not a positive number of seconds")
    return value


# Subcommands that talk to a server.


def _color(args: argparse.Namespace, out: TextIO) -> bool:
    return cli_render.use_color(out, args.color)


def _capture(client: SyncErrorReplayClient, args: argparse.Namespace, out: TextIO) -> int:
    report = m.ErrorReport(
        message=args.message,
        severity=args.severity,
        source=args.source,
        resource_id=args.resource or "",
        resource_type=args.resource_type or "",
        service=args.service or "",
        environment=args.environment or "",
        release=args.release or "",
        error_type=args.error_type or "",
        correlation_id=args.correlation_id or "",
        trace_id=args.trace_id or "",
        tags=dict(args.tag),
    )
    response = client.capture(report, request_id=args.request_id, wait_for_context=args.wait_for_context)
    if args.json:
        print(cli_render.to_json(response), file=out)
    else:
        print(response.error_id + ("  (duplicate: request id seen before)" if response.duplicate else ""), file=out)
    return 0


def _show(args: argparse.Namespace, out: TextIO, message: Any, render: Callable[..., str]) -> int:
    """JSON with --json, else the terminal rendering (coloured when `_color` says so)."""
    out.write(cli_render.to_json(message) + "\n" if args.json else render(message, color=_color(args, out)))
    return 0


def _get(client: SyncErrorReplayClient, args: argparse.Namespace, out: TextIO) -> int:
    return _show(args, out, client.get(args.error_id), cli_render.render_snapshot)


def _replay(client: SyncErrorReplayClient, args: argparse.Namespace, out: TextIO) -> int:
    replay = client.replay(args.error_id, refresh_context=args.refresh_context)
    return _show(args, out, replay, cli_render.render_replay)


def _filter(args: argparse.Namespace) -> m.ErrorFilter:
    """An ErrorFilter from whichever filter flags the subcommand defines (see _filter_options)."""
    flags = vars(args)
    return m.ErrorFilter(
        severities=flags.get("severity") or [],
        min_severity=flags.get("min_severity") or m.SEVERITY_UNSPECIFIED,
        sources=flags.get("source") or [],
        resource_ids=flags.get("resource") or [],
        resource_type=flags.get("resource_type") or "",
        error_type=flags.get("error_type") or "",
        correlation_id=flags.get("correlation_id") or "",
        trace_id=flags.get("trace_id") or "",
        group_id=flags.get("group") or "",
        service=flags.get("service") or "",
        environment=flags.get("environment") or "",
        text=flags.get("text") or "",
        tags=dict(flags.get("tag") or []),
    )


def _search(client: SyncErrorReplayClient, args: argparse.Namespace, out: TextIO) -> int:
    flt = _filter(args)
    if args.since is not None:
        flt.start_time.CopyFrom(timestamp(datetime.now(UTC) - args.since))
    page = client.search(flt, page_size=args.limit, page_token=args.page_token)
    if args.json:
        print(cli_render.to_json(page), file=out)
        return 0
    color = _color(args, out)
    for snapshot in page.errors:
        print(cli_render.error_line(snapshot, color=color), file=out)
    if page.next_page_token:
        print(
            f"(showing {len(page.errors)} of {page.total_size}; next page: --page-token {page.next_page_token})",
            file=out,
        )
    elif not page.errors:
        print("(no errors match)", file=out)
    return 0


def _stats(client: SyncErrorReplayClient, args: argparse.Namespace, out: TextIO) -> int:
    end = datetime.now(UTC)
    stats = client.statistics(
        start_time=end - args.since, end_time=end, bucket=args.bucket, filter=_filter(args), top_groups_limit=args.top
    )
    return _show(args, out, stats, cli_render.render_statistics)


def _watch(client: SyncErrorReplayClient, args: argparse.Namespace, out: TextIO) -> int:
    color = _color(args, out)
    try:
        stream = client.subscribe(
            _filter(args), include_correlated=args.correlated, resume_after=args.resume_after, reconnect=True
        )
        for message in stream:
            if args.json:
                line = cli_render.to_json(message, indent=None)
            else:
                note = cli_render.correlation_note(message.correlation)
                line = cli_render.error_line(message.error, color=color, note=note)
            print(line, file=out, flush=True)
    except KeyboardInterrupt:
        pass  # Ctrl-C is how a watch ends
    return 0


def _demo(client: SyncErrorReplayClient, args: argparse.Namespace, out: TextIO) -> int:
    from errorreplay_server.demo import run_demo

    return run_demo(client, out, color=_color(args, out))


def _run_client_command(command: Command) -> Callable[[argparse.Namespace], int]:
    def run(args: argparse.Namespace) -> int:
        retry = WATCH_RETRY if command is _watch else RetryPolicy()
        try:
            with SyncErrorReplayClient(
                args.address,
                tls=args.tls,
                root_certificates=args.ca_cert,
                token=args.token,
                timeout=args.timeout,
                retry=retry,
            ) as client:
                return command(client, args, sys.stdout)
        except grpc.RpcError as exc:
            print(_error_line(exc), file=sys.stderr)
            return 1
        except BrokenPipeError:
            # The reader went away (`errorreplay watch | head`): stop quietly, like Ctrl-C.
            os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
            return 0
        except OSError as exc:  # an unreadable --ca-cert
            print(f"errorreplay: {exc}", file=sys.stderr)
            return 1
        except KeyboardInterrupt:
            return 130

    return run


def _error_line(exc: grpc.RpcError) -> str:
    # The client raises errorreplay.errors types: grpc.aio.AioRpcError, which is not a grpc.Call.
    is_call = isinstance(exc, grpc.Call | grpc.aio.AioRpcError)
    code = exc.code() if is_call else grpc.StatusCode.UNKNOWN
    details = exc.details() if is_call else str(exc)
    return f"errorreplay: {code.name}: {' '.join(str(details or '').split()) or 'no details'}"


# The parser.


def _connection_options(parser: argparse.ArgumentParser, *, top_level: bool) -> None:
    """Options accepted before or after the subcommand. Below the top level their defaults are
    suppressed, so `errorreplay --address X get ID` and `errorreplay get ID --address X` agree."""

    def default(value: Any) -> Any:
        return value if top_level else argparse.SUPPRESS

    group = parser.add_argument_group("connection")
    group.add_argument(
        "--address",
        default=default(os.environ.get("ERRORREPLAY_ADDRESS") or DEFAULT_ADDRESS),
        help="server host:port (default: $ERRORREPLAY_ADDRESS or localhost:50051)",
    )
    group.add_argument(
        "--token",
        default=default(os.environ.get("ERRORREPLAY_TOKEN") or None),
        help="bearer token sent as the authorization header (default: $ERRORREPLAY_TOKEN)",
    )
    group.add_argument(
        "--timeout",
        type=_positive_float,
        default=default(DEFAULT_TIMEOUT_SECONDS),
        help="deadline in seconds for each call (default: 10)",
    )
    group.add_argument("--tls", action="store_true", default=default(False), help="connect with TLS")
    group.add_argument("--ca-cert", default=default(None), metavar="PATH", help="PEM root certificates (implies --tls)")
    group.add_argument(
        "--color",
        choices=("auto", "always", "never"),
        default=default("auto"),
        help="colour output: auto means only on a terminal, and not when NO_COLOR is set",
    )


def _filter_options(parser: argparse.ArgumentParser, *, watch: bool = False) -> None:
    group = parser.add_argument_group("filters (all given must match)")
    group.add_argument("--resource", action="append", metavar="ID", help="resource id (repeatable)")
    group.add_argument("--min-severity", type=_severity, metavar="SEVERITY", help="info, low, medium, high or critical")
    group.add_argument("--service")
    group.add_argument("--environment")
    group.add_argument("--tag", action="append", type=_tag, default=[], metavar="KEY=VALUE", help="(repeatable)")
    if watch:
        return
    group.add_argument("--severity", action="append", type=_severity, metavar="SEVERITY", help="exact (repeatable)")
    group.add_argument("--source", action="append", type=_source, metavar="SOURCE", help="application, manual, ...")
    group.add_argument("--resource-type")
    group.add_argument("--error-type")
    group.add_argument("--correlation-id")
    group.add_argument("--trace-id")
    group.add_argument("--group", metavar="GROUP_ID")
    group.add_argument("--text", help="words that must all occur in the message")


def version_text() -> str:
    """`errorreplay X (errorreplay-client Y)`, from the installed distributions' metadata."""

    def installed(name: str) -> str:
        try:
            return metadata.version(name)
        except metadata.PackageNotFoundError:
            return "not installed"

    return f"errorreplay {installed('errorreplay')} (errorreplay-client {installed('errorreplay-client')})"


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="errorreplay", description="A DVR for production errors.")
    parser.add_argument("--version", action="version", version=version_text())
    _connection_options(parser, top_level=True)
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    serve = sub.add_parser("serve", help="run the gRPC server (configured by ERRORREPLAY_* variables)")
    serve.set_defaults(run=_serve)

    def client_command(name: str, command: Command, help: str) -> argparse.ArgumentParser:
        p = sub.add_parser(name, help=help, description=help)
        _connection_options(p, top_level=False)
        p.set_defaults(run=_run_client_command(command))
        return p

    capture = client_command("capture", _capture, "capture an error")
    capture.add_argument("-m", "--message", required=True)
    capture.add_argument("--severity", type=_severity, default=m.SEVERITY_MEDIUM, help="default: medium")
    capture.add_argument("--source", type=_source, default=m.SOURCE_MANUAL, help="default: manual")
    capture.add_argument("--resource", metavar="ID")
    capture.add_argument("--resource-type")
    capture.add_argument("--service")
    capture.add_argument("--environment")
    capture.add_argument("--release")
    capture.add_argument("--error-type")
    capture.add_argument("--correlation-id")
    capture.add_argument("--trace-id")
    capture.add_argument("--tag", action="append", type=_tag, default=[], metavar="KEY=VALUE", help="(repeatable)")
    capture.add_argument("--request-id", help="idempotency key: a repeat with the same id stores nothing new")
    capture.add_argument("--wait-for-context", action="store_true", help="answer after context enrichment ends")
    capture.add_argument("--json", action="store_true", help="print the whole response as JSON")

    get = client_command("get", _get, "show a stored error")
    get.add_argument("error_id", metavar="ID")
    get.add_argument("--json", action="store_true")

    replay = client_command("replay", _replay, "replay an error: timeline, propagation, root cause, recommendations")
    replay.add_argument("error_id", metavar="ID")
    replay.add_argument("--refresh-context", action="store_true", help="collect the context again")
    replay.add_argument("--json", action="store_true")

    search = client_command("search", _search, "search errors, newest first")
    _filter_options(search)
    search.add_argument("--since", type=_duration, metavar="DURATION", help="only errors this recent, e.g. 15m, 2h")
    search.add_argument("--limit", type=int, default=20, help="page size (default: 20)")
    search.add_argument("--page-token", default="")
    search.add_argument("--json", action="store_true")

    stats = client_command("stats", _stats, "error statistics")
    _filter_options(stats)
    stats.add_argument("--since", type=_duration, default=timedelta(hours=24), metavar="DURATION", help="default: 24h")
    stats.add_argument("--bucket", type=_duration, metavar="DURATION", help="timed_counts bucket (default: 1h)")
    stats.add_argument("--top", type=int, default=10, help="top groups to show (default: 10)")
    stats.add_argument("--json", action="store_true")

    watch = client_command("watch", _watch, "follow new errors as they arrive (Ctrl-C to stop)")
    _filter_options(watch, watch=True)
    watch.add_argument("--correlated", action="store_true", help="also show errors correlated with matching ones")
    watch.add_argument("--resume-after", default="", metavar="CURSOR", help="an error id or cursor to resume after")
    watch.add_argument("--json", action="store_true", help="one JSON object per line")

    client_command("demo", _demo, "seed a realistic cascade into a running server and replay it")
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    code: int = args.run(args)
    return code


if __name__ == "__main__":
    sys.exit(main())
