"""The `errorreplay` command: `serve` runs the server; the other subcommands talk to one over gRPC.

Exit codes (a failure prints one line, `errorreplay: CODE: details`, on stderr):
- 0: success;
- 1: the call failed for any other reason: UNAVAILABLE (no server, or it is shutting down),
  DEADLINE_EXCEEDED, PERMISSION_DENIED, INTERNAL, ...; or `serve` could not start;
- 2: usage: bad flags or arguments, an unreadable or malformed input file, a configuration error,
  or the server answered INVALID_ARGUMENT;
- 3: the server answered NOT_FOUND (no such error, group or resource);
- 130: interrupted (Ctrl-C) before the command finished.
Rendering lives in cli_render so that it can be tested without a terminal or a server.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import os
import sys
from collections.abc import Callable, Coroutine
from datetime import UTC, datetime, timedelta
from importlib import metadata
from pathlib import Path
from typing import TYPE_CHECKING, Any, TextIO

import grpc

from errorreplay.client import RetryPolicy, timestamp
from errorreplay.sync_client import SyncErrorReplayClient
from errorreplay.v1 import message_pb2 as m
from errorreplay.v1 import request_response_pb2 as rr
from errorreplay_server import cli_render
from errorreplay_server.console.links import console_line
from errorreplay_server.domain.durations import parse_duration
from errorreplay_server.notify.cli import add_commands as add_notification_commands

if TYPE_CHECKING:  # the settings (and pydantic) load with serve and config, not with the client commands
    from errorreplay_server.settings import Settings
    from errorreplay_server.settings_schema import Loaded

DEFAULT_ADDRESS = "localhost:50051"
DEFAULT_TIMEOUT_SECONDS = 10.0
WATCH_RETRY = RetryPolicy(max_attempts=10, max_backoff=5.0)
"""watch reconnects (from its last cursor) this many times in a row before it gives up."""

Command = Callable[[SyncErrorReplayClient, argparse.Namespace, TextIO], int]

EXIT_OK = 0
EXIT_FAILURE = 1
EXIT_USAGE = 2
EXIT_NOT_FOUND = 3
EXIT_INTERRUPTED = 130
_EXIT_FOR_STATUS = {grpc.StatusCode.NOT_FOUND: EXIT_NOT_FOUND, grpc.StatusCode.INVALID_ARGUMENT: EXIT_USAGE}


def exit_code_for(code: grpc.StatusCode) -> int:
    """The documented exit code for a failed call (module docstring)."""
    return _EXIT_FOR_STATUS.get(code, EXIT_FAILURE)


class UsageError(Exception):
    """Bad input found by a command itself (an unreadable or malformed file): exit 2."""


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
    from errorreplay_server.server import StartupError, serve

    try:
        settings = _serve_settings(args)
    except ValueError as exc:
        print(f"errorreplay: configuration error: {exc}", file=sys.stderr)
        return EXIT_USAGE
    logging.basicConfig(level=settings.log_level, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    if settings.workers:
        from errorreplay_server.engine.supervisor import supervise

        return EXIT_OK if supervise(settings, settings.workers) == 0 else EXIT_FAILURE
    try:
        run_event_loop(serve(settings), settings.event_loop)
    except StartupError as exc:  # names what failed; what had started is already stopped
        logging.getLogger("errorreplay").error("cannot start: %s", exc)
        return EXIT_FAILURE
    except Exception as exc:  # e.g. the store cannot be opened: one clear line, non-zero exit
        logging.getLogger("errorreplay").error("cannot start: %s: %s", type(exc).__name__, exc)
        return EXIT_FAILURE
    return EXIT_OK


def _serve_settings(args: argparse.Namespace) -> Settings:
    """The effective settings with serve's flags on top (settings_schema.py: defaults, file, variables, flags)."""
    return _load_settings(args).settings


def _load_settings(args: argparse.Namespace) -> Loaded:
    from errorreplay_server.settings_schema import load

    flags: dict[str, tuple[str, Any]] = {}
    if getattr(args, "address_given", False) and args.command == "serve":
        flags["ERRORREPLAY_LISTEN_ADDRESS"] = ("--address", args.address)
    for flag, variable in SERVE_FLAGS.items():
        value = getattr(args, flag.removeprefix("--").replace("-", "_"), None)
        if value is not None:
            flags[variable] = (flag, value)
    config = Path(args.config) if getattr(args, "config", None) else None
    return load(os.environ, config, flags)


SERVE_FLAGS = {
    "--data-dir": "ERRORREPLAY_DATA_DIR",
    "--store": "ERRORREPLAY_STORE",
    "--metrics-address": "ERRORREPLAY_METRICS_ADDRESS",
    "--workers": "ERRORREPLAY_WORKERS",
}
"""serve's flags that set a setting, each through its variable's parser."""


def _config(args: argparse.Namespace) -> int:
    try:
        loaded = _load_settings(args)
    except ValueError as exc:
        print(f"errorreplay: configuration error: {exc}", file=sys.stderr)
        return EXIT_USAGE
    from errorreplay_server.settings_schema import effective, to_toml

    sections = effective(loaded)
    sys.stdout.write(json.dumps(sections, indent=2) + "\n" if args.json else to_toml(sections))
    return EXIT_OK


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


def _duration(text: str) -> timedelta:
    try:
        return timedelta(seconds=parse_duration(text))
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


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
    _show(args, out, replay, cli_render.render_replay)
    if not args.json:
        out.write(console_line(replay.error.error_id, args.address, os.environ))
    return 0


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
            f"(showing {len(page.errors)} of {'more than ' if page.total_size_capped else ''}{page.total_size};"
            f" next page: --page-token {page.next_page_token})",
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
    if args.json:
        print(cli_render.to_json(stats), file=out)
    else:
        out.write(cli_render.render_statistics(stats, color=_color(args, out), start=end - args.since, end=end))
    return EXIT_OK


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

    return run_demo(client, out, color=_color(args, out), console=lambda i: console_line(i, args.address, os.environ))


_group_status = _enum_type(m.ErrorGroupStatus, "ERROR_GROUP_STATUS_")
_change_kind = _enum_type(m.ChangeKind, "CHANGE_KIND_")
_GROUP_ORDERS = {"last-seen": rr.ERROR_GROUP_ORDER_LAST_SEEN, "count": rr.ERROR_GROUP_ORDER_COUNT}
_GROUP_ACTIONS = {
    "ack": m.ERROR_GROUP_STATUS_ACKNOWLEDGED,
    "resolve": m.ERROR_GROUP_STATUS_RESOLVED,
    "mute": m.ERROR_GROUP_STATUS_MUTED,
    "reopen": m.ERROR_GROUP_STATUS_OPEN,
}
# ListErrorGroups pages read by `groups show` (there is no get-one RPC) before it answers NOT_FOUND.
GROUP_SCAN_PAGE_SIZE = 500
RECENT_ERRORS_SHOWN = 5


def _groups_list(client: SyncErrorReplayClient, args: argparse.Namespace, out: TextIO) -> int:
    page = client.list_groups(
        statuses=args.status or [],
        order_by=_GROUP_ORDERS[args.order],
        page_size=args.limit,
        page_token=args.page_token,
    )
    if args.json:
        print(cli_render.to_json(page), file=out)
        return EXIT_OK
    out.write(cli_render.render_groups(page.groups, color=_color(args, out)))
    if page.next_page_token:
        print(f"(next page: --page-token {page.next_page_token})", file=out)
    return EXIT_OK


def _find_group(client: SyncErrorReplayClient, group_id: str) -> m.ErrorGroup:
    token = ""
    while True:
        page = client.list_groups(page_size=GROUP_SCAN_PAGE_SIZE, page_token=token)
        for group in page.groups:
            if group.group_id == group_id:
                return group
        token = page.next_page_token
        if not token:
            raise NotFoundError(f"group {group_id!r} not found")


class NotFoundError(Exception):
    """Something the command looked for itself is not there: exit 3, like NOT_FOUND."""


def _groups_show(client: SyncErrorReplayClient, args: argparse.Namespace, out: TextIO) -> int:
    group = _find_group(client, args.group_id)
    if args.json:
        print(cli_render.to_json(group), file=out)
        return EXIT_OK
    recent = client.search(m.ErrorFilter(group_id=group.group_id), page_size=RECENT_ERRORS_SHOWN).errors
    out.write(cli_render.render_group(group, recent, color=_color(args, out)))
    return EXIT_OK


def _groups_update(client: SyncErrorReplayClient, args: argparse.Namespace, out: TextIO) -> int:
    group = client.update_group(args.group_id, _GROUP_ACTIONS[args.action])
    if args.json:
        print(cli_render.to_json(group), file=out)
    else:
        out.write(cli_render.render_groups([group], color=_color(args, out)))
    return EXIT_OK


def load_topology_file(path: str) -> tuple[list[m.Resource], list[m.Dependency]]:
    """Resources and dependencies from a YAML or JSON file (`-` reads stdin); see the README
    (Command line) for the format. Raises UsageError naming the file and the bad entry."""
    import yaml

    try:
        text = sys.stdin.read() if path == "-" else Path(path).read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise UsageError(f"{path}: cannot read: {exc}") from exc
    try:
        doc = json.loads(text) if path.endswith(".json") else yaml.safe_load(text)
    except (ValueError, yaml.YAMLError) as exc:
        raise UsageError(f"{path}: not valid {'JSON' if path.endswith('.json') else 'YAML'}: {exc}") from exc
    if not isinstance(doc, dict) or not set(doc) <= {"resources", "dependencies"} or not doc:
        raise UsageError(f"{path}: expected a mapping with `resources` and/or `dependencies`")
    resources: list[m.Resource] = []
    dependencies: list[m.Dependency] = []

    def text_field(where: str, entry: dict[str, Any], *names: str) -> str:
        for name in names:
            value = entry.get(name)
            if value is not None:
                if not isinstance(value, str | int | float) or isinstance(value, bool):
                    raise UsageError(f"{path}: {where}.{name}: expected a string")
                return str(value)
        return ""

    for i, entry in enumerate(_listed(path, doc, "resources")):
        where = f"resources[{i}]"
        if isinstance(entry, str):
            entry = {"id": entry}
        if not isinstance(entry, dict):
            raise UsageError(f"{path}: {where}: expected an id or a mapping")
        unknown = set(entry) - {"id", "type", "name", "labels", "depends_on"}
        if unknown:
            raise UsageError(f"{path}: {where}: unknown key(s) {', '.join(sorted(map(str, unknown)))}")
        resource_id = text_field(where, entry, "id")
        if not resource_id:
            raise UsageError(f"{path}: {where}.id: is required")
        labels = entry.get("labels") or {}
        if not isinstance(labels, dict):
            raise UsageError(f"{path}: {where}.labels: expected a mapping")
        resources.append(
            m.Resource(
                id=resource_id,
                type=text_field(where, entry, "type"),
                name=text_field(where, entry, "name"),
                labels={str(k): str(v) for k, v in labels.items()},
            )
        )
        depends_on = entry.get("depends_on") or []
        if not isinstance(depends_on, list) or not all(isinstance(d, str) and d for d in depends_on):
            raise UsageError(f"{path}: {where}.depends_on: expected a list of resource ids")
        dependencies += [m.Dependency(dependent_id=resource_id, dependency_id=d) for d in depends_on]
    for i, entry in enumerate(_listed(path, doc, "dependencies")):
        where = f"dependencies[{i}]"
        if isinstance(entry, str) and "->" in entry:
            dependent, _, dependency = (part.strip() for part in entry.partition("->"))
        elif isinstance(entry, dict) and set(entry) <= {"dependent", "dependency", "dependent_id", "dependency_id"}:
            dependent = text_field(where, entry, "dependent", "dependent_id")
            dependency = text_field(where, entry, "dependency", "dependency_id")
        else:
            raise UsageError(f"{path}: {where}: expected `dependent -> dependency` or {{dependent: …, dependency: …}}")
        if not dependent or not dependency:
            raise UsageError(f"{path}: {where}: both the dependent and its dependency are required")
        dependencies.append(m.Dependency(dependent_id=dependent, dependency_id=dependency))
    return resources, dependencies


def _listed(path: str, doc: dict[str, Any], key: str) -> list[Any]:
    value = doc.get(key) or []
    if not isinstance(value, list):
        raise UsageError(f"{path}: {key}: expected a list")
    return value


def _topology_apply(client: SyncErrorReplayClient, args: argparse.Namespace, out: TextIO) -> int:
    resources, dependencies = load_topology_file(args.file)
    response = client.upsert_resources(resources, dependencies)
    if args.json:
        print(cli_render.to_json(response), file=out)
    else:
        print(
            f"applied {response.resources_upserted} resources and {response.dependencies_upserted} dependencies"
            f" from {args.file}",
            file=out,
        )
    return EXIT_OK


def _topology_show(client: SyncErrorReplayClient, args: argparse.Namespace, out: TextIO) -> int:
    topology = client.get_topology(args.resource_id, depth=args.depth)
    return _show(args, out, topology, cli_render.render_topology)


def _changes_record(client: SyncErrorReplayClient, args: argparse.Namespace, out: TextIO) -> int:
    change = m.Change(
        kind=args.kind,
        resource_id=args.resource,
        version=args.version or "",
        description=args.description or "",
        author=args.author or "",
        metadata=dict(args.meta),
    )
    if args.change_id:
        change.change_id = args.change_id
    if args.ago is not None:
        change.occurred_at.CopyFrom(timestamp(datetime.now(UTC) - args.ago))
    recorded = client.record_change(change)
    if args.json:
        print(cli_render.to_json(recorded), file=out)
    else:
        print(recorded.change_id, file=out)
    return EXIT_OK


def _changes_list(client: SyncErrorReplayClient, args: argparse.Namespace, out: TextIO) -> int:
    end = datetime.now(UTC)
    response = client.list_changes(
        resource_ids=args.resource or [],
        start_time=end - args.since,
        end_time=end,
        kinds=args.kind or [],
        page_size=args.limit,
    )
    if args.json:
        print(cli_render.to_json(response), file=out)
    else:
        out.write(cli_render.render_changes(response.changes, color=_color(args, out)))
    return EXIT_OK


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
            return exit_code_for(exc.code() if isinstance(exc, grpc.Call) else grpc.StatusCode.UNKNOWN)
        except UsageError as exc:
            print(f"errorreplay: {exc}", file=sys.stderr)
            return EXIT_USAGE
        except NotFoundError as exc:
            print(f"errorreplay: NOT_FOUND: {exc}", file=sys.stderr)
            return EXIT_NOT_FOUND
        except BrokenPipeError:
            # The reader went away (`errorreplay watch | head`): stop quietly, like Ctrl-C.
            os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
            return EXIT_OK
        except OSError as exc:  # an unreadable --ca-cert
            print(f"errorreplay: {exc}", file=sys.stderr)
            return EXIT_FAILURE
        except KeyboardInterrupt:
            return EXIT_INTERRUPTED

    return run


def _error_line(exc: grpc.RpcError) -> str:
    # The client raises errorreplay.errors types: grpc.aio.AioRpcError, which is not a grpc.Call.
    is_call = isinstance(exc, grpc.Call | grpc.aio.AioRpcError)
    code = exc.code() if is_call else grpc.StatusCode.UNKNOWN
    details = exc.details() if is_call else str(exc)
    return f"errorreplay: {code.name}: {' '.join(str(details or '').split()) or 'no details'}"


# The parser.


class _ExplicitAddress(argparse.Action):
    """Stores --address and remembers that it was given, so that `serve` listens on it (the
    default, $ERRORREPLAY_ADDRESS, is a client setting; serve's default is its own variable)."""

    def __call__(self, parser: argparse.ArgumentParser, namespace: argparse.Namespace, value: Any, *_: Any) -> None:
        namespace.address = value
        namespace.address_given = True


def _connection_options(parser: argparse.ArgumentParser, *, top_level: bool) -> None:
    """Options accepted before or after the subcommand. Below the top level their defaults are
    suppressed, so `errorreplay --address X get ID` and `errorreplay get ID --address X` agree."""

    def default(value: Any) -> Any:
        return value if top_level else argparse.SUPPRESS

    group = parser.add_argument_group("connection")
    group.add_argument(
        "--address",
        action=_ExplicitAddress,
        default=default(os.environ.get("ERRORREPLAY_ADDRESS") or DEFAULT_ADDRESS),
        help="server host:port (default: $ERRORREPLAY_ADDRESS or localhost:50051); for serve, the address to listen on",
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


def _config_option(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--config", metavar="FILE", help="TOML settings file; variables win over it (default: $ERRORREPLAY_CONFIG)"
    )


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="errorreplay", description="A DVR for production errors.")
    parser.add_argument("--version", action="version", version=version_text())
    _connection_options(parser, top_level=True)
    parser.set_defaults(address_given=False)
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    serve = sub.add_parser(
        "serve",
        help="run the gRPC server (configured by ERRORREPLAY_* variables and --config; these flags win)",
        description="Run the gRPC server. Flags win over the ERRORREPLAY_* variables, which win over the"
        " config file; --address given"
        " before `serve` works too, and serve's own --address wins over it.",
    )
    serve.add_argument(
        "--address",
        action=_ExplicitAddress,
        default=argparse.SUPPRESS,
        help="host:port to listen on (default: $ERRORREPLAY_LISTEN_ADDRESS or localhost:50051)",
    )
    serve.add_argument("--data-dir", help="where the embedded store lives (default: $ERRORREPLAY_DATA_DIR or ./data)")
    serve.add_argument("--store", choices=("sqlite", "neo4j"), help="default: $ERRORREPLAY_STORE or sqlite")
    serve.add_argument(
        "--metrics-address",
        metavar="HOST:PORT",
        help="Prometheus metrics listener, or `off` (default: $ERRORREPLAY_METRICS_ADDRESS or 127.0.0.1:9464)",
    )
    serve.add_argument(
        "--workers",
        metavar="N",
        help="serve from N worker processes on one port, with one writer process that owns the store"
        " (default: $ERRORREPLAY_WORKERS or 0, one process)",
    )
    _config_option(serve)
    serve.set_defaults(run=_serve)

    config = sub.add_parser(
        "config",
        help="print the effective server settings (secrets masked)",
        description="Print the settings `serve` would use: defaults, then the config file, then the"
        " ERRORREPLAY_* variables. Tokens, passwords and keys are masked. The output is a valid config file.",
    )
    _config_option(config)
    config.add_argument("--json", action="store_true", help="print JSON instead of TOML")
    config.set_defaults(run=_config)

    def client_command(name: str, command: Command, help: str, within: Any = sub) -> argparse.ArgumentParser:
        p: argparse.ArgumentParser = within.add_parser(name, help=help, description=help)
        _connection_options(p, top_level=False)
        p.set_defaults(run=_run_client_command(command))
        return p

    def command_group(name: str, help: str) -> Any:
        p = sub.add_parser(name, help=help, description=help)
        return p.add_subparsers(dest=f"{name}_command", required=True, metavar="ACTION")

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

    groups = command_group("groups", "list, show and triage error groups")
    groups_list = client_command("list", _groups_list, "list error groups", groups)
    groups_list.add_argument(
        "--status", action="append", type=_group_status, metavar="STATUS", help="open, acknowledged, resolved or muted"
    )
    groups_list.add_argument("--order", choices=sorted(_GROUP_ORDERS), default="last-seen", help="default: last-seen")
    groups_list.add_argument("--limit", type=int, default=50, help="page size (default: 50, at most 500)")
    groups_list.add_argument("--page-token", default="")
    groups_list.add_argument("--json", action="store_true")
    groups_show = client_command("show", _groups_show, "show a group and its latest errors", groups)
    groups_show.add_argument("group_id", metavar="GROUP_ID")
    groups_show.add_argument("--json", action="store_true")
    for action, help in (
        ("ack", "acknowledge a group"),
        ("resolve", "resolve a group (a new error in it reopens it as a regression)"),
        ("mute", "mute a group (left out of statistics and streams)"),
        ("reopen", "open a group again"),
    ):
        p = client_command(action, _groups_update, help, groups)
        p.add_argument("group_id", metavar="GROUP_ID")
        p.add_argument("--json", action="store_true")
        p.set_defaults(action=action)

    topology = command_group("topology", "declare and show resources and their dependencies")
    apply = client_command(
        "apply", _topology_apply, "upsert resources and dependencies from a YAML or JSON file", topology
    )
    apply.add_argument("file", metavar="FILE", help="YAML, or JSON when it ends in .json; - reads stdin")
    apply.add_argument("--json", action="store_true")
    show = client_command("show", _topology_show, "a resource's neighbourhood", topology)
    show.add_argument("resource_id", metavar="RESOURCE")
    show.add_argument("--depth", type=int, default=0, help="hops in either direction (default: 2, at most 5)")
    show.add_argument("--json", action="store_true")

    changes = command_group("changes", "record and list deployments and config changes")
    record = client_command("record", _changes_record, "record a deployment or config change", changes)
    record.add_argument("--resource", required=True, metavar="ID")
    record.add_argument(
        "--kind", type=_change_kind, default=m.CHANGE_KIND_DEPLOYMENT, help="deployment (default), config or topology"
    )
    record.add_argument("--version")
    record.add_argument("--description", "-d")
    record.add_argument("--author")
    record.add_argument("--meta", action="append", type=_tag, default=[], metavar="KEY=VALUE", help="(repeatable)")
    record.add_argument("--ago", type=_duration, metavar="DURATION", help="when it happened, e.g. 20m (default: now)")
    record.add_argument("--change-id", help="idempotency key: recording the same id again updates it")
    record.add_argument("--json", action="store_true")
    listing = client_command("list", _changes_list, "changes, newest first", changes)
    listing.add_argument("--resource", action="append", metavar="ID", help="(repeatable; default: every resource)")
    listing.add_argument("--kind", action="append", type=_change_kind, metavar="KIND", help="(repeatable)")
    listing.add_argument(
        "--since", type=_duration, default=timedelta(hours=24), metavar="DURATION", help="default: 24h"
    )
    listing.add_argument("--limit", type=int, default=100, help="default: 100, at most 1000")
    listing.add_argument("--json", action="store_true")

    client_command("demo", _demo, "seed a realistic cascade into a running server and replay it")
    add_notification_commands(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    code: int = args.run(args)
    return code


if __name__ == "__main__":
    sys.exit(main())
