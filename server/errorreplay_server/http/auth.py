"""Who may call the HTTP listener: Sentry DSN public keys, and bearer tokens for the webhook.

Sentry keys (http/settings.py: ERRORREPLAY_SENTRY_KEYS[_FILE]) come in `X-Sentry-Auth:
Sentry sentry_key=<key>, ...` or `?sentry_key=<key>`; a key allows ingestion into its own project
and nothing else. With no key configured, Sentry ingestion is open while gRPC auth is off (a
development server), and refused while it is on. The webhook takes a bearer token with the writer
role (api/auth.py), or nothing when auth is off. Keys and tokens are compared as SHA-256 digests
with hmac.compare_digest, with no early exit, and never logged or echoed."""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Iterable
from dataclasses import dataclass

from aiohttp import web

from errorreplay_server.api.auth import TokenAuthenticator, bearer_token, caller_key_for_token
from errorreplay_server.domain.errors import NotFound, PermissionDenied, Unauthenticated
from errorreplay_server.grants import Role
from errorreplay_server.http.sentry_keys import SentryKey
from errorreplay_server.security_settings import SecuritySettings

SENTRY_AUTH_HEADER = "X-Sentry-Auth"
_NO_MATCH = b"\0" * 32


def _digest(text: str) -> bytes:
    return hashlib.sha256(text.encode("utf-8", "surrogatepass")).digest()


def peer_key(request: web.Request) -> str:
    # The address without the port, as for gRPC: more connections gain nothing.
    return "peer:" + (request.remote or "unknown")


def sentry_key_of(request: web.Request) -> str | None:
    """The DSN public key of the request; None when it sent none (or several that disagree)."""
    found: set[str] = set()
    for header in request.headers.getall(SENTRY_AUTH_HEADER, []) + request.headers.getall("Authorization", []):
        scheme, _, params = header.strip().partition(" ")
        if scheme.lower() != "sentry":
            continue
        for part in params.split(","):
            name, _, value = part.strip().partition("=")
            if name.strip() == "sentry_key" and value.strip():
                found.add(value.strip())
    found.update(v for v in request.query.getall("sentry_key", []) if v)
    return found.pop() if len(found) == 1 else None


class SentryKeyring:
    def __init__(self, keys: Iterable[SentryKey], grpc_auth_enabled: bool) -> None:
        self._entries = tuple((_digest(k.key), k.project_id) for k in keys)
        self._projects = frozenset(project for _, project in self._entries)
        self._closed = not self._entries and grpc_auth_enabled

    @property
    def open(self) -> bool:
        return not self._entries and not self._closed

    def authenticate(self, request: web.Request, project_id: str) -> HttpCaller:
        """The caller, or Unauthenticated / NotFound / PermissionDenied."""
        key = sentry_key_of(request)
        if self.open:
            if not project_id.isdigit():
                raise NotFound("project", project_id[:64])
            return HttpCaller(caller_key_for_token(key) if key else peer_key(request), "")
        if self._closed:
            raise Unauthenticated("Sentry ingestion is off: no Sentry key is configured on this server")
        if key is None:
            raise Unauthenticated(
                "missing Sentry key; send 'X-Sentry-Auth: Sentry sentry_key=<key>' or '?sentry_key=<key>'"
            )
        candidate = _digest(key)
        projects: set[str] = set()
        for digest, project in self._entries:
            if hmac.compare_digest(candidate, digest):
                projects.add(project)
        if not projects:
            raise Unauthenticated("unknown Sentry key")
        if project_id not in self._projects:
            raise NotFound("project", project_id[:64])
        if project_id not in projects:
            raise PermissionDenied(f"this Sentry key does not belong to project {project_id}")
        caller = caller_key_for_token(key)
        return HttpCaller(caller, caller)


@dataclass(frozen=True, slots=True)
class HttpCaller:
    """Who sent a request: `key` for rate limits, and `scope` for its request ids, which is the
    key when the caller authenticated and "" when auth is off (as on the gRPC port)."""

    key: str
    scope: str


class BearerAuth:
    """The webhook's auth: the gRPC bearer tokens, writer role."""

    def __init__(self, security: SecuritySettings) -> None:
        self._authenticator = TokenAuthenticator(security.grants) if security.auth_enabled else None

    def authenticate(self, request: web.Request) -> HttpCaller:
        if self._authenticator is None:
            return HttpCaller(peer_key(request), "")
        token = bearer_token(("authorization", v) for v in request.headers.getall("Authorization", []))
        principal = self._authenticator.authenticate(token)
        if principal is None:
            raise Unauthenticated(
                "missing Authorization header; send 'Authorization: Bearer <token>'"
                if token is None
                else "invalid bearer token"
            )
        if not principal.may(Role.WRITER):
            raise PermissionDenied(
                "the webhook needs the writer role; this token has " + ", ".join(sorted(principal.roles))
            )
        return HttpCaller(principal.key, principal.key)
