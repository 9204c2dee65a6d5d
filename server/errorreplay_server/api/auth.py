"""Bearer-token authentication and role-based authorisation, and the assembly of security interceptors.

Auth is on when tokens are configured (security_settings: `ERRORREPLAY_AUTH_TOKENS_FILE` with
`role token` lines, or `ERRORREPLAY_AUTH_TOKENS=role:token,...`). Clients then send
`authorization: Bearer <token>` metadata.

Roles (METHOD_ROLES is the table):
- `writer`: CaptureError, BatchCaptureErrors, UpsertResources, RecordChange, and the OTLP
  receiver's TraceService/Export and LogsService/Export;
- `reader`: GetError, ReplayError, SearchErrors, GetStatistics, the List* RPCs, SubscribeErrors,
  GetTopology, ListChanges;
- `admin`: UpdateErrorGroup, any method not in the table (deny by default), and everything above.

`admin` implies `reader` and `writer`. `writer` does not imply `reader`: a service that reports
errors cannot read other services' errors (they hold customer data). A client that needs both is
granted both roles on the same token.

Outcomes: no `authorization` metadata, a scheme other than Bearer, or an unknown token is
UNAUTHENTICATED; a known token without the role is PERMISSION_DENIED. Both are decided before the
request is parsed, so unauthenticated bytes never reach the protobuf parser. grpc.health.v1.Health
and server reflection stay open.

Tokens are compared in constant time: the SHA-256 of the presented token is compared with
hmac.compare_digest against the digest of every configured token, with no early exit, so neither
the timing nor the length of a token tells which one nearly matched. Only digests are kept, and no
token is logged or put into a status message.
"""

from __future__ import annotations

import hashlib
import hmac
import inspect
import logging
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable, Mapping
from contextvars import ContextVar
from dataclasses import dataclass
from types import MappingProxyType
from typing import Any

import grpc
from grpc_status import rpc_status

from errorreplay_server.api.errors import status_for
from errorreplay_server.api.ratelimit import (
    CallCost,
    CallerKey,
    RateLimitInterceptor,
    StreamLimiter,
    TokenBucketLimiter,
    peer_caller_key,
)
from errorreplay_server.capture.service import CaptureRequest
from errorreplay_server.domain.errors import DomainError, PermissionDenied, Unauthenticated
from errorreplay_server.grants import Role, TokenGrant
from errorreplay_server.security_settings import SecuritySettings
from errorreplay_server.settings import OtlpSettings

log = logging.getLogger(__name__)

AUTHORIZATION_KEY = "authorization"
OPEN_METHOD_PREFIXES = (
    "/grpc.health.v1.Health/",
    "/grpc.reflection.v1alpha.ServerReflection/",
    "/grpc.reflection.v1.ServerReflection/",
)
"""Methods served to anyone: load balancers probe health, and grpcurl needs reflection."""

_ERRORS = "/errorreplay.v1.ErrorReplayService/"
_TOPOLOGY = "/errorreplay.v1.TopologyService/"
_OTLP_TRACES = "/opentelemetry.proto.collector.trace.v1.TraceService/"
_OTLP_LOGS = "/opentelemetry.proto.collector.logs.v1.LogsService/"

METHOD_ROLES: Mapping[str, Role] = MappingProxyType(
    {
        _ERRORS + "CaptureError": Role.WRITER,
        _ERRORS + "BatchCaptureErrors": Role.WRITER,
        _TOPOLOGY + "UpsertResources": Role.WRITER,
        _TOPOLOGY + "RecordChange": Role.WRITER,
        _OTLP_TRACES + "Export": Role.WRITER,
        _OTLP_LOGS + "Export": Role.WRITER,
        _ERRORS + "GetError": Role.READER,
        _ERRORS + "ReplayError": Role.READER,
        _ERRORS + "SearchErrors": Role.READER,
        _ERRORS + "GetStatistics": Role.READER,
        _ERRORS + "ListRecentErrors": Role.READER,
        _ERRORS + "ListErrorsByResource": Role.READER,
        _ERRORS + "ListErrorsByCorrelation": Role.READER,
        _ERRORS + "ListErrorGroups": Role.READER,
        _ERRORS + "SubscribeErrors": Role.READER,
        _TOPOLOGY + "GetTopology": Role.READER,
        _TOPOLOGY + "ListChanges": Role.READER,
        _ERRORS + "UpdateErrorGroup": Role.ADMIN,
    }
)
"""The role each RPC needs. A new RPC is admin-only until it is added here."""


def is_open(method: str) -> bool:
    return method.startswith(OPEN_METHOD_PREFIXES)


def required_role(method: str) -> Role | None:
    """The role `method` needs; None for the open methods; admin for anything unknown."""
    if is_open(method):
        return None
    return METHOD_ROLES.get(method, Role.ADMIN)


@dataclass(frozen=True, slots=True)
class Principal:
    """An authenticated caller. `key` identifies it for rate limits; it is derived from, not, the token."""

    roles: frozenset[Role]
    key: str

    def may(self, role: Role) -> bool:
        return Role.ADMIN in self.roles or role in self.roles


_CALLER: ContextVar[Principal | None] = ContextVar("errorreplay_caller", default=None)


def current_caller() -> Principal | None:
    """The authenticated caller of the RPC being handled; None when auth is off. Capture scopes
    request ids to it (CaptureRequest.idempotency_scope)."""
    return _CALLER.get()


def scoped_to_caller(req: CaptureRequest) -> CaptureRequest:
    """`req` with its request id scoped to the current caller, and whether that caller may see a
    duplicate's stored snapshot. Every gRPC way in (errorreplay.v1 and OTLP) applies this."""
    caller = current_caller()
    req.idempotency_scope = caller.key if caller is not None else ""
    req.caller_may_read = caller is None or caller.may(Role.READER)
    return req


def _with_caller(handler: grpc.RpcMethodHandler | None, principal: Principal) -> grpc.RpcMethodHandler | None:
    """`handler`, run with `principal` as current_caller() (each call runs in its own task)."""
    if handler is None:
        return None
    if handler.unary_unary is not None:
        unary = handler.unary_unary

        async def call(request: Any, context: grpc.aio.ServicerContext) -> Any:
            token = _CALLER.set(principal)
            try:
                return await unary(request, context)
            finally:
                _CALLER.reset(token)

        return grpc.unary_unary_rpc_method_handler(
            call,
            request_deserializer=handler.request_deserializer,
            response_serializer=handler.response_serializer,
        )
    if handler.unary_stream is not None:
        stream = handler.unary_stream
        if inspect.isasyncgenfunction(stream):

            async def stream_items(request: Any, context: grpc.aio.ServicerContext) -> AsyncIterator[Any]:
                _CALLER.set(principal)  # the generator runs in the call's own task and context
                async for item in stream(request, context):
                    yield item

            wrapped: Callable[..., Any] = stream_items
        else:

            async def stream_call(request: Any, context: grpc.aio.ServicerContext) -> Any:
                token = _CALLER.set(principal)
                try:
                    return await stream(request, context)
                finally:
                    _CALLER.reset(token)

            wrapped = stream_call
        return grpc.unary_stream_rpc_method_handler(
            wrapped,
            request_deserializer=handler.request_deserializer,
            response_serializer=handler.response_serializer,
        )
    return handler


def bearer_token(metadata: Iterable[tuple[str, Any]] | None) -> str | None:
    """The token of the one `authorization: Bearer <token>` entry; None when missing or ambiguous."""
    values = [value for key, value in metadata or () if key == AUTHORIZATION_KEY]
    if len(values) != 1 or not isinstance(values[0], str):
        return None
    scheme, _, token = values[0].strip().partition(" ")
    token = token.strip()
    if scheme.lower() != "bearer" or not token or any(c.isspace() for c in token):
        return None
    return token


def _digest(token: str) -> bytes:
    return hashlib.sha256(token.encode("utf-8", "surrogatepass")).digest()


def caller_key_for_token(token: str) -> str:
    # A digest prefix, so that rate-limit state and any debugging of it never hold the token.
    return "token:" + _digest(token).hex()[:16]


class TokenAuthenticator:
    """Checks bearer tokens against the configured grants in constant time."""

    def __init__(self, grants: Iterable[TokenGrant]) -> None:
        roles: dict[bytes, set[Role]] = {}
        for grant in grants:
            roles.setdefault(_digest(grant.token), set()).add(grant.role)
        if not roles:
            raise ValueError("a TokenAuthenticator needs at least one token")
        self._entries = tuple((digest, frozenset(granted)) for digest, granted in roles.items())

    def __len__(self) -> int:
        return len(self._entries)

    def authenticate(self, token: str | None) -> Principal | None:
        # A missing token is compared too (against a digest no token has), so it costs the same time.
        candidate = _digest(token) if token is not None else b"\0" * 32
        matched: frozenset[Role] = frozenset()
        for digest, granted in self._entries:
            if hmac.compare_digest(candidate, digest):
                matched = granted
        if token is None or not matched:
            return None
        return Principal(matched, caller_key_for_token(token))


def token_caller_key(context: grpc.aio.ServicerContext) -> str:
    """The rate-limit key of an authenticated call (the auth interceptor has already checked it)."""
    token = bearer_token(context.invocation_metadata())
    return caller_key_for_token(token) if token is not None else peer_caller_key(context)


def _denial_handler(handler: grpc.RpcMethodHandler | None, exc: DomainError, method: str) -> grpc.RpcMethodHandler:
    """A handler of the same shape as `handler` that ends the call with `exc`, without parsing the request."""
    status = rpc_status.to_status(status_for(exc))
    unauthenticated = isinstance(exc, Unauthenticated)

    async def deny(request: Any, context: grpc.aio.ServicerContext) -> None:
        # The peer, the method and the outcome: never the metadata, which holds the token.
        if unauthenticated:
            log.debug("unauthenticated call to %s from %s", method, context.peer())
        else:
            log.info("permission denied: %s from %s: %s", method, context.peer(), exc)
        await context.abort_with_status(status)

    if handler is not None and handler.unary_stream is not None:
        return grpc.unary_stream_rpc_method_handler(deny, request_deserializer=None, response_serializer=None)
    if handler is not None and handler.stream_unary is not None:
        return grpc.stream_unary_rpc_method_handler(deny, request_deserializer=None, response_serializer=None)
    if handler is not None and handler.stream_stream is not None:
        return grpc.stream_stream_rpc_method_handler(deny, request_deserializer=None, response_serializer=None)
    return grpc.unary_unary_rpc_method_handler(deny, request_deserializer=None, response_serializer=None)


class AuthInterceptor(grpc.aio.ServerInterceptor):
    """Authenticates the bearer token and checks its role against METHOD_ROLES, before anything else."""

    def __init__(self, authenticator: TokenAuthenticator) -> None:
        self._authenticator = authenticator

    async def intercept_service(
        self,
        continuation: Callable[[grpc.HandlerCallDetails], Awaitable[grpc.RpcMethodHandler]],
        handler_call_details: grpc.HandlerCallDetails,
    ) -> grpc.RpcMethodHandler:
        method = handler_call_details.method
        role = required_role(method)
        if role is None:
            return await continuation(handler_call_details)
        token = bearer_token(handler_call_details.invocation_metadata)
        principal = self._authenticator.authenticate(token)
        denial: DomainError | None = None
        if principal is None:
            denial = Unauthenticated(
                "missing authorization metadata; send 'authorization: Bearer <token>'"
                if token is None
                else "invalid bearer token"
            )
        elif not principal.may(role):
            held = ", ".join(sorted(principal.roles))
            denial = PermissionDenied(f"{method} needs the {role} role; this token has {held}")
        handler = await continuation(handler_call_details)
        if denial is None:
            assert principal is not None
            return _with_caller(handler, principal)
        # The continuation was asked only for the handler's shape; the handler itself never runs.
        return _denial_handler(handler, denial, method)


def build_interceptors(
    security: SecuritySettings, otlp: OtlpSettings | None = None
) -> list[grpc.aio.ServerInterceptor]:
    """The security interceptors, outermost first: auth, then the per-caller limits. Empty when all are off.
    `otlp` decides what an OTLP export's errors are, and so what it costs."""
    interceptors: list[grpc.aio.ServerInterceptor] = []
    caller_key: CallerKey = peer_caller_key
    if security.auth_enabled:
        interceptors.append(AuthInterceptor(TokenAuthenticator(security.grants)))
        caller_key = token_caller_key
    limiter = (
        TokenBucketLimiter(security.rate_limit_per_second, security.effective_burst)
        if security.rate_limit_enabled
        else None
    )
    streams = StreamLimiter(security.max_streams_per_token) if security.max_streams_per_token else None
    if limiter is not None or streams is not None:
        interceptors.append(RateLimitInterceptor(caller_key, limiter, streams, exempt=is_open, cost=CallCost(otlp)))
    return interceptors
