"""Who is using the console, and CSRF protection for its forms.

When auth is on (security_settings.py has tokens), every page needs a token with the reader role
(admin implies it). Sign-in stores the token in the `errorreplay_token` cookie: HttpOnly (scripts
cannot read it), SameSite=Strict (other sites' pages never send it), Secure when the listener
serves TLS. Group actions need the writer role (or admin), the same rule as the Alertmanager
webhook that resolves groups on this listener (http/auth.py).

Every form carries a CSRF token that must equal the `errorreplay_csrf` cookie (double submit, on
top of SameSite=Strict): a random value set on the first page, compared in constant time. Tokens
are checked with api/auth.py's TokenAuthenticator and never logged or rendered."""

from __future__ import annotations

import hmac
import secrets
from dataclasses import dataclass

from aiohttp import web

from errorreplay_server.api.auth import TokenAuthenticator
from errorreplay_server.grants import Role
from errorreplay_server.security_settings import SecuritySettings

TOKEN_COOKIE = "errorreplay_token"
CSRF_COOKIE = "errorreplay_csrf"
CSRF_FIELD = "csrf_token"
SESSION_MAX_AGE_SECONDS = 12 * 3600


@dataclass(frozen=True, slots=True)
class Viewer:
    """The caller of one console request. With auth off, everyone may read and act."""

    signed_in: bool
    may_read: bool
    may_act: bool
    roles: tuple[str, ...]
    csrf: str


class Sessions:
    def __init__(self, security: SecuritySettings, tls: bool) -> None:
        self._authenticator = TokenAuthenticator(security.grants) if security.auth_enabled else None
        self._secure = tls

    @property
    def auth_enabled(self) -> bool:
        return self._authenticator is not None

    def viewer(self, request: web.Request) -> Viewer:
        csrf = request.cookies.get(CSRF_COOKIE, "")
        if self._authenticator is None:
            return Viewer(False, True, True, (), csrf)
        principal = self._authenticator.authenticate(request.cookies.get(TOKEN_COOKIE) or None)
        if principal is None:
            return Viewer(False, False, False, (), csrf)
        return Viewer(
            True,
            principal.may(Role.READER),
            principal.may(Role.WRITER),
            tuple(sorted(principal.roles)),
            csrf,
        )

    def token_roles(self, token: str) -> frozenset[Role] | None:
        if self._authenticator is None:
            return None
        principal = self._authenticator.authenticate(token or None)
        return principal.roles if principal is not None else None

    def new_csrf(self) -> str:
        return secrets.token_urlsafe(32)

    def set_csrf(self, response: web.StreamResponse, value: str) -> None:
        response.set_cookie(CSRF_COOKIE, value, httponly=True, samesite="Strict", secure=self._secure, path="/")

    @staticmethod
    def csrf_ok(request: web.Request, submitted: object) -> bool:
        cookie = request.cookies.get(CSRF_COOKIE, "")
        if not cookie or not isinstance(submitted, str) or not submitted:
            return False
        return hmac.compare_digest(cookie.encode(), submitted.encode())

    def sign_in(self, response: web.StreamResponse, token: str) -> None:
        response.set_cookie(
            TOKEN_COOKIE,
            token,
            httponly=True,
            samesite="Strict",
            secure=self._secure,
            path="/",
            max_age=SESSION_MAX_AGE_SECONDS,
        )

    def sign_out(self, response: web.StreamResponse) -> None:
        response.del_cookie(TOKEN_COOKIE, path="/")
