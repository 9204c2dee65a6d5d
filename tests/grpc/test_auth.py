"""Bearer-token auth over the wire: settings, the role table, every method for every role, open services."""

from __future__ import annotations

import logging
import secrets
import uuid
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path

import grpc
import pytest
from google.rpc import code_pb2
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection_pb2, reflection_pb2_grpc
from opentelemetry.proto.collector.logs.v1 import logs_service_pb2
from opentelemetry.proto.collector.trace.v1 import trace_service_pb2

from errorreplay.v1 import message_pb2 as m
from errorreplay.v1 import request_response_pb2 as rr
from errorreplay.v1 import service_pb2, service_pb2_grpc
from errorreplay_server.api import auth
from errorreplay_server.api.auth import (
    METHOD_ROLES,
    AuthInterceptor,
    TokenAuthenticator,
    bearer_token,
    build_interceptors,
    required_role,
)
from errorreplay_server.api.errors import status_for
from errorreplay_server.api.ratelimit import RateLimitInterceptor
from errorreplay_server.domain.errors import PermissionDenied, Unauthenticated
from errorreplay_server.grants import Role, TokenGrant
from errorreplay_server.security_settings import SecuritySettings
from errorreplay_server.server import RunningServer, start_server
from errorreplay_server.settings import Settings
from tests.grpc.conftest import server_settings, status_of

OTLP_METHODS = tuple(
    f"/{service.full_name}/{method.name}"
    for descriptor in (trace_service_pb2.DESCRIPTOR, logs_service_pb2.DESCRIPTOR)
    for service in descriptor.services_by_name.values()
    for method in service.methods
)
ALL_METHODS = (
    *(
        f"/{service.full_name}/{method.name}"
        for service in service_pb2.DESCRIPTOR.services_by_name.values()
        for method in service.methods
    ),
    *OTLP_METHODS,
)
STREAMING_METHODS = frozenset(
    f"/{service.full_name}/{method.name}"
    for service in service_pb2.DESCRIPTOR.services_by_name.values()
    for method in service.methods
    if method.server_streaming
)
AUTH_CODES = (grpc.StatusCode.UNAUTHENTICATED, grpc.StatusCode.PERMISSION_DENIED)


def new_token() -> str:
    return secrets.token_urlsafe(24)


def bearer(token: str) -> tuple[tuple[str, str], ...]:
    return (("authorization", f"Bearer {token}"),)


@dataclass
class Secured:
    running: RunningServer
    channel: grpc.aio.Channel
    interceptors: Sequence[grpc.aio.ServerInterceptor]

    @property
    def errors(self) -> service_pb2_grpc.ErrorReplayServiceStub:
        return service_pb2_grpc.ErrorReplayServiceStub(self.channel)


@asynccontextmanager
async def secured_server(
    tmp_path: Path,
    security: SecuritySettings,
    settings: Settings | None = None,
    credentials: grpc.ServerCredentials | None = None,
    channel: grpc.aio.Channel | None = None,
) -> AsyncIterator[Secured]:
    """A real server with the interceptors `security` asks for (used by the TLS and rate-limit tests too)."""
    interceptors = build_interceptors(security)
    running = await start_server(
        settings or server_settings(tmp_path), extra_interceptors=interceptors, credentials=credentials
    )
    channel = channel or grpc.aio.insecure_channel(f"127.0.0.1:{running.port}")
    try:
        yield Secured(running, channel, interceptors)
    finally:
        await channel.close()
        await running.stop(grace=None)


async def raw_call(
    channel: grpc.aio.Channel,
    method: str,
    payload: bytes = b"",
    metadata: Sequence[tuple[str, str]] = (),
    timeout: float = 5.0,
) -> grpc.StatusCode:
    """Calls `method` with raw request bytes; the status code (OK, or DEADLINE_EXCEEDED for a live stream)."""
    try:
        if method in STREAMING_METHODS:
            call = channel.unary_stream(method)(payload, metadata=tuple(metadata), timeout=timeout)
            async for _ in call:
                pass
        else:
            await channel.unary_unary(method)(payload, metadata=tuple(metadata), timeout=timeout)
    except grpc.aio.AioRpcError as err:
        return err.code()
    return grpc.StatusCode.OK


def report(run: str) -> m.ErrorReport:
    return m.ErrorReport(message="auth test", severity=m.SEVERITY_HIGH, source=m.SOURCE_APPLICATION, tags={"run": run})


@dataclass
class Tokens:
    reader: str
    writer: str
    admin: str
    read_write: str

    def security(self, **kw: object) -> SecuritySettings:
        grants = (
            TokenGrant(Role.READER, self.reader),
            TokenGrant(Role.WRITER, self.writer),
            TokenGrant(Role.ADMIN, self.admin),
            TokenGrant(Role.READER, self.read_write),
            TokenGrant(Role.WRITER, self.read_write),
        )
        return SecuritySettings(tokens=grants, **kw)  # type: ignore[arg-type]


@pytest.fixture
def tokens() -> Tokens:
    return Tokens(new_token(), new_token(), new_token(), new_token())


# --- settings ----------------------------------------------------------------------------------


def test_auth_is_off_without_tokens() -> None:
    security = Settings.from_env({}).security
    assert not security.auth_enabled and not security.tls_enabled and not security.rate_limit_enabled
    assert security.max_streams_per_token == 100
    interceptors = build_interceptors(security)
    assert not any(isinstance(i, AuthInterceptor) for i in interceptors)
    assert [type(i) for i in interceptors] == [RateLimitInterceptor]  # the stream cap alone
    assert build_interceptors(SecuritySettings(max_streams_per_token=0)) == []


def test_inline_tokens() -> None:
    security = Settings.from_env({"ERRORREPLAY_AUTH_TOKENS": " reader:r-tok , writer:w-tok,ADMIN:a-tok "}).security
    assert security.auth_enabled
    assert [(g.role, g.token) for g in security.tokens] == [
        (Role.READER, "r-tok"),
        (Role.WRITER, "w-tok"),
        (Role.ADMIN, "a-tok"),
    ]


def test_token_file_with_comments_and_several_roles_per_token(tmp_path: Path) -> None:
    path = tmp_path / "tokens"
    path.write_text("# role token\n\nreader  shared-tok\nwriter\tshared-tok\n  admin a-tok  \n")
    security = Settings.from_env(
        {"ERRORREPLAY_AUTH_TOKENS_FILE": str(path), "ERRORREPLAY_AUTH_TOKENS": "reader:inline-tok"}
    ).security
    # The file's grants and the inline ones add up.
    assert [(g.role, g.token) for g in security.grants] == [
        (Role.READER, "shared-tok"),
        (Role.WRITER, "shared-tok"),
        (Role.ADMIN, "a-tok"),
        (Role.READER, "inline-tok"),
    ]
    principal = TokenAuthenticator(security.grants).authenticate("shared-tok")
    assert principal is not None and principal.roles == {Role.READER, Role.WRITER}


SECRET = "s3cret-Token-value"


@pytest.mark.parametrize(
    ("file_text", "inline"),
    [
        (f"root {SECRET}\n", None),  # unknown role
        (f"{SECRET} reader\n", None),  # columns swapped: the "role" is the token
        ("reader\n", None),
        (f"reader {SECRET} extra\n", None),
        ("# nothing but a comment\n", None),  # a configured file without tokens must not open the server
        (None, f"reader{SECRET}"),
        (None, f"superuser:{SECRET}"),
        (None, "reader:"),
        (None, " , "),
        (None, f"reader:{SECRET}é"),
    ],
)
def test_bad_token_configuration_fails_without_echoing_the_token(
    tmp_path: Path, file_text: str | None, inline: str | None
) -> None:
    env = {}
    if file_text is not None:
        (tmp_path / "tokens").write_text(file_text)
        env["ERRORREPLAY_AUTH_TOKENS_FILE"] = str(tmp_path / "tokens")
    if inline is not None:
        env["ERRORREPLAY_AUTH_TOKENS"] = inline
    with pytest.raises(ValueError) as info:
        Settings.from_env(env)
    assert SECRET not in str(info.value)


def test_missing_token_file_fails(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="ERRORREPLAY_AUTH_TOKENS_FILE"):
        Settings.from_env({"ERRORREPLAY_AUTH_TOKENS_FILE": str(tmp_path / "absent")})


def test_repr_and_start_up_line_hide_tokens() -> None:
    security = Settings.from_env({"ERRORREPLAY_AUTH_TOKENS": f"admin:{SECRET},reader:{SECRET},writer:w-tok"}).security
    assert SECRET not in repr(security) and SECRET not in str(security.tokens)
    line = security.describe()
    assert line == ("tls=off auth=on (2 tokens; roles admin, reader, writer) rate_limit=off max_streams_per_caller=100")
    assert SECRET not in line and "w-tok" not in line
    assert SecuritySettings().describe() == "tls=off auth=off rate_limit=off max_streams_per_caller=100"


# --- the role table ------------------------------------------------------------------------------


def test_every_rpc_has_an_explicit_role() -> None:
    assert set(METHOD_ROLES) == set(ALL_METHODS)
    by_role = {role: sorted(p.rsplit("/", 1)[1] for p, r in METHOD_ROLES.items() if r == role) for role in Role}
    assert by_role[Role.WRITER] == [
        "BatchCaptureErrors",
        "CaptureError",
        "Export",
        "Export",
        "RecordChange",
        "UpsertResources",
    ]
    assert {METHOD_ROLES[method] for method in OTLP_METHODS} == {Role.WRITER}
    assert set(OTLP_METHODS) == {
        "/opentelemetry.proto.collector.trace.v1.TraceService/Export",
        "/opentelemetry.proto.collector.logs.v1.LogsService/Export",
    }
    assert by_role[Role.ADMIN] == ["UpdateErrorGroup"]
    assert by_role[Role.READER] == sorted(
        [
            "GetError",
            "SearchErrors",
            "ReplayError",
            "GetStatistics",
            "ListRecentErrors",
            "ListErrorsByResource",
            "ListErrorsByCorrelation",
            "ListErrorGroups",
            "SubscribeErrors",
            "GetTopology",
            "ListChanges",
        ]
    )


def test_open_and_unknown_methods() -> None:
    assert required_role("/grpc.health.v1.Health/Check") is None
    assert required_role("/grpc.health.v1.Health/Watch") is None
    assert required_role("/grpc.reflection.v1alpha.ServerReflection/ServerReflectionInfo") is None
    assert required_role("/grpc.reflection.v1.ServerReflection/ServerReflectionInfo") is None
    assert required_role("/errorreplay.v1.ErrorReplayService/DropEverything") is Role.ADMIN
    assert required_role("/errorreplay.v2.ErrorReplayService/CaptureError") is Role.ADMIN
    assert required_role("/some.Other/Method") is Role.ADMIN
    # A prefix trick must not reach the open list.
    assert required_role("/grpc.health.v1.HealthX/Check") is Role.ADMIN


@pytest.mark.parametrize(
    ("metadata", "expected"),
    [
        ([("authorization", "Bearer abc")], "abc"),
        ([("authorization", "bearer abc")], "abc"),
        ([("authorization", "  Bearer   abc  ")], "abc"),
        ([("x-other", "1"), ("authorization", "Bearer abc")], "abc"),
        ([], None),
        (None, None),
        ([("authorization", "Basic abc")], None),
        ([("authorization", "Bearer")], None),
        ([("authorization", "Bearer ")], None),
        ([("authorization", "Bearer a b")], None),
        ([("authorization", "abc")], None),
        ([("authorization", "Bearer abc"), ("authorization", "Bearer abc")], None),
        ([("authorization", b"Bearer abc")], None),
    ],
)
def test_bearer_token_parsing(metadata: list[tuple[str, object]] | None, expected: str | None) -> None:
    assert bearer_token(metadata) == expected


def test_every_configured_token_is_compared(monkeypatch: pytest.MonkeyPatch) -> None:
    """No early exit: the first, the last, an unknown and a missing token cost the same comparisons."""
    grants = [TokenGrant(Role.READER, f"token-{i}") for i in range(7)]
    authenticator = TokenAuthenticator(grants)
    real = auth.hmac.compare_digest
    calls: list[tuple[int, int]] = []

    def counting(a: bytes, b: bytes) -> bool:
        calls.append((len(a), len(b)))
        return real(a, b)

    monkeypatch.setattr(auth.hmac, "compare_digest", counting)
    for token in ("token-0", "token-6", "nope", "x" * 500, None):
        calls.clear()
        authenticator.authenticate(token)
        assert len(calls) == 7, token
        assert {lengths for lengths in calls} == {(32, 32)}  # digests: the length of a token leaks nothing


def test_admin_implies_every_role_and_writer_does_not_imply_reader() -> None:
    authenticator = TokenAuthenticator(
        [TokenGrant(Role.ADMIN, "a"), TokenGrant(Role.WRITER, "w"), TokenGrant(Role.READER, "r")]
    )
    admin, writer, reader = (authenticator.authenticate(t) for t in ("a", "w", "r"))
    assert admin and writer and reader
    assert all(admin.may(role) for role in Role)
    assert writer.may(Role.WRITER) and not writer.may(Role.READER) and not writer.may(Role.ADMIN)
    assert reader.may(Role.READER) and not reader.may(Role.WRITER) and not reader.may(Role.ADMIN)
    assert authenticator.authenticate("A") is None and authenticator.authenticate("") is None
    assert admin.key != writer.key and admin.key.startswith("token:")
    long_token = new_token()
    principal = TokenAuthenticator([TokenGrant(Role.READER, long_token)]).authenticate(long_token)
    assert principal is not None and long_token not in principal.key


def test_status_table_rows_for_auth() -> None:
    assert status_for(Unauthenticated("no")).code == code_pb2.UNAUTHENTICATED
    assert status_for(PermissionDenied("no")).code == code_pb2.PERMISSION_DENIED


# --- over the wire -------------------------------------------------------------------------------


async def test_every_method_for_every_role(tmp_path: Path, tokens: Tokens) -> None:
    callers = {
        "none": None,
        "unknown": new_token(),
        "reader": tokens.reader,
        "writer": tokens.writer,
        "admin": tokens.admin,
        "reader+writer": tokens.read_write,
    }
    allowed = {
        "none": set(),
        "unknown": set(),
        "reader": {Role.READER},
        "writer": {Role.WRITER},
        "admin": set(Role),
        "reader+writer": {Role.READER, Role.WRITER},
    }
    mismatches = []
    async with secured_server(tmp_path, tokens.security()) as srv:
        for method in ALL_METHODS:
            for name, token in callers.items():
                metadata = bearer(token) if token else ()
                code = await raw_call(srv.channel, method, b"", metadata, timeout=2.0)
                if name in ("none", "unknown"):
                    expected_ok = code == grpc.StatusCode.UNAUTHENTICATED
                elif METHOD_ROLES[method] in allowed[name]:
                    expected_ok = code not in (*AUTH_CODES, grpc.StatusCode.INTERNAL, grpc.StatusCode.UNKNOWN)
                else:
                    expected_ok = code == grpc.StatusCode.PERMISSION_DENIED
                if not expected_ok:
                    mismatches.append(f"{method} as {name}: {code.name}")
    assert not mismatches, "\n".join(mismatches)


async def test_roles_over_the_wire(tmp_path: Path, tokens: Tokens) -> None:
    run = uuid.uuid4().hex
    async with secured_server(tmp_path, tokens.security()) as srv:
        stub = srv.errors
        captured = await stub.CaptureError(rr.CaptureErrorRequest(error=report(run)), metadata=bearer(tokens.writer))
        search = rr.SearchErrorsRequest(filter=m.ErrorFilter(tags={"run": run}))
        with pytest.raises(grpc.aio.AioRpcError) as denied:
            await stub.SearchErrors(search, metadata=bearer(tokens.writer))
        assert denied.value.code() == grpc.StatusCode.PERMISSION_DENIED
        assert "SearchErrors needs the reader role" in (denied.value.details() or "")
        assert status_of(denied.value).code == code_pb2.PERMISSION_DENIED
        found = await stub.SearchErrors(search, metadata=bearer(tokens.reader))
        assert [e.error_id for e in found.errors] == [captured.error_id]
        with pytest.raises(grpc.aio.AioRpcError) as denied:
            await stub.CaptureError(rr.CaptureErrorRequest(error=report(run)), metadata=bearer(tokens.reader))
        assert denied.value.code() == grpc.StatusCode.PERMISSION_DENIED
        update = rr.UpdateErrorGroupRequest(group_id=captured.group_id, status=m.ERROR_GROUP_STATUS_RESOLVED)
        for token in (tokens.reader, tokens.writer, tokens.read_write):
            with pytest.raises(grpc.aio.AioRpcError) as denied:
                await stub.UpdateErrorGroup(update, metadata=bearer(token))
            assert denied.value.code() == grpc.StatusCode.PERMISSION_DENIED
        updated = await stub.UpdateErrorGroup(update, metadata=bearer(tokens.admin))
        assert updated.group.status == m.ERROR_GROUP_STATUS_RESOLVED
        # The read-write token does both.
        again = await stub.CaptureError(rr.CaptureErrorRequest(error=report(run)), metadata=bearer(tokens.read_write))
        found = await stub.SearchErrors(search, metadata=bearer(tokens.read_write))
        assert again.error_id in {e.error_id for e in found.errors}


async def test_missing_and_bad_credentials_are_unauthenticated(tmp_path: Path, tokens: Tokens) -> None:
    capture = "/errorreplay.v1.ErrorReplayService/CaptureError"
    async with secured_server(tmp_path, tokens.security()) as srv:
        cases: list[Sequence[tuple[str, str]]] = [
            (),
            bearer(new_token()),
            bearer(tokens.writer + "x"),
            bearer(tokens.writer[:-1]),
            (("authorization", f"Basic {tokens.writer}"),),
            (("authorization", tokens.writer),),
            (("authorization", f"Bearer {tokens.writer}"), ("authorization", f"Bearer {tokens.writer}")),
            (("x-api-key", tokens.writer),),
        ]
        for metadata in cases:
            assert await raw_call(srv.channel, capture, b"", metadata) == grpc.StatusCode.UNAUTHENTICATED, metadata
        # Unauthenticated bytes are refused before parsing: garbage is UNAUTHENTICATED, not INVALID_ARGUMENT.
        assert await raw_call(srv.channel, capture, b"\xff\xff\xff\xff") == grpc.StatusCode.UNAUTHENTICATED
        with pytest.raises(grpc.aio.AioRpcError) as info:
            await srv.errors.GetError(rr.GetErrorRequest(error_id="err_x"))
        assert "Bearer" in (info.value.details() or "")
        assert status_of(info.value).code == code_pb2.UNAUTHENTICATED


async def test_health_and_reflection_stay_open(tmp_path: Path, tokens: Tokens) -> None:
    async with secured_server(tmp_path, tokens.security()) as srv:
        reply = await health_pb2_grpc.HealthStub(srv.channel).Check(health_pb2.HealthCheckRequest())
        assert reply.status == health_pb2.HealthCheckResponse.SERVING
        stream = reflection_pb2_grpc.ServerReflectionStub(srv.channel).ServerReflectionInfo(
            [reflection_pb2.ServerReflectionRequest(list_services="")]
        )
        names = set()
        async for response in stream:
            names |= {s.name for s in response.list_services_response.service}
        assert {
            "errorreplay.v1.ErrorReplayService",
            "grpc.health.v1.Health",
            "opentelemetry.proto.collector.trace.v1.TraceService",
            "opentelemetry.proto.collector.logs.v1.LogsService",
        } <= names


async def test_unknown_methods_are_admin_only(tmp_path: Path, tokens: Tokens) -> None:
    unknown = "/errorreplay.v1.ErrorReplayService/NotYetInTheTable"
    async with secured_server(tmp_path, tokens.security()) as srv:
        assert await raw_call(srv.channel, unknown) == grpc.StatusCode.UNAUTHENTICATED
        assert await raw_call(srv.channel, unknown, metadata=bearer(tokens.read_write)) == (
            grpc.StatusCode.PERMISSION_DENIED
        )
        assert await raw_call(srv.channel, unknown, metadata=bearer(tokens.admin)) == grpc.StatusCode.UNIMPLEMENTED
        # Without a token nothing tells an existing method from a missing one.
        assert await raw_call(srv.channel, "/some.Other/Method") == grpc.StatusCode.UNAUTHENTICATED


async def test_tokens_never_reach_logs_or_statuses(
    tmp_path: Path, tokens: Tokens, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    wrong = new_token()
    seen: list[str] = []
    async with secured_server(tmp_path, tokens.security()) as srv:
        for method in ALL_METHODS:
            for token in (tokens.reader, tokens.writer, tokens.admin, wrong):
                try:
                    if method in STREAMING_METHODS:
                        async for _ in srv.channel.unary_stream(method)(b"", metadata=bearer(token), timeout=0.5):
                            pass
                    else:
                        await srv.channel.unary_unary(method)(b"", metadata=bearer(token), timeout=2)
                except grpc.aio.AioRpcError as err:
                    seen.append(f"{err.details()} {status_of(err)}")
    text = caplog.text + "\n".join(seen)
    assert "permission denied" in caplog.text  # the denials are logged, by method and peer
    for token in (tokens.reader, tokens.writer, tokens.admin, tokens.read_write, wrong):
        assert token not in text


# --- `errorreplay serve` reads the security settings -------------------------------------------------


def test_serve_applies_auth_from_the_environment(tmp_path: Path) -> None:
    import grpc as sync_grpc

    from tests.e2e.server_process import ServerProcess

    token = new_token()
    server = ServerProcess(tmp_path, extra_env={"ERRORREPLAY_AUTH_TOKENS": f"writer:{token}"}).start()
    try:
        with sync_grpc.insecure_channel(server.address) as channel:
            stub = service_pb2_grpc.ErrorReplayServiceStub(channel)
            request = rr.CaptureErrorRequest(error=report(uuid.uuid4().hex))
            with pytest.raises(sync_grpc.RpcError) as info:
                stub.CaptureError(request, timeout=10)
            assert info.value.code() == sync_grpc.StatusCode.UNAUTHENTICATED  # type: ignore[attr-defined]
            assert stub.CaptureError(request, metadata=bearer(token), timeout=10).error_id
    finally:
        server.stop()
    assert token not in server.output()
